"""The loop, evaluation and terminal play: the same for every agent.

``Agent.learn``, ``Agent.evaluate`` and ``Agent.play`` delegate here; this package may import
everything below the agents (collection, callbacks, logging, checkpoints) and nothing of
:mod:`rladapt.agents`: agents are duck-typed (see :mod:`rladapt.agents.base` for the hooks).
"""

from rladapt.train.evaluate import evaluate
from rladapt.train.loop import learn
from rladapt.train.play import play

__all__ = ["evaluate", "learn", "play"]
