"""The Agent base class: configuration, registration, the training loop, evaluation, act, save/load.

The loop lives here once (DESIGN.md principle 4)::

    learn(env, steps)
      adapt the env (AutoAdapt), build a vector env from its spec, wrap it in a collector
      setup(observation_space, action_space)          -> build(): networks, optimizers
      on_learn_start(collector, steps)
      repeat until `steps` env steps are done:
          metrics = train_iteration(collector, progress)   # collect -> store -> update
          log metrics (run dir + logger), progress bar, callbacks, checkpoint

Two families implement ``train_iteration``:

- :class:`OnPolicyAgent` (PPO, A2C): collects ``n_steps`` vector steps into a preallocated
  :class:`~rladapt.buffers.rollout.RolloutBuffer`, computes GAE, then calls ``update(rollout, progress)``.
- :class:`OffPolicyAgent` (DQN, SAC): collects ``train_freq`` vector steps, hands each step to
  ``store(step)`` (a replay buffer's ``extend``), then calls ``update(gradient_steps, progress)``.

A new agent declares ``spec`` and ``Config`` and implements ``build`` (networks) plus
``act_batch`` (acting on a TensorDict batch) and the family's ``update`` (and ``store``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterable, Iterator, NamedTuple

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from tensordict import TensorDict, TensorDictBase
from torch import nn

from rladapt.agents.registry import register
from rladapt.spec import AgentSpec

if TYPE_CHECKING:
    from rladapt.agents.nets import NetworkFactory

class ActionValues(NamedTuple):
    """What an agent thinks of every action of a ``Discrete`` space, for the terminal view:
    ``values[i]`` is the value (``kind="q"``) or the probability (``kind="prob"``) of action ``i``."""

    values: np.ndarray
    kind: str


@dataclass
class AgentConfig:
    """Settings shared by every agent.

    :param seed: seed for torch, numpy and the envs; the same seed gives the same run.
    :param device: torch device for the networks (``"cpu"``, ``"cuda"``, ``"auto"``).
    :param num_threads: torch CPU threads while learning/evaluating. None: 1 for vector
        observations (small MLPs run fastest single-threaded), torch's default for images.
    """

    seed: int | None = None
    device: str = "cpu"
    num_threads: int | None = None


@dataclass
class EvalResult:
    """Raw episode returns and lengths (before any reward clipping or scaling)."""

    returns: np.ndarray
    lengths: np.ndarray

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        return float(np.std(self.returns))

    def __repr__(self) -> str:
        return f"EvalResult(mean={self.mean:.3f}, std={self.std:.3f}, episodes={len(self.returns)})"


def action_kind(space: gym.Space) -> str:
    """``"discrete"``, ``"multi_discrete"`` or ``"continuous"`` for an adapted action space."""
    if isinstance(space, spaces.Discrete):
        return "discrete"
    if isinstance(space, (spaces.MultiDiscrete, spaces.MultiBinary)):
        return "multi_discrete"
    if isinstance(space, spaces.Box):
        return "continuous"
    raise TypeError(f"unsupported action space {space}; adapt the env with AutoAdapt(env, agent)")


def mask_size(space: gym.Space) -> int:
    """Length of rladapt's normalised action mask for ``space``."""
    if isinstance(space, spaces.Discrete):
        return int(space.n)
    if isinstance(space, spaces.MultiDiscrete):
        return int(space.nvec.sum())
    if isinstance(space, spaces.MultiBinary):
        return 2 * int(np.prod(space.shape))
    raise TypeError(f"action masks need Discrete or MultiDiscrete actions, not {space}")


def _to_batch(obs: Any, device: torch.device) -> torch.Tensor | TensorDict:
    """One observation (array or dict of arrays) -> a batch of one, native dtype."""
    if isinstance(obs, dict):
        return TensorDict({k: _to_batch(v, device) for k, v in obs.items()}, batch_size=[1], device=device)
    return torch.as_tensor(np.asarray(obs), device=device).unsqueeze(0)


def _adapt_type() -> type | None:
    try:
        from rladapt.adapt import AutoAdapt
    except ImportError:  # AutoAdapt not available: envs are taken as already adapted
        return None
    return AutoAdapt


