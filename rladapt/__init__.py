"""rladapt: train any gymnasium env with any RL agent.

``AutoAdapt(env, agent)`` joins the env's spaces to the agent's declared needs with gymnasium
wrappers; agents learn with one vectorized TensorDict loop.
"""

from rladapt.adapt import AdaptOptions, AutoAdapt, Plan, PlanStep
from rladapt.errors import ActionMaskError, AdaptError
from rladapt.spec import AgentSpec

import rladapt.envs  # noqa: F401,E402  (registers the example envs with gymnasium)

__version__ = "0.1.0"


def load(path: str, **kwargs):  # noqa: ANN201
    """Load an agent saved with ``agent.save(path)`` (tensors + JSON metadata, no pickle); see
    :func:`rladapt.checkpoint.load`."""
    import rladapt.agents  # noqa: F401  (registers rladapt's own agents)
    from rladapt.checkpoint import load as load_checkpoint

    return load_checkpoint(path, **kwargs)


__all__ = ["ActionMaskError", "AdaptError", "AdaptOptions", "AgentSpec", "AutoAdapt", "Plan", "PlanStep", "load", "__version__"]
