"""The Agent core: settings, the declared needs, binding to an env, acting, save and load.

An agent is a thin ``nn.Module``. It declares ``spec`` (what it accepts, read by AutoAdapt) and
``Config`` (its settings, a dataclass), builds its networks in ``build()``, acts on a TensorDict
batch in ``act_batch(td, deterministic)`` and learns in ``update(storage, progress)``. Everything
else comes from rladapt: AutoAdapt, the loop (:mod:`rladapt.train`: run directory, logging,
progress bar, callbacks, checkpoints), collection in-process, in worker processes or on
torchrun ranks (:mod:`rladapt.collect`), masks (:mod:`rladapt.agents.masks`), evaluation, the
terminal view, ``save``/``load`` and the CLI.

The loop, the same for every agent::

    storage = agent.make_storage(num_envs, steps)
    until `steps` env steps are done:
        batch = collector.collect(agent, agent.collect_steps())   # [T, num_envs], acting by agent.explore
        storage = agent.store(storage, batch)
        if agent.ready(storage):
            metrics = agent.update(storage, progress)
            agent.after_update(storage)

This base class is itself a family: one vector step per iteration (``collect_steps() == 1``), the
storage is the batch itself, ``update`` sees every batch (a tabular agent updating on each
transition, say). :class:`~rladapt.agents.on_policy.OnPolicyAgent` (rollouts with advantages)
and :class:`~rladapt.agents.off_policy.OffPolicyAgent` (a replay buffer, random actions before
learning starts) supply the other two.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterator

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from tensordict import TensorDict, TensorDictBase
from torch import nn

from rladapt import train
from rladapt.checks import check_settings
from rladapt.registry import register
from rladapt.collect.batch import OutSpecs, action_spec
from rladapt.errors import ActionMaskError, ObservationError
from rladapt.spaces import action_kind, defaults_kind, describe, env_action, mask_size, observation_kind, observation_mismatch
from rladapt.spaces import COMPOSITE_SPACES, action_at, flatten_mask
from rladapt.spec import AgentSpec
from rladapt.types import ActionValues, EvalResult
from rladapt.agents.tuning import SearchSpace

__all__ = ["ActionValues", "Agent", "AgentConfig", "EvalResult", "to_batch"]


@dataclass
class AgentConfig:
    """Settings shared by every agent.

    :param seed: seed for torch, numpy and the envs; the same seed gives the same run.
    :param device: torch device for the networks (``"cpu"``, ``"cuda"``, ``"auto"``).
    :param num_threads: torch CPU threads while learning/evaluating. None: 1 for vector
        observations (small MLPs run fastest single-threaded), torch's default for images.
    :param num_envs: envs stepped in parallel when ``learn`` gets no ``num_envs`` (None: the
        agent's per-kind default, else 8; at least one per worker process).
    :param check_finite: every collector checks each batch for NaN and infinite observations,
        rewards and actions, and raises naming the env and step (a cheap check per batch, not
        per step); False skips it.
    """

    seed: int | None = None
    device: str = "cpu"
    num_threads: int | None = None
    num_envs: int | None = None
    check_finite: bool = True

    def __post_init__(self) -> None:
        check_settings(self)


def to_batch(obs: Any, device: torch.device) -> torch.Tensor | TensorDict:
    """One observation (array or dict of arrays) -> a batch of one, native dtype."""
    if isinstance(obs, dict):
        return TensorDict({k: to_batch(v, device) for k, v in obs.items()}, batch_size=[1], device=device)
    return torch.as_tensor(np.asarray(obs), device=device).unsqueeze(0)


def _resolve_device(name: str | torch.device) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device={name!r} is not a torch device: use 'cpu', 'cuda', 'cuda:1', 'mps' or 'auto' ({error})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r}, but this torch has no CUDA device; use device='cpu' or 'auto'")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={name!r}, but this torch has no MPS device; use device='cpu' or 'auto'")
    return device


class Agent(nn.Module):
    """Base of every agent. Subclasses declare ``spec`` and ``Config`` and are registered when
    defined (so checkpoints find them again, see :mod:`rladapt.registry`).

    Hyperparameters are keyword arguments (``PPO(lr=3e-4, seed=0)``), stored as ``self.config``;
    an unknown keyword raises a ``TypeError`` listing the valid ones. Settings left at ``None``
    are filled from :meth:`default_settings` for the env's observation and action kind when the
    agent is bound to an env; the filled-in settings are ``self.hp``.

    Everything acting reads must be in the module's ``state_dict`` (parameters and buffers, e.g.
    a Q-table registered with ``register_buffer``): that is what reaches worker processes.
    """

    spec: ClassVar[AgentSpec] = AgentSpec()
    Config: ClassVar[type[AgentConfig]] = AgentConfig
    #: How ``rladapt tune`` samples this agent's settings: ``search_space(trial, budget) -> settings``
    #: (:mod:`rladapt.agents.tuning`), next to the agent's defaults; None: no search space of its own
    #: (``tune(..., space=...)`` takes one).
    search_space: ClassVar[SearchSpace | None] = None
    #: Whether collection must use the current weights (True: on-policy; every batch comes from
    #: the weights of this update). False lets worker processes collect ahead with weights a few
    #: updates old (off-policy), which keeps them busy while the learner updates.
    fresh_weights: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        register(cls)

    def __init__(self, **config: Any) -> None:
        super().__init__()
        valid = {f.name for f in dataclasses.fields(self.Config)}
        unknown = sorted(set(config) - valid)
        if unknown:
            raise TypeError(
                f"{type(self).__name__} got unknown setting(s) {unknown}; valid settings are: "
                f"{', '.join(sorted(valid))}"
            )
        self.config = self.Config(**config)
        self.hp = self.config
        self.observation_space: gym.Space | None = None
        self.action_space: gym.Space | None = None
        self.np_random = np.random.default_rng(self.config.seed)
        if self.config.seed is not None:
            torch.manual_seed(self.config.seed)
        self.device = _resolve_device(self.config.device)
        self.generator = torch.Generator(device=self.device)
        if self.config.seed is not None:
            self.generator.manual_seed(self.config.seed)
        else:
            self.generator.seed()
        #: Env steps trained on so far (all learn calls), training iterations, finished episodes.
        self.num_timesteps = 0
        self.num_updates = 0
        self.num_episodes = 0
        #: Whether collection gives this agent action masks (set by ``learn``).
        self.use_masks = False
        #: How far the current run is, from 0 to 1 (for schedules; remote copies get it too): the
        #: env steps done since :attr:`run_start` over :attr:`run_steps`.
        self.progress = 0.0
        #: The run the schedules count over: its first env step and its planned env steps (one
        #: ``learn`` call; a resumed run keeps those of the run it continues).
        self.run_start = 0
        self.run_steps = 0
        #: The run directory of the current (or last) ``learn`` call, None without one.
        self.run_dir: Path | None = None
        #: Set by ``rladapt.load`` from a checkpoint written mid-run: ``(run_start, run_steps,
        #: run_dir)`` of that run, continued by the next ``learn`` call that asks for the
        #: remaining steps (see :func:`rladapt.train.learn`).
        self.unfinished_run: tuple[int, int, Path | None] | None = None
        #: The family of the env the agent is bound to (set by :meth:`setup`).
        self.env_family = "other"

    # ---------------------------------------------------------------------------------------
    # What an agent defines
    # ---------------------------------------------------------------------------------------

    def default_settings(self, observation_kind: str, action_kind: str) -> dict[str, Any]:
        """Values for the settings left at None, by observation and action kind."""
        return {}

    def build(self) -> None:
        """Create networks and optimizers for ``self.observation_space``/``self.action_space``
        using ``self.hp``. Called once by :meth:`setup`, with torch seeded from ``seed``."""

    def act_batch(self, td: TensorDictBase, deterministic: bool = False) -> TensorDictBase:
        """Act on a batch: read ``observation`` (and ``action_mask``), write ``action`` (plus what
        the agent stores, declared in :meth:`out_specs`). Called under ``torch.inference_mode``.
        Actions are stored as :func:`rladapt.spaces.stored_action` says (indices from 0)."""
        return self.policy(td, deterministic=deterministic, generator=self.generator)

    def explore(self, td: TensorDictBase) -> TensorDictBase:
        """How the agent acts while collecting (in every collector, local or remote): by default
        ``act_batch(td, deterministic=False)``. Families add what they need (random actions
        before learning starts, ...)."""
        return self.act_batch(td, deterministic=False)

    def out_specs(self) -> OutSpecs:
        """What :meth:`explore` writes, ``key -> (shape of one env's entry, dtype)``: the storage
        every collector allocates (nothing is probed). Default: the action only."""
        return {"action": action_spec(self.action_space)}

    def state_specs(self) -> OutSpecs:
        """What the agent carries from one step to the next, ``key -> (shape of one env's entry,
        dtype)`` (a recurrent policy's hidden state); default: nothing. Collectors keep it with
        the envs: :meth:`explore` reads ``td[key]``, the state the step starts from (zeros where
        ``is_init`` marks an episode start), and writes ``td["next", key]``, the state after it;
        batches store it per observation row (:mod:`rladapt.collect.batch`). An agent that
        declares state acts through ``act(obs, state=...)``, which then returns ``(action, state)``."""
        return {}

    def env_action(self, action: np.ndarray) -> Any:
        """Stored actions (a numpy batch) -> the env's actions (offsets, shapes, Box clipping)."""
        return env_action(self.action_space, action)

    def action_values(self, obs: Any, mask: np.ndarray | None = None) -> ActionValues | None:
        """The value or probability of every action for one observation (the terminal view of
        :meth:`play`); None when the agent has no per-action view (continuous actions).

        :param obs: one observation of the adapted env.
        :param mask: the valid-action mask, or None.
        """
        return None

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimizers whose state checkpoints carry."""
        opt = getattr(self, "optimizer", None)
        return {"optimizer": opt} if opt is not None else {}

    def resume_state(self) -> dict[str, Any]:
        """What training continues from beyond the module's ``state_dict``, the optimizers, the
        counters and the RNGs, as JSON numbers (e.g. DQN's gradient steps, which time its target
        updates). Every checkpoint carries it; :meth:`load_resume_state` puts it back."""
        return {}

    def load_resume_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`resume_state` returned.

        :param state: the dict :meth:`resume_state` returned, read back from a checkpoint.
        """

    # ---------------------------------------------------------------------------------------
    # The loop's hooks: what a family supplies (this base: learn from every batch)
    # ---------------------------------------------------------------------------------------

    def collect_steps(self) -> int:
        """Vector steps collected per iteration (rows of each batch)."""
        return 1

    def make_collector(self, source: Any, num_envs: int, workers: Any) -> Any:
        """The agent's own collector for a flow that is not stepping envs (AlphaZero's self-play
        games, A3C's gradient-pushing workers); None here: the usual collector for ``workers``
        (:func:`rladapt.collect.make_collector`).

        :param source: where the envs come from (:class:`rladapt.collect.EnvSource`).
        :param num_envs: envs over all workers.
        :param workers: what ``learn`` got as ``workers``.
        """
        return None

    def make_storage(self, num_envs: int, steps: int) -> Any:
        """The storage for a ``learn`` call of ``steps`` env steps over ``num_envs`` envs (a
        rollout, a replay buffer ...); None here: the storage is the latest batch."""
        return None

    def store(self, storage: Any, batch: TensorDictBase) -> Any:
        """Put a collected ``[T, num_envs]`` batch into the storage; return the storage.
        ``batch`` is overwritten by the next collect: copy what must outlive it. Here the
        storage is the batch itself."""
        return batch

    def ready(self, storage: Any) -> bool:
        """Whether to update after this iteration."""
        return True

    def update(self, storage: Any, progress: float) -> dict[str, float]:
        """Learn from the storage; return metrics (``"train/..."`` keys by convention).

        :param storage: what :meth:`store` returned.
        :param progress: how far the run is, from 0 to 1 (for annealing): this ``learn`` call,
            or the run a resumed ``learn`` call continues.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot learn: it defines no update(storage, progress)")

    def after_update(self, storage: Any) -> None:
        """After each update (e.g. fold the rollout's observations into running statistics)."""

    # ---------------------------------------------------------------------------------------
    # Binding to an env
    # ---------------------------------------------------------------------------------------

    def setup(self, observation_space: gym.Space, action_space: gym.Space) -> None:
        """Bind the agent to the adapted env's (single) spaces and build its networks.

        Called by ``learn``/``evaluate`` on first use; a second call with the same spaces does
        nothing, with other spaces it raises (an agent is trained for one env interface).

        :param observation_space: the adapted env's observation space.
        :param action_space: the adapted env's action space.

        The env's family (``"classic_control"``, ``"box2d"``, ``"mujoco"``, ``"atari"`` ...: see
        :func:`rladapt.adapt.env_family`) is already in ``self.env_family`` when this runs (set by
        :func:`rladapt.spec.bind_agent`), so per-kind defaults may read it.
        """
        if self.observation_space is not None:
            if observation_space != self.observation_space or action_space != self.action_space:
                raise ValueError(
                    f"{type(self).__name__} was built for observations {self.observation_space} and actions "
                    f"{self.action_space}; this env has {observation_space} and {action_space}"
                )
            return
        self.observation_space, self.action_space = observation_space, action_space
        self.obs_kind, self.act_kind = observation_kind(observation_space), action_kind(action_space)
        defaults = self.default_settings(defaults_kind(observation_space), self.act_kind)
        filled = {k: v for k, v in defaults.items() if getattr(self.config, k) is None}
        self.hp = dataclasses.replace(self.config, **filled)
        with torch.random.fork_rng(devices=[]), self.torch_threads():
            if self.config.seed is not None:
                torch.manual_seed(self.config.seed)
            self.build()
        self.to(self.device)

    @contextlib.contextmanager
    def torch_threads(self) -> Iterator[None]:
        """torch's CPU threads set to ``num_threads`` (None: 1 for vector observations on CPU) for
        the duration (learning, evaluating)."""
        n = self.config.num_threads
        if n is None and getattr(self, "obs_kind", None) == "vector" and self.device.type == "cpu":
            n = 1
        previous = torch.get_num_threads()
        if n is not None:
            torch.set_num_threads(n)
        try:
            yield
        finally:
            torch.set_num_threads(previous)

    # ---------------------------------------------------------------------------------------
    # The public API (DESIGN.md section 1)
    # ---------------------------------------------------------------------------------------

    #: Train for ``steps`` env steps: :func:`rladapt.train.learn` (the parameters are documented there).
    learn = train.learn

    def act(self, obs: Any, mask: np.ndarray | None = None, deterministic: bool = True, state: Any = None) -> Any:
        """The action for one observation of the adapted env.

        :param obs: one observation (an array, or a dict of arrays for nested observations).
        :param mask: the valid-action mask (``info["action_mask"]``), or None. For a Dict/Tuple
            action space it may also be nested like the space, one mask per discrete leaf
            (:func:`rladapt.spaces.flatten_mask`).
        :param deterministic: the most likely action instead of a sample.
        :param state: agents with a carried state (:meth:`state_specs`, e.g. ``PPO(recurrent="lstm")``):
            the state the previous ``act`` of this episode returned; None at an episode's first step
            (the initial state). Agents without one refuse a state.
        :return: an action of the adapted env's action space (a dict or tuple for a composite one);
            for agents with a carried state ``(action, state)``, the state to pass with the episode's
            next observation.
        """
        if self.observation_space is None:
            raise RuntimeError(
                f"{type(self).__name__} has no networks yet: call learn(env, ...) or evaluate(env) first, "
                f"or setup(env.observation_space, env.action_space)"
            )
        mismatch = observation_mismatch(self.observation_space, obs)
        if mismatch is not None:
            raise ObservationError(
                f"{type(self).__name__}.act got an observation that does not fit its observation space: {mismatch}. "
                f"Pass one observation of the adapted env (AutoAdapt(env, agent)), not a batch or the raw env's"
            )
        td = TensorDict({"observation": to_batch(obs, self.device)}, batch_size=[1], device=self.device)
        if mask is not None and self.spec.masks:
            if isinstance(self.action_space, COMPOSITE_SPACES) and isinstance(mask, (dict, tuple, list)):
                mask = flatten_mask(self.action_space, mask)
            mask = np.asarray(mask)
            if mask.shape != (mask_size(self.action_space),) or mask.dtype not in (np.bool_, np.int8, np.uint8):
                raise ActionMaskError(
                    f"{type(self).__name__}.act got an action mask of shape {mask.shape} and dtype {mask.dtype}; "
                    f"{describe(self.action_space)} needs a bool (or 0/1 int8) mask of shape ({mask_size(self.action_space)},)"
                )
            td.set("action_mask", torch.as_tensor(mask.astype(bool), device=self.device).unsqueeze(0))
        carried = self.state_specs()
        if state is not None and not carried:
            raise TypeError(f"{type(self).__name__}.act got a state, but {type(self).__name__} carries none "
                            f"(only recurrent agents do, e.g. PPO(recurrent='lstm'))")
        if carried:
            td.set("is_init", torch.tensor([state is None], device=self.device))
            for key, (shape, dtype) in carried.items():
                td.set(key, self._initial_or_given_state(key, shape, dtype, state))
        with torch.inference_mode():
            self.act_batch(td, deterministic=deterministic)
        action = action_at(self.action_space, self.env_action(td.get("action").cpu().numpy()), 0)
        if isinstance(self.action_space, spaces.Discrete):
            action = int(action)
        if carried:
            return action, TensorDict({key: td.get(("next", key))[0] for key in carried}, batch_size=[])
        return action

    def act_and_values(self, obs: Any, mask: np.ndarray | None = None, deterministic: bool = True,
                       state: Any = None) -> tuple[Any, ActionValues | None, Any]:
        """``(action, view, state)``: the action for one observation and the view of every action
        it was chosen from (what the terminal shows when the agent moves). Here the view is
        :meth:`action_values` and the action :meth:`act`'s, both from the same weights and state;
        agents whose every decision is a fresh computation (a search) override it to decide once.

        :param obs: one observation of the adapted env.
        :param mask: the valid-action mask, or None.
        :param deterministic: the most likely action instead of a sample.
        :param state: agents with a carried state: the state the previous call of this episode
            returned (None at its first step); others: None.
        :return: the action, the view (None when the agent has no per-action view) and the state
            to pass with the episode's next observation (None for agents that carry none).
        """
        if self.state_specs():
            view = self.action_values(obs, mask, state=state)
            action, state = self.act(obs, mask, deterministic, state=state)
            return action, view, state
        # a feed-forward agent's act has no state (a user's act(obs, mask, deterministic) need not take one)
        return self.act(obs, mask, deterministic), self.action_values(obs, mask), None

    def _initial_or_given_state(self, key: str, shape: tuple[int, ...], dtype: torch.dtype, state: Any) -> torch.Tensor:
        """``state[key]`` as a batch of one (zeros when ``state`` is None), its shape checked."""
        if state is None:
            return torch.zeros((1, *shape), dtype=dtype, device=self.device)
        if not isinstance(state, TensorDictBase) or key not in state.keys():
            raise TypeError(f"{type(self).__name__}.act(state=...) takes the state its previous act returned "
                            f"(a TensorDict with {key!r}); got {type(state).__name__}")
        value = state.get(key)
        if tuple(value.shape) != tuple(shape):
            raise ValueError(f"{type(self).__name__}.act got a state {key!r} of shape {tuple(value.shape)}; "
                             f"expected {tuple(shape)}")
        return value.to(self.device, dtype).unsqueeze(0)

    #: Play episodes and return their raw returns and lengths: :func:`rladapt.train.evaluate`.
    evaluate = train.evaluate
    #: Play in the terminal, showing the agent's view of every action: :func:`rladapt.train.play`.
    play = train.play

    # ---------------------------------------------------------------------------------------
    # Settings, save and load
    # ---------------------------------------------------------------------------------------

    def settings(self, resolved: bool = False) -> dict[str, Any]:
        """The settings as a JSON-friendly dict (modules and other objects by class name)."""
        config = self.hp if resolved else self.config
        out = {}
        for f in dataclasses.fields(config):
            value = getattr(config, f.name)
            if isinstance(value, tuple):
                value = list(value)
            out[f.name] = value if _is_json(value) else f"<{type(value).__name__}>"
        return out

    def save(self, path: str | Path, training_state: bool = False) -> Path:
        """Save weights, optimizer state, normalisation statistics, counters, RNG states, the
        schedule position and settings to ``path`` (tensors + JSON metadata, written
        atomically). Load with ``rladapt.load(path)``.

        :param path: the file to write.
        :param training_state: also save the replay buffer (contents, priorities, per-env
            streams) and the run directory, so that a crashed run resumes exactly where it was
            (what ``checkpoint_every`` and :class:`~rladapt.callbacks.CheckpointCallback` write).
            False keeps the file small: a trained agent to act with or to fine-tune.
        """
        from rladapt.checkpoint import save_agent

        return save_agent(self, path, training_state=training_state)

    @classmethod
    def load(cls, path: str | Path, **overrides: Any) -> "Agent":
        """Load an agent saved with :meth:`save` (see :func:`rladapt.checkpoint.load`)."""
        from rladapt.checkpoint import load

        agent = load(path, **overrides)
        if not isinstance(agent, cls):
            raise TypeError(f"{path} holds a {type(agent).__name__}, not a {cls.__name__}")
        return agent


def _is_json(value: Any) -> bool:
    if value is None or isinstance(value, (str, int, float, bool)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_json(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json(v) for k, v in value.items())
    return False