class Agent(nn.Module):
    """Base of every agent. Subclasses declare ``spec`` and ``Config`` and register themselves.

    Hyperparameters are keyword arguments (``PPO(lr=3e-4, seed=0)``), stored as ``self.config``;
    an unknown keyword raises a ``TypeError`` listing the valid ones. Settings left at ``None``
    are filled from :meth:`default_settings` for the env's observation and action kind when the
    agent is bound to an env; the filled-in settings are ``self.hp``.
    """

    spec: ClassVar[AgentSpec] = AgentSpec()
    Config: ClassVar[type[AgentConfig]] = AgentConfig

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
        dev = self.config.device
        self.device = torch.device("cuda" if dev == "auto" and torch.cuda.is_available() else "cpu" if dev == "auto" else dev)
        self.generator = torch.Generator(device=self.device)
        if self.config.seed is not None:
            self.generator.manual_seed(self.config.seed)
        else:
            self.generator.seed()
        #: Env steps trained on so far (all learn calls), and training iterations (updates).
        self.num_timesteps = 0
        self.num_updates = 0
        self.num_episodes = 0
        self.use_masks = False

    # ---------------------------------------------------------------------------------------
    # Hooks for subclasses
    # ---------------------------------------------------------------------------------------

    def default_settings(self, observation_kind: str, action_kind: str) -> dict[str, Any]:
        """Values for the settings left at None, by observation and action kind."""
        return {}

    def build(self) -> None:
        """Create networks and optimizers for ``self.observation_space``/``self.action_space``
        using ``self.hp``. Called once by :meth:`setup`, with torch seeded from ``seed``."""

    def act_batch(self, td: TensorDictBase, deterministic: bool = False) -> TensorDictBase:
        """Act on a batch: read ``observation`` (and ``action_mask``), write ``action`` (plus what
        the agent stores, e.g. ``log_prob`` and ``value``). Called under ``torch.inference_mode``."""
        return self.policy(td, deterministic=deterministic, generator=self.generator)

    def env_action(self, action: np.ndarray) -> Any:
        """Stored actions (a numpy batch) -> the env's actions (offsets, clipping, shape)."""
        head = getattr(getattr(self, "policy", None), "head", None)
        return head.to_env(action) if head is not None else action

    def on_learn_start(self, collector: Any, steps: int) -> None:
        """Called before the first iteration of each ``learn`` call (allocate storage here)."""

    def train_iteration(self, collector: Any, progress: float) -> dict[str, float]:
        """Collect, store and update once; return metrics. ``progress`` runs from 0 to 1 over the
        ``learn`` call (for annealing)."""
        raise NotImplementedError(f"{type(self).__name__} cannot learn")

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimizers whose state checkpoints carry."""
        opt = getattr(self, "optimizer", None)
        return {"optimizer": opt} if opt is not None else {}

    def action_values(self, obs: Any, mask: np.ndarray | None = None) -> ActionValues | None:
        """The value or probability of every action for one observation (the terminal view of
        :meth:`play`); None when the agent has no per-action view (continuous actions).

        :param obs: one observation of the adapted env.
        :param mask: the valid-action mask, or None.
        """
        return None

    # ---------------------------------------------------------------------------------------
    # Binding to an env
    # ---------------------------------------------------------------------------------------

    def setup(self, observation_space: gym.Space, action_space: gym.Space) -> None:
        """Bind the agent to the adapted env's (single) spaces and build its networks.

        Called by ``learn``/``evaluate`` on first use; a second call with the same spaces does
        nothing, with other spaces it raises (an agent is trained for one env interface).
        """
        if self.observation_space is not None:
            if observation_space != self.observation_space or action_space != self.action_space:
                raise ValueError(
                    f"{type(self).__name__} was built for observations {self.observation_space} and actions "
                    f"{self.action_space}; this env has {observation_space} and {action_space}"
                )
            return
        self.observation_space, self.action_space = observation_space, action_space
        from rladapt.agents.nets import observation_kind

        self.obs_kind, self.act_kind = observation_kind(observation_space), action_kind(action_space)
        defaults = self.default_settings(self.obs_kind, self.act_kind)
        filled = {k: v for k, v in defaults.items() if getattr(self.config, k) is None}
        self.hp = dataclasses.replace(self.config, **filled)
        with torch.random.fork_rng(devices=[]), self._threads():
            if self.config.seed is not None:
                torch.manual_seed(self.config.seed)
            self.build()
        self.to(self.device)

    def _adapt(self, env: Any) -> Any:
        """An adapted env (instance) for ``env``: AutoAdapt unless it already is adapted."""
        if isinstance(env, str):
            AutoAdapt = _adapt_type()
            return AutoAdapt(env, self) if AutoAdapt is not None else gym.wrappers.RecordEpisodeStatistics(gym.make(env))
        AutoAdapt = _adapt_type()
        if AutoAdapt is None or isinstance(env, AutoAdapt) or isinstance(env, gym.vector.VectorEnv):
            return env
        return AutoAdapt(env, self)

    def _resolve_env(self, env: Any) -> tuple[gym.Env | gym.vector.VectorEnv, Any]:
        """``(probe, source)``: an adapted instance to read spaces from, and what the vector
        env is built from (the adapted instance, whose spec rebuilds it, or an adapted factory)."""
        if isinstance(env, (str, gym.Env, gym.vector.VectorEnv)):
            adapted = self._adapt(env)
            return adapted, adapted
        if callable(env):
            factory = env

            def adapted_factory() -> gym.Env:
                return self._adapt(factory())

            return adapted_factory(), adapted_factory
        raise TypeError(
            f"expected an env, an env id, a vector env or a zero-argument env factory, got {type(env).__name__}"
        )

    def _masks_on(self, env: Any) -> bool:
        return bool(self.spec.masks and env.metadata.get("action_mask"))

    @contextlib.contextmanager
    def _threads(self) -> Iterator[None]:
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
    # The loop
    # ---------------------------------------------------------------------------------------

    def learn(
        self,
        env: Any,
        steps: int,
        *,
        num_envs: int | None = None,
        workers: int | str | Any = 0,
        logger: Any = None,
        callbacks: Iterable[Any] = (),
        progress: bool = True,
        run_dir: str | Path | bool | None = None,
        vectorization: str | None = None,
        checkpoint_every: int | None = None,
    ) -> "Agent":
        """Train for ``steps`` env steps (counted over all envs). Call again to continue.

        :param env: the env: an ``AutoAdapt`` env, any gymnasium env or id (adapted here), a
            zero-argument factory returning an env (for env classes gymnasium cannot rebuild from
            a spec), or a ready gymnasium vector env (taken as adapted, not closed).
        :param steps: env steps to train for in this call (rounded up to whole iterations).
        :param num_envs: envs stepped in parallel (default: the agent's per-kind default).
        :param workers: > 0 collects in that many worker processes, each stepping its share of
            the envs and acting with its own copy of the policy (:mod:`rladapt.collect.workers`);
            a :class:`rladapt.collect.Workers` sets restarts and timeouts too; ``"distributed"``
            uses the ranks of a ``torchrun`` group: rank 0 learns, the others collect
            (:mod:`rladapt.collect.distributed`).
        :param logger: None (run directory only), ``"wandb"``, or an object with
            ``log_config(dict)``, ``log(dict, step)`` and ``close()``.
        :param callbacks: :class:`rladapt.callbacks.Callback` objects (hooks at learn start, each
            step, episode end, update, evaluation and learn end), or functions
            ``callback(agent, metrics)`` called after each iteration. Returning ``False`` stops training.
        :param progress: show a progress bar (steps/s, recent mean return, ETA).
        :param run_dir: directory for ``config.json``, ``metrics.jsonl`` and the final
            ``agent.pt``; None: ``runs/<agent>-<env>-<time>/``; False: no run directory.
        :param vectorization: ``"sync"`` (default) or ``"async"``.
        :param checkpoint_every: also save ``checkpoint.pt`` in the run directory every this many steps.
        :return: the agent.
        """
        from rladapt.collect import VectorCollector, make_env_fns, make_vector_env, make_worker_collector
        from rladapt.callbacks import TrainingRun
        from rladapt.logging import ProgressBar, RunDirLogger, default_run_dir, make_logger
        from rladapt.logging.metadata import run_metadata

        if steps <= 0:
            raise ValueError(f"steps must be positive, got {steps}")
        probe, source = self._resolve_env(env)
        self.setup(probe.single_observation_space if isinstance(probe, gym.vector.VectorEnv) else probe.observation_space,
                   probe.single_action_space if isinstance(probe, gym.vector.VectorEnv) else probe.action_space)
        self.use_masks = self._masks_on(probe)
        if isinstance(probe, gym.vector.VectorEnv):
            if workers:
                raise ValueError("workers rebuild the envs in their own processes: pass the env, its id or a factory, not a vector env")
            envs, own_envs = probe, False
        else:
            n = num_envs or getattr(self.hp, "num_envs", None) or 1
            own_envs = True
            if workers == "distributed":
                from rladapt.collect import distributed

                if distributed.is_collector_rank():  # torchrun rank > 0: collect until rank 0 is done
                    distributed.serve(self, env, source, n)
                    return self
            if not workers:
                envs = make_vector_env(make_env_fns(source, n), vectorization or "sync")
            else:  # worker processes (or ranks) act and step; the loop gets whole rollouts or chunks
                collector = make_worker_collector(self, env, source, n, workers)
            if probe is not source:  # a probe made from a factory
                probe.close()
        if not workers:
            collector = VectorCollector(
                envs, masks=self.use_masks, mask_size=mask_size(self.action_space) if self.use_masks else None, device=self.device
            )
        env_name = getattr(getattr(probe, "spec", None), "id", None) or type(getattr(probe, "unwrapped", probe)).__name__
        run_logger = None
        if run_dir is not False:
            run_path = Path(run_dir) if run_dir else default_run_dir(type(self).__name__.lower(), env_name)
            run_logger = RunDirLogger(run_path)
        log = make_logger(logger, run_logger)
        log.log_config({
            "agent": type(self).__name__, "env": env_name, "steps": steps, "num_envs": collector.num_envs,
            "masks": self.use_masks, "settings": self.settings(resolved=True),
            **run_metadata(probe, run_logger.path if run_logger is not None else None),
        })
        eval_env = None if isinstance(probe, gym.vector.VectorEnv) else probe if probe is source else env
        run = TrainingRun(self, eval_env, steps, run_logger.path if run_logger is not None else None, log, callbacks)
        bar = ProgressBar(steps, progress, f"{type(self).__name__} {env_name}")
        start_steps, target = self.num_timesteps, self.num_timesteps + steps
        seed = None if self.config.seed is None else self.config.seed + start_steps
        next_checkpoint = start_steps + checkpoint_every if checkpoint_every else math.inf
        try:
            with self._threads():
                collector.reset(seed=seed)
                self.on_learn_start(collector, steps)
                collector = run.observe(collector)  # per-step and episode-end hooks
                run.learn_start()
                t0 = time.perf_counter()
                while self.num_timesteps < target:
                    before, episodes_before = collector.steps, collector.episodes
                    metrics = self.train_iteration(collector, (self.num_timesteps - start_steps) / steps)
                    self.num_timesteps += collector.steps - before
                    self.num_episodes += collector.episodes - episodes_before
                    self.num_updates += 1
                    elapsed = time.perf_counter() - t0
                    row = dict(metrics)
                    if hasattr(collector, "metrics"):  # worker collectors: restarts, policy lag
                        row.update(collector.metrics())
                    if collector.recent_return is not None:
                        row["rollout/return_mean"] = collector.recent_return
                        row["rollout/length_mean"] = collector.recent_length
                    row["rollout/episodes"] = self.num_episodes
                    row["time/steps_per_s"] = (self.num_timesteps - start_steps) / max(elapsed, 1e-9)
                    row["time/elapsed_s"] = elapsed
                    log.log(row, self.num_timesteps)
                    bar.update(collector.steps - before, collector.recent_return)
                    row["step"] = self.num_timesteps
                    stop = run.after_iteration(row)
                    if run_logger is not None and self.num_timesteps >= next_checkpoint:
                        self.save(run_logger.path / "checkpoint.pt")
                        next_checkpoint += checkpoint_every
                    if stop:
                        break
                run.learn_end()
            if run_logger is not None:
                final = self.save(run_logger.path / "agent.pt")
                log.log_checkpoint(final)
        finally:
            run.close()
            bar.close()
            log.close()
            if own_envs:
                collector.close()
        return self

    # ---------------------------------------------------------------------------------------
    # Acting and evaluation
    # ---------------------------------------------------------------------------------------

    def act(self, obs: Any, mask: np.ndarray | None = None, deterministic: bool = True) -> Any:
        """The action for one observation of the adapted env.

        :param obs: one observation (an array, or a dict of arrays for nested observations).
        :param mask: the valid-action mask (``info["action_mask"]``), or None.
        :param deterministic: the most likely action instead of a sample.
        :return: an action of the adapted env's action space.
        """
        if self.observation_space is None:
            raise RuntimeError(
                f"{type(self).__name__} has no networks yet: call learn(env, ...) or evaluate(env) first, "
                f"or setup(env.observation_space, env.action_space)"
            )
        td = TensorDict({"observation": _to_batch(obs, self.device)}, batch_size=[1], device=self.device)
        if mask is not None and self.spec.masks:
            td.set("action_mask", torch.as_tensor(np.asarray(mask, dtype=bool), device=self.device).unsqueeze(0))
        with torch.inference_mode():
            self.act_batch(td, deterministic=deterministic)
        action = self.env_action(td.get("action").cpu().numpy())[0]
        if isinstance(self.action_space, spaces.Discrete):
            return int(action)
        return action

    def evaluate(
        self,
        env: Any,
        episodes: int = 10,
        deterministic: bool = True,
        seed: int | None = None,
        video_dir: str | Path | None = None,
        video_episodes: int | None = None,
        gif: bool = False,
    ) -> EvalResult:
        """Play ``episodes`` episodes and return their raw returns and lengths.

        Returns come from ``RecordEpisodeStatistics`` (innermost in an adapted env), so they are
        the env's own rewards even when training rewards are clipped or scaled.

        :param env: the env (adapted here if it is not an ``AutoAdapt`` env), an id or a factory.
        :param episodes: number of episodes.
        :param deterministic: take the most likely action.
        :param seed: seed of the first reset (default: the agent's seed).
        :param video_dir: record the episodes as mp4 files here: the env's own frames (a copy of
            the adapted env rendering ``rgb_array``), ``eval-episode-<i>.mp4``.
        :param video_episodes: record only the first this many episodes (None: all).
        :param gif: also write each recording as an animated GIF.
        """
        if isinstance(env, gym.vector.VectorEnv):
            raise TypeError("evaluate takes a single env (or an id or factory), not a vector env")
        probe, source = self._resolve_env(env)
        self.setup(probe.observation_space, probe.action_space)
        masks = self._masks_on(probe)
        returns, lengths = [], []
        recorder = None
        if video_dir is not None:
            from rladapt.logging.video import recording_copy

            count = episodes if video_episodes is None else min(video_episodes, episodes)
            recorder = recording_copy(probe, video_dir, episodes=count, gif=gif)
        play = recorder if recorder is not None else probe
        try:
            with self._threads():
                obs, info = play.reset(seed=self.config.seed if seed is None else seed)
                total, length = 0.0, 0
                while len(returns) < episodes:
                    action = self.act(obs, info.get("action_mask") if masks else None, deterministic)
                    obs, reward, terminated, truncated, info = play.step(action)
                    total += float(reward)
                    length += 1
                    if terminated or truncated:
                        stats = info.get("episode")
                        returns.append(float(stats["r"]) if stats is not None else total)
                        lengths.append(int(stats["l"]) if stats is not None else length)
                        obs, info = play.reset()
                        total, length = 0.0, 0
        finally:
            if recorder is not None:
                recorder.close() if recorder.owns_env else recorder.finish()
            if not isinstance(env, gym.Env):  # made here from an id or a factory
                probe.close()
        return EvalResult(np.asarray(returns, dtype=np.float64), np.asarray(lengths, dtype=np.int64))

    def play(
        self,
        env: Any,
        episodes: int = 1,
        render: str | None = "ansi",
        deterministic: bool = True,
        seed: int | None = None,
        delay: float = 0.0,
        max_steps: int | None = None,
    ) -> EvalResult:
        """Play in the terminal: each step prints the env's text render and the agent's view (the
        value or probability of every action, the chosen one marked, masked ones shown as
        masked), then the reward and whether the episode ended. See :mod:`rladapt.logging.terminal`.

        :param env: an env id, an env (adapted here if needed) or a factory.
        :param episodes: number of episodes.
        :param render: ``"ansi"`` (the env's text), ``"human"`` (its window) or None (observations).
        :param deterministic: take the most likely action.
        :param seed: seed of the first reset (default: the agent's seed).
        :param delay: seconds to wait after each step.
        :param max_steps: cut episodes after this many steps (None: play them to the end).
        :return: the raw returns and lengths of the episodes.
        """
        from rladapt.logging.terminal import play

        return play(self, env, episodes, render, deterministic, seed, delay, max_steps)

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

    def save(self, path: str | Path) -> Path:
        """Save weights, optimizer state, normalisation statistics, counters and settings to
        ``path`` (tensors + JSON metadata, written atomically). Load with ``rladapt.load(path)``."""
        from rladapt.checkpoint import save_agent

        return save_agent(self, path)

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


# -------------------------------------------------------------------------------------------
# On-policy family
# -------------------------------------------------------------------------------------------


@dataclass
class OnPolicyConfig(AgentConfig):
    """Settings of on-policy agents (None: the per-kind default).

    :param num_envs: envs stepped in parallel when ``learn`` gets no ``num_envs``.
    :param n_steps: steps per env per rollout (a rollout is ``n_steps * num_envs`` steps).
    :param gamma: discount factor.
    :param gae_lambda: GAE lambda (1.0: Monte-Carlo advantages).
    :param normalize_observations: standardise float vector observations with running statistics.
    :param normalize_rewards: scale rewards by the running std of the discounted return.
    """

    num_envs: int | None = None
    n_steps: int | None = None
    gamma: float | None = None
    gae_lambda: float | None = None
    normalize_observations: bool | None = None
    normalize_rewards: bool | None = None


#: What the networks of :meth:`OnPolicyAgent.build_actor_critic` accept (the ``spec`` of PPO and A2C).
ACTOR_CRITIC_SPEC = AgentSpec(
    observations=frozenset({"vector", "image", "nested"}),
    actions=frozenset({"discrete", "multi_discrete", "continuous"}),
    masks=True,
)


class OnPolicyAgent(Agent):
    """Collects rollouts into a :class:`~rladapt.buffers.rollout.RolloutBuffer`, computes GAE, and
    calls :meth:`update`. Subclasses build ``self.policy`` (an
    :class:`~rladapt.agents.nets.ActorCritic`-like module with ``get_value``) in ``build``."""

    Config: ClassVar[type[AgentConfig]] = OnPolicyConfig

    def build(self) -> None:
        from rladapt.agents.nets import RunningNorm

        self.reward_norm = RunningNorm(()) if self.hp.normalize_rewards else None

    def build_actor_critic(self, network: nn.Module | NetworkFactory | None, hidden: tuple[int, ...]) -> None:
        """Build ``self.policy``, the actor-critic for the bound spaces (observations normalised
        when ``normalize_observations``), and ``self.params``, its parameters as one flat tensor
        (one op to zero, clip and step them all) for the optimizer. Call it from ``build``.

        :param network: your own network: a full actor-critic module, an encoder module
            (observations -> ``[B, F]`` features) or a factory ``(obs_space, action_space) -> module``;
            None: the built-in MLP or CNN.
        :param hidden: hidden layer sizes of the MLPs.
        """
        from rladapt.agents.nets import FlatParameters, make_actor_critic

        self.policy = make_actor_critic(
            self.observation_space, self.action_space, network, hidden, bool(self.hp.normalize_observations)
        ).to(self.device)
        self.params = FlatParameters(self.policy)

    def update(self, rollout: Any, progress: float) -> dict[str, float]:
        """One update from a full rollout (``rollout.data`` holds advantages); return metrics."""
        raise NotImplementedError

    def action_values(self, obs: Any, mask: np.ndarray | None = None) -> ActionValues | None:
        """The policy's probability of every action (``Discrete`` actions, built-in networks)."""
        from rladapt.agents.nets import MASKED_LOGIT, CategoricalHead

        head, features = getattr(self.policy, "head", None), getattr(self.policy, "features", None)
        if not isinstance(head, CategoricalHead) or features is None:
            return None
        with torch.inference_mode():
            logits = head(features(_to_batch(obs, self.device))[0])
            if mask is not None:
                valid = torch.as_tensor(np.asarray(mask, dtype=bool), device=self.device).unsqueeze(0)
                logits = logits.masked_fill(~valid, MASKED_LOGIT)
            probs = torch.softmax(logits, -1)[0]
        return ActionValues(probs.cpu().numpy(), "prob")

    def on_learn_start(self, collector: Any, steps: int) -> None:
        from rladapt.buffers.rollout import RolloutBuffer

        self.rollout = RolloutBuffer(self.hp.n_steps, self.device)
        self._discounted_return = torch.zeros(collector.num_envs, device=self.device)

    def train_iteration(self, collector: Any, progress: float) -> dict[str, float]:
        self.collect_rollout(collector)
        metrics = self.update(self.rollout, progress)
        norm = getattr(self.policy, "update_obs_stats", None)
        if self.hp.normalize_observations and norm is not None:
            data = self.rollout.data
            norm(data.get("observation")[data.get("valid")])
        return metrics

    def collect_rollout(self, collector: Any) -> None:
        """``n_steps`` vector steps into the rollout buffer, then advantages and value targets."""
        rollout, policy, to_env = self.rollout, self.act_batch, self.env_action
        with torch.inference_mode():  # once around the loop: entering it costs per step
            if getattr(collector, "acts_remotely", False):  # workers collected it with the current weights
                rows, last_observation = collector.collect_rollout(self.hp.n_steps)
                for t in range(self.hp.n_steps):
                    rollout.add(t, rows[t])
                last_observation = last_observation.to(self.device)
            else:
                for t in range(self.hp.n_steps):
                    step = collector.step(policy, to_env)
                    rollout.add(t, step)
                last_observation = step.get(("next", "observation"))
            last_value = self.policy.get_value(last_observation)
        if self.reward_norm is not None:
            self._scale_rewards()
        rollout.compute_advantages(last_value, self.hp.gamma, self.hp.gae_lambda)

    def _scale_rewards(self) -> None:
        """Divide rewards by the running std of the discounted return (SB3's VecNormalize)."""
        data = self.rollout.data
        rewards, done, valid = data.get(("next", "reward")), data.get(("next", "done")), data.get("valid")
        returns = torch.empty_like(rewards)
        running, gamma = self._discounted_return, self.hp.gamma
        for t in range(len(rewards)):
            running = running * gamma + rewards[t]
            returns[t] = running
            running = running * (~done[t])
        self._discounted_return = running
        self.reward_norm.update(returns[valid])
        scale = float((self.reward_norm.var + self.reward_norm.epsilon).rsqrt())
        rewards.mul_(scale).clamp_(-self.reward_norm.clip, self.reward_norm.clip)


# -------------------------------------------------------------------------------------------
# Off-policy family
# -------------------------------------------------------------------------------------------


@dataclass
class OffPolicyConfig(AgentConfig):
    """Settings of off-policy agents (None: the per-kind default).

    :param num_envs: envs stepped in parallel when ``learn`` gets no ``num_envs``.
    :param learning_starts: env steps collected (with uniformly random valid actions) before the
        first update.
    :param train_freq: vector steps collected per iteration (``train_freq * num_envs`` env steps).
    :param gradient_steps: gradient steps per iteration.
    """

    num_envs: int | None = None
    learning_starts: int | None = None
    train_freq: int | None = None
    gradient_steps: int | None = None


class OffPolicyAgent(Agent):
    """Collects ``train_freq`` vector steps per iteration, handing each to :meth:`store`, then
    calls :meth:`update` with ``gradient_steps`` once ``learning_starts`` steps are collected.

    Each step is the collector's ``[num_envs]`` TensorDict (``observation``, ``action``,
    ``("next", "observation")``, ``("next", "reward")``, ``("next", "terminated")``,
    ``("next", "truncated")``, ``valid`` ...), overwritten by the next step. The default
    :meth:`store` hands it to the replay buffer made by :meth:`build_replay`, which copies it and
    leaves out the rows with ``valid == False`` (the reset step of NEXT_STEP autoreset is not a
    transition). Before ``learning_starts`` the agent acts uniformly at random among the valid
    actions (:meth:`random_actions`); afterwards through ``act_batch(td, deterministic=False)``,
    i.e. with the agent's exploration. ``self.progress`` (0 to 1 over the ``learn`` call) is set
    before each iteration, for exploration schedules.
    """

    Config: ClassVar[type[AgentConfig]] = OffPolicyConfig

    #: The replay buffer (kept across ``learn`` calls; rebuilt when the number of envs changes).
    replay: Any = None
    progress: float = 0.0

    def build_replay(self, num_envs: int) -> Any:
        """A replay buffer for ``num_envs`` envs (None: the agent keeps no replay)."""
        return None

    def store(self, step: TensorDictBase) -> None:
        """Write one collector step into the replay buffer (which copies it)."""
        self.replay.extend(step)

    def streams_interrupted(self, env_ids: range) -> None:
        """The collector replaced envs ``env_ids`` in mid-episode (a restarted worker): their
        stored streams end here, so no n-step window joins the old episode to the new one."""
        if self.replay is not None and hasattr(self.replay, "end_streams"):
            self.replay.end_streams(np.arange(env_ids.start, env_ids.stop))

    def update(self, gradient_steps: int, progress: float) -> dict[str, float]:
        """``gradient_steps`` gradient steps from the replay buffer; return metrics."""
        raise NotImplementedError

    def random_actions(self, td: TensorDictBase) -> TensorDictBase:
        """Write uniformly random (valid, when ``action_mask`` is present) actions into ``td``."""
        n, space = td.shape[0], self.action_space
        if isinstance(space, spaces.Discrete):
            mask = td.get("action_mask", None)
            scores = torch.rand((n, int(space.n)), generator=self.generator, device=self.device)
            action = (scores.masked_fill(~mask, -1.0) if mask is not None else scores).argmax(-1)
        elif isinstance(space, spaces.Box):
            low = torch.as_tensor(space.low.reshape(-1), device=self.device)
            high = torch.as_tensor(space.high.reshape(-1), device=self.device)
            action = low + torch.rand((n, low.numel()), generator=self.generator, device=self.device) * (high - low)
        else:
            raise TypeError(f"{type(self).__name__} cannot sample random actions from {space}")
        td.set("action", action)
        return td

    def on_learn_start(self, collector: Any, steps: int) -> None:
        if self.replay is None or self.replay.num_envs not in (None, collector.num_envs):
            self.replay = self.build_replay(collector.num_envs)

    def _collect_policy(self, td: TensorDictBase) -> TensorDictBase:
        """Acting while collecting: uniformly random valid actions before ``learning_starts``,
        then the agent's exploration. (A method, not a closure, so the agent stays picklable.)"""
        with torch.inference_mode():
            if self.num_timesteps < (self.hp.learning_starts or 0):
                return self.random_actions(td)
            return self.act_batch(td, deterministic=False)

    def train_iteration(self, collector: Any, progress: float) -> dict[str, float]:
        self.progress = progress
        if getattr(collector, "acts_remotely", False):  # workers act with the latest published weights
            for step in collector.transitions(self.hp.train_freq):
                self.store(step)
        else:
            for _ in range(self.hp.train_freq):
                self.store(collector.step(self._collect_policy, self.env_action))
        collected = self.num_timesteps + self.hp.train_freq * collector.num_envs
        if collected < (self.hp.learning_starts or 0):
            return {}
        return self.update(self.hp.gradient_steps, progress)


class EpsilonGreedyAgent(OffPolicyAgent):
    """An off-policy agent with ``Discrete`` actions that explores epsilon-greedily (DQN, QLearning).

    Its Config has ``exploration_initial_eps``, ``exploration_final_eps`` and
    ``exploration_fraction``; its ``act_batch`` finds the greedy actions and passes them through
    :meth:`epsilon_greedy`.
    """

    @property
    def epsilon(self) -> float:
        """The current epsilon: falls linearly over ``exploration_fraction`` of the learn call."""
        hp = self.hp
        frac = min(1.0, self.progress / hp.exploration_fraction) if hp.exploration_fraction else 1.0
        return hp.exploration_initial_eps + frac * (hp.exploration_final_eps - hp.exploration_initial_eps)

    def env_action(self, action: np.ndarray) -> Any:
        # Actions are stored as indices from 0; the env's Discrete space may start elsewhere.
        start = int(self.action_space.start)
        return action + start if start else action

    def epsilon_greedy(self, greedy: torch.Tensor, scores: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """The greedy actions, each replaced with probability :attr:`epsilon` by a uniformly random
        valid action. Draws ``[B]`` uniforms from ``self.generator``.

        :param greedy: ``[B]`` greedy actions.
        :param scores: ``[B, n]`` uniform random scores (``torch.rand``, drawn by the caller, which
            may also use them to break greedy ties); the random action is the valid one of highest score.
        :param mask: ``[B, n]`` valid-action mask, or None (every action is valid).
        """
        random = (scores.masked_fill(~mask, -1.0) if mask is not None else scores).argmax(-1)
        explore = torch.rand(greedy.shape[0], generator=self.generator, device=scores.device) < self.epsilon
        return torch.where(explore, random, greedy)
