"""AutoAdapt: read an env's spaces and an agent's declared needs, insert the gymnasium wrappers that
join them, and explain the plan.

The chain is built inside out: episode statistics on the raw rewards, time (Atari preprocessing or
frame skip), the invalid-action mask, observation conversions, reward clipping, then action
conversions, which also convert the mask.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.wrappers import (
    AtariPreprocessing,
    DiscretizeAction,
    DiscretizeObservation,
    GrayscaleObservation,
    MaxAndSkipObservation,
    RecordEpisodeStatistics,
    RepeatAction,
    ResizeObservation,
)

from rladapt.errors import AdaptError
from rladapt.spaces import (
    COMPOSITE_SPACES,
    DISCRETE_LEAVES,
    UNUSABLE_LEAVES,
    describe,
    image_layout,
    index_size,
    is_image,
    leaves,
    nvec,
    path_str,
    stored_action,
    vector_size,
)
from rladapt.spec import AgentNeeds, AgentSpec
from rladapt.wrappers import (
    ActionMask,
    ArgmaxAction,
    ChannelFirstObservation,
    ChannelLastObservation,
    ClipReward,
    EnforceSpaces,
    EpisodeStatistics,
    FlatIndexObservation,
    FlattenBoxAction,
    FlattenCompositeAction,
    FlattenMultiDiscreteAction,
    FrameStack,
    NestedObservation,
    UnitBoxAction,
    VectorObservation,
    composite_grid,
    detect_mask_source,
)
from rladapt.wrappers.chain import find_wrapper
from rladapt.wrappers.masks import SOURCES as MASK_SOURCES
from rladapt.wrappers.multiplayer import (
    TURN_KEYS, NextPlayerTurns, OpponentSeats, PettingZooTurns, RememberPositions, aec_in, has_attribute, is_aec_env,
)
from rladapt.checkpoint import CheckpointOpponent
from rladapt.opponents import OPPONENT_NAMES, AgentOpponent, HumanOpponent, Opponent, RandomOpponent, SelfPlay, SnapshotPool
from rladapt.wrappers.parallel import AdaptedParallelEnv, group_of, is_parallel_env
from rladapt.wrappers.observations import image_target_shape
from rladapt.wrappers.state import FACILITIES as STATE_FACILITIES, EnvState, get_state, restore_problem, set_state, state_facility

@dataclass(frozen=True)
class AdaptOptions:
    """The overrides of :class:`AutoAdapt`; each turns a rule on or off or sets its size.

    :param frame_stack: frames to stack (vector and image observations). None: the agent's
        ``spec.frame_stack`` for Atari games, no stacking otherwise.
    :param frame_skip: repeat each action this many frames (max-pooling the last two for images).
        None: 4 for Atari games (inside the standard pipeline), 1 otherwise.
    :param image_size: (height, width) that larger images are resized to. None: (84, 84) when the
        agent wants preprocessed images.
    :param grayscale: convert RGB images to one channel. None: True for Atari, False otherwise.
    :param action_bins: bins per dimension when a Box action space is discretised.
    :param max_discrete_actions: largest discrete action set a conversion may create (a Box
        discretised, a MultiDiscrete or a Dict/Tuple action space flattened into one Discrete for
        DQN and Q-learning); larger ones raise an ``AdaptError`` with the sizes.
    :param mask: invalid-action masks. None: detect the convention; False: no masks; or one of
        ``"info"``, ``"action_masks"``, ``"observation"``, ``"invalid_actions"``.
    :param clip_rewards: clip rewards to [-1, 1] for training. None: True for Atari. Episode
        statistics always record the raw score.
    :param atari: use the standard Atari pipeline. None: detect ale-py envs.
    :param noop_max: Atari: at most this many no-op actions after reset.
    :param terminal_on_life_loss: Atari: end episodes when a life is lost.
    :param observation_bins: tabular agents on a bounded Box observation: bins per dimension
        (gymnasium's ``DiscretizeObservation``).
    :param discrete_as_continuous: let continuous-only agents act in Discrete envs by argmax over
        per-action scores (:class:`~rladapt.wrappers.ArgmaxAction`).
    :param env_kwargs: keyword arguments for ``gym.make`` when the env is given as an id.
    :param opponent: turn-based envs (PettingZoo AEC games, envs with ``info["current_player"]``,
        ``info["to_play"]`` or ``next_player``): who plays the seats the learner does not hold:
        ``"random"`` (legal moves only; the default), ``"human"``, ``"self"`` (the learner's current
        policy), ``"pool"`` or a :class:`~rladapt.opponents.SnapshotPool`, an agent, a checkpoint
        path, an :class:`~rladapt.opponents.Opponent`, or a list of those, one per other seat.
    :param seat: turn-based envs: the learner's seat (0 moves first); None: alternate between episodes.
    """

    frame_stack: int | None = None
    frame_skip: int | None = None
    image_size: tuple[int, int] | None = None
    grayscale: bool | None = None
    action_bins: int | tuple[int, ...] = 7
    max_discrete_actions: int = 4096
    mask: bool | str | None = None
    clip_rewards: bool | None = None
    atari: bool | None = None
    noop_max: int = 30
    terminal_on_life_loss: bool = False
    observation_bins: int | tuple[int, ...] | None = None
    discrete_as_continuous: bool = False
    env_kwargs: dict[str, Any] | None = None
    opponent: Any = None
    seat: int | None = None

    @classmethod
    def from_overrides(cls, overrides: dict[str, Any]) -> "AdaptOptions":
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(overrides) - set(valid))
        if unknown:
            raise AdaptError(f"unknown AutoAdapt override(s) {unknown}; valid overrides are: {', '.join(valid)}")
        options = cls(**overrides)
        for name in ("frame_stack", "frame_skip"):
            value = getattr(options, name)
            if value is not None and (not isinstance(value, (int, np.integer)) or value < 1):
                raise AdaptError(f"{name} must be a positive integer, got {value!r}")
        if options.image_size is not None:
            size = tuple(options.image_size)
            if len(size) != 2 or not all(isinstance(v, (int, np.integer)) and v > 0 for v in size):
                raise AdaptError(f"image_size must be (height, width) of positive integers, got {options.image_size!r}")
            object.__setattr__(options, "image_size", (int(size[0]), int(size[1])))
        limit = options.max_discrete_actions
        if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
            raise AdaptError(f"max_discrete_actions must be a positive integer, got {limit!r}")
        if options.seat is not None and (isinstance(options.seat, bool) or not isinstance(options.seat, (int, np.integer)) or options.seat < 0):
            raise AdaptError(f"seat must be None (alternate between episodes) or a seat number >= 0, got {options.seat!r}")
        if options.mask not in (None, False, True) and options.mask not in MASK_SOURCES:
            raise AdaptError(f"mask must be None (detect), False, True or one of {sorted(MASK_SOURCES)}, got {options.mask!r}")
        return options


@dataclass(frozen=True)
class PlanStep:
    """One step of a plan: the wrapper inserted (None for a note), what it changes, and why.

    :param wrapper: the wrapper's class name (None for a note that inserts nothing).
    :param change: what the step changes, for people.
    :param reason: why it was chosen.
    :param rule: the AutoAdapt rule that made the step (``"atari_preprocessing"``,
        ``"action_mask"``, ``"vector_observation"``, ...): what code reads instead of class names
        (the Atari fast path of the collectors reads the plan's rules).
    :param params: the wrapper's constructor arguments.
    """

    wrapper: str | None
    change: str
    reason: str
    rule: str | None = None
    params: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False)

    def __str__(self) -> str:
        where = f"  [{self.wrapper}]" if self.wrapper else ""
        return f"{self.change} ({self.reason}){where}"


class Plan(tuple):
    """The steps AutoAdapt chose, innermost first. ``str(plan)`` is for people."""

    def __str__(self) -> str:
        if not self:
            return "no adaptation needed"
        return "\n".join(f"{i}. {step}" for i, step in enumerate(self, 1))

    @property
    def wrappers(self) -> list[str]:
        """Names of the wrappers inserted, innermost first."""
        return [step.wrapper for step in self if step.wrapper]

    @property
    def rules(self) -> list[str]:
        """The rule ids of the steps that inserted a wrapper, innermost first."""
        return [step.rule for step in self if step.wrapper]

    def step(self, rule: str) -> PlanStep | None:
        """The first step made by ``rule``, or None."""
        return next((step for step in self if step.rule == rule), None)

    def with_note(self, rule: str, change: str, reason: str) -> "Plan":
        """This plan with a note (a step that inserts no wrapper) at the end; an earlier note of
        the same rule is replaced (e.g. how a run's envs were made, told at each ``learn``)."""
        return Plan([step for step in self if step.rule != rule] + [PlanStep(None, change, reason, rule)])


def _agent_spec(agent: AgentNeeds) -> AgentSpec:
    if isinstance(agent, AgentSpec):
        return agent
    spec = getattr(agent, "spec", None)
    if not isinstance(spec, AgentSpec):
        raise TypeError(f"AutoAdapt needs an agent (with a .spec AgentSpec) or an AgentSpec, got {agent!r}")
    return spec


def _agent_name(agent: AgentNeeds) -> str:
    if isinstance(agent, AgentSpec):
        return "the agent"
    return agent.__name__ if isinstance(agent, type) else type(agent).__name__


#: Env families by the module their base env class comes from: what per-kind defaults may depend
#: on (never an env id). The first matching prefix wins.
ENV_FAMILIES = (
    ("gymnasium.envs.classic_control", "classic_control"),
    ("gymnasium.envs.box2d", "box2d"),
    ("gymnasium.envs.mujoco", "mujoco"),
    ("gymnasium.envs.toy_text", "toy_text"),
    ("ale_py", "atari"),
    ("rladapt.envs.tictactoe", "board_game"),
    ("pettingzoo.classic", "board_game"),
    ("rladapt.envs", "toy_text"),
    ("mpe2", "multi_agent"),
    ("pettingzoo.mpe", "multi_agent"),
    ("pettingzoo.butterfly", "multi_agent"),
    ("pettingzoo.sisl", "multi_agent"),
)


def env_family(env: gym.Env) -> str:
    """The family of an env's base class (:data:`ENV_FAMILIES`): ``"classic_control"``,
    ``"box2d"``, ``"mujoco"``, ``"toy_text"``, ``"atari"``, ``"board_game"``, ``"multi_agent"``
    (PettingZoo parallel envs: MPE, butterfly, SISL), or ``"other"``."""
    base = getattr(env, "unwrapped", env)
    if isinstance(base, PettingZooTurns):  # the game's own class says the family
        base = base.aec.unwrapped
    module = type(base).__module__
    return next((family for prefix, family in ENV_FAMILIES if module == prefix or module.startswith(prefix + ".")), "other")


def _is_atari(env: gym.Env) -> bool:
    return env_family(env) == "atari"


def _is_atari_id(env_id: str) -> bool:
    spec = gym.spec(env_id)
    entry = spec.entry_point if isinstance(spec.entry_point, str) else getattr(spec.entry_point, "__module__", "")
    return entry.startswith("ale_py")


def _has_wrapper(env: gym.Env, wrapper_type: type) -> bool:
    return find_wrapper(env, wrapper_type) is not None


def _suggest(kind_field: str, kind: str) -> str:
    from rladapt.registry import agents_accepting

    names = agents_accepting(**{kind_field: kind})
    return ", ".join(names) if names else "none of the built-in agents"


def resolve_opponent(spec: Any, learner: Any = None) -> Opponent:
    """An :class:`Opponent` from what a user passes: ``"random"``, ``"human"``, ``"self"``,
    ``"pool"`` (a default :class:`SnapshotPool`), an :class:`Opponent`, an agent (a fixed
    opponent), or a checkpoint path (a :class:`~rladapt.checkpoint.CheckpointOpponent`).

    :param spec: the opponent.
    :param learner: the learner agent (bound to ``"self"`` and pools at once when it is an instance).
    """
    if isinstance(spec, Opponent):
        opponent = spec
    elif isinstance(spec, str) and spec in OPPONENT_NAMES:
        opponent = {"random": RandomOpponent, "human": HumanOpponent, "self": SelfPlay, "pool": SnapshotPool}[spec]()
    elif isinstance(spec, (str, Path)):
        if not Path(spec).exists():
            raise AdaptError(
                f"opponent {spec!r} is neither one of {list(OPPONENT_NAMES)} nor an existing checkpoint file; "
                f"pass opponent='random', 'human', 'self', 'pool', an agent, a checkpoint path or an Opponent"
            )
        opponent = CheckpointOpponent(spec)
    elif isinstance(spec, type):
        raise AdaptError(f"opponent {spec.__name__} is a class: pass an agent instance (trained or loaded), not its class")
    elif callable(getattr(spec, "act", None)) and hasattr(spec, "spec"):
        opponent = AgentOpponent(spec)
    else:
        raise AdaptError(
            f"opponent {spec!r} is not understood: pass 'random', 'human', 'self', 'pool', an agent, a checkpoint path, "
            f"a SnapshotPool(...) or an Opponent subclass instance"
        )
    if learner is not None and opponent.needs_learner and not isinstance(learner, type) and hasattr(learner, "act"):
        opponent.bind_learner(learner)
    return opponent


class _Builder:
    """Builds the chain step by step, recording each wrapper in the plan."""

    def __init__(self, env: gym.Env, spec: AgentSpec, options: AdaptOptions, agent_name: str):
        self.env = env
        self.spec = spec
        self.options = options
        self.agent_name = agent_name
        self.steps: list[PlanStep] = []
        #: The env says whose turn it is (multi-player): opponents play the other seats.
        self.turn_based = False
        self.per_player_rewards = False
        self.num_players = 1
        self.family = "other"

    def wrap(self, rule: str, wrapper: type, change: str, reason: str, **kwargs: Any) -> None:
        self.env = wrapper(self.env, **kwargs)
        self.steps.append(PlanStep(wrapper.__name__, change, reason, rule, dict(kwargs)))

    def note(self, rule: str, change: str, reason: str) -> None:
        self.steps.append(PlanStep(None, change, reason, rule))

    @property
    def accepts(self) -> str:
        return f"{self.agent_name} accepts observations {sorted(self.spec.observations)} and actions {sorted(self.spec.actions)}"

    # -- turn-based games ----------------------------------------------------------------------
    def turns(self, probe_info: dict[str, Any] | None) -> None:
        """Recognise a turn-based env and bring it to the turn protocol (:mod:`rladapt.wrappers.multiplayer`)."""
        if isinstance(self.env, PettingZooTurns):
            self.turn_based = True
        elif has_attribute(self.env, "next_player") or has_attribute(self.env, "next_player_index"):
            self.wrap("next_player_turns", NextPlayerTurns, "env.next_player and per-player rewards -> info['current_player'], "
                      "info['rewards'], the mover's reward", "SRL-style turn-based env: one learner seat, opponents at the others")
            self.turn_based = True
        elif probe_info is not None and any(key in probe_info for key in TURN_KEYS):
            key = next(key for key in TURN_KEYS if key in probe_info)
            self.note("turn_info", f"info[{key!r}] says whose turn it is", "turn-based env: one learner seat, opponents at the others")
            self.turn_based = True
        seated = self.options.opponent is not None or self.options.seat is not None
        if self.turn_based and self.spec.plays_every_seat and not seated:
            self.note("every_seat", "no opponents: the agent moves for every player", f"{self.agent_name} plays every seat (self-play search)")
            self.turn_based = False
            return
        if not self.turn_based and seated:
            raise AdaptError(
                "opponent and seat apply to turn-based envs (a PettingZoo AEC game, or an env with info['current_player'], "
                "info['to_play'] or a next_player attribute); this env says nothing about whose turn it is"
            )
        self.per_player_rewards = isinstance(self.env, (PettingZooTurns, NextPlayerTurns)) or (
            probe_info is not None and "rewards" in probe_info)
        self.num_players = int(self.env.metadata.get("num_players") or (probe_info or {}).get("num_players") or 2)

    def seats(self, learner: Any) -> None:
        """The learner holds one seat; the opponents play the others (outermost: they see and act as the learner does)."""
        spec = self.options.opponent if self.options.opponent is not None else "random"
        specs = list(spec) if isinstance(spec, (list, tuple)) else [spec]
        opponents = [resolve_opponent(s, learner) for s in specs]
        if self.options.seat is not None and self.options.seat >= self.num_players:
            raise AdaptError(f"seat={self.options.seat}, but the game has {self.num_players} seats (0 to {self.num_players - 1})")
        seat = f"seat {self.options.seat}" if self.options.seat is not None else "seats 0 and 1 in turn (alternating between episodes)" if self.num_players == 2 else f"seats 0..{self.num_players - 1} in turn"
        rewards = ("the learner's own reward (info['rewards'] per player)" if self.per_player_rewards
                   else "the learner's own reward: the scalar reward is the mover's, its negative the other seat's (zero-sum)")
        self.wrap("opponent_seats", OpponentSeats, f"{self.num_players}-player game -> the learner plays {seat}; opponents: "
                  f"{', '.join(o.name for o in opponents)}", f"rewards: {rewards}; info['outcome'] win/draw/loss at the end",
                  opponents=opponents, seat=self.options.seat, num_players=self.num_players, family=self.family)

    # -- the env's promises and episode statistics ---------------------------------------------
    def enforce_spaces(self) -> None:
        if not _has_wrapper(self.env, EnforceSpaces):
            self.wrap("enforce_spaces", EnforceSpaces, "observations checked against the declared space, rewards -> float",
                      "gymnasium's promises, kept for every wrapper, agent and env checker after it")

    def episode_statistics(self) -> None:
        if not _has_wrapper(self.env, RecordEpisodeStatistics):
            self.wrap("episode_statistics", EpisodeStatistics, "episode return and length -> info['episode']", "raw score for logging, before any reward change")

    # -- time and Atari ----------------------------------------------------------------------
    def atari_pipeline(self) -> None:
        o = self.options
        inner_skip = getattr(self.env.unwrapped, "_frameskip", 1)
        skip = 4 if o.frame_skip is None else o.frame_skip
        grayscale = True if o.grayscale is None else o.grayscale
        size = o.image_size or (84, 84)
        if inner_skip != 1:
            self.note(
                "atari_inner_skip",
                f"the env already skips {inner_skip} frames (without max-pooling)",
                "make it with frameskip=1 (or pass the id) for the standard max-pooled skip",
            )
            skip = 1
        self.wrap(
            "atari_preprocessing",
            AtariPreprocessing,
            f"{describe(self.env.observation_space)} -> {'grayscale' if grayscale else 'RGB'} {size[0]}x{size[1]}, "
            f"skip {skip} (max-pool), up to {o.noop_max} no-ops at reset",
            "Atari standard pipeline",
            noop_max=o.noop_max,
            frame_skip=skip,
            screen_size=(size[1], size[0]),
            terminal_on_life_loss=o.terminal_on_life_loss,
            grayscale_obs=grayscale,
        )
        if not grayscale:
            self.wrap("atari_channel_first", ChannelFirstObservation, f"{describe(self.env.observation_space)} -> channel-first", "networks read CHW")
        if o.clip_rewards is not False:
            self.wrap("atari_clip_rewards", ClipReward, "reward -> clipped to [-1, 1]", "Atari training; episode statistics keep the raw score", min_reward=-1.0, max_reward=1.0)
        stack = self.spec.frame_stack if o.frame_stack is None else o.frame_stack
        if stack > 1:
            before = describe(self.env.observation_space)
            self.wrap("atari_frame_stack", FrameStack, f"{before} -> stack of {stack}", "motion from consecutive frames", stack_size=stack)

    def frame_skip(self, image: bool) -> None:
        skip = self.options.frame_skip
        if skip is None or skip == 1:
            return
        if image:
            self.wrap("frame_skip", MaxAndSkipObservation, f"repeat each action {skip} frames, max-pool the last two", "frame_skip override", skip=skip)
        else:
            self.wrap("frame_skip", RepeatAction, f"repeat each action {skip} steps, summing rewards", "frame_skip override", num_repeats=skip)

    # -- masks -------------------------------------------------------------------------------
    def masks(self, probe_info: dict[str, Any] | None) -> None:
        choice = self.options.mask
        if choice is False:
            return
        source = choice if isinstance(choice, str) else detect_mask_source(self.env, probe_info)
        if source is None:
            if choice is True:
                raise AdaptError(
                    "mask=True but the env exposes no invalid-action mask; rladapt reads "
                    + "; ".join(MASK_SOURCES.values())
                )
            return
        if not self.spec.masks and source != "observation" and not self.turn_based:
            self.note("mask_unused", f"{MASK_SOURCES[source]} left unused", f"{self.agent_name} does not use action masks")
            return
        skip = self.options.frame_skip or 1
        if skip > 1 and self.spec.masks:
            raise AdaptError(
                f"frame_skip={skip} with action masks ({MASK_SOURCES[source]}): a skipped frame repeats the action "
                f"chosen under the first frame's mask, which may be invalid in the frames after it. Fix: "
                f"frame_skip=1, or mask=False to ignore the masks"
            )
        why = "agent uses action masks" if self.spec.masks else (
            f"{self.agent_name} ignores masks; opponents read the legal moves" if self.turn_based
            else f"{self.agent_name} ignores masks; the key leaves the observation")
        self.wrap("action_mask", ActionMask, f"{MASK_SOURCES[source]} -> info['action_mask'] (bool)", why, source=source)

    # -- observations ------------------------------------------------------------------------
    def observations(self) -> None:
        space = self.env.observation_space
        accepted = self.spec.observations
        if isinstance(space, (spaces.Dict, spaces.Tuple)):
            self._nested_observation(space)
        elif isinstance(space, spaces.Discrete):
            if "index" in accepted:
                self._to_index(space)
                return
            self._to_vector_or_nested(space, "discrete index")
        elif is_image(space):
            if "image" in accepted:
                self._image_pipeline(space)
            elif "vector" in accepted:
                self._image_pipeline(space)
                self.flatten_images()
            elif "nested" in accepted:
                self.wrap("image_to_nested", NestedObservation, f"{describe(space)} -> Dict(image)", "agent needs nested input", image_size=self._image_size(space.shape), grayscale=bool(self.options.grayscale))
            else:
                self._error_observation((), space, "an image")
        elif isinstance(space, (spaces.Box, spaces.MultiDiscrete, spaces.MultiBinary)):
            if "vector" not in accepted and "nested" not in accepted and "index" in accepted:
                self._to_index(space)
                return
            stack = self.options.frame_stack or 1
            if stack > 1:
                self.wrap("vector_frame_stack", FrameStack, f"{describe(space)} -> stack of {stack}", "frame_stack override", stack_size=stack)
            self._to_vector_or_nested(self.env.observation_space, "vector")
        else:
            self._error_observation((), space, f"a {type(space).__name__} space")

    def _to_vector_or_nested(self, space: spaces.Space, what: str) -> None:
        accepted = self.spec.observations
        if "vector" in accepted:
            plain = isinstance(space, spaces.Box) and space.dtype == np.float32 and len(space.shape) == 1
            if not plain:
                encoding = "one-hot " if isinstance(space, DISCRETE_LEAVES) else ""
                self.wrap("vector_observation", VectorObservation, f"{describe(space)} observation -> {encoding}float32[{_vector_len(space)}]", f"{self.agent_name} needs float vectors")
        elif "nested" in accepted:
            self.wrap("vector_to_nested", NestedObservation, f"{describe(space)} -> Dict(vector: float32[{_vector_len(space)}])", f"{self.agent_name} needs nested input")
        elif "index" in accepted:
            self._to_index(space)
        else:
            self._error_observation((), space, what)

    def _to_index(self, space: spaces.Space) -> None:
        if isinstance(space, spaces.Discrete) and int(space.start) == 0:
            return  # already a state index (one with another start is renumbered from 0 below)
        if isinstance(space, spaces.Box):
            bins = self.options.observation_bins
            finite = np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))
            if bins is None or not finite:
                fix = "pass observation_bins=N to discretise it" if finite else "wrap it in gymnasium's DiscretizeObservation with finite bounds"
                raise AdaptError(
                    f"{path_str(())}: {describe(space)} is continuous, but {self.accepts} (one state index). Fix: {fix}, "
                    f"or use an agent that accepts vectors ({_suggest('observation', 'vector')})"
                )
            self.wrap("discretize_observation", DiscretizeObservation, f"{describe(space)} -> one index ({bins} bins per dimension)", "tabular agent needs a state index", bins=bins)
            return
        size = index_size(space)
        self._check_index_size(space, size)
        self.wrap("flat_index", FlatIndexObservation, f"{describe(space)} -> one index of Discrete({size})", "tabular agent needs a state index")

    def _check_index_size(self, space: spaces.Space, size: int | None) -> None:
        if size is None or size > 10_000_000:
            raise AdaptError(
                f"{path_str(())}: {describe(space)} has {'no finite' if size is None else f'{size:,}'} states, too many for a tabular agent; "
                f"{self.accepts}. Fix: use a network agent ({_suggest('observation', 'vector')})"
            )

    def _image_size(self, shape: tuple[int, ...]) -> tuple[int, int] | None:
        size = self.options.image_size
        if size is None:
            if not self.spec.preprocess_images:
                return None
            size = (84, 84)
        if image_layout(shape) == "stack":
            return None  # already a stack of channel-first images: sizes stay
        height, width = image_target_shape(shape, None, False)[-2:]
        if self.options.image_size is None and height <= size[0] and width <= size[1]:
            return None  # small images stay as they are
        return None if (height, width) == tuple(size) else tuple(size)

    def _image_pipeline(self, space: spaces.Box) -> None:
        o = self.options
        layout = image_layout(space.shape)
        size = self._image_size(space.shape)
        grayscale = bool(o.grayscale) and layout in ("HWC", "CHW") and space.shape[-1 if layout == "HWC" else 0] == 3
        if layout == "CHW" and (size or grayscale):
            self.wrap("image_channel_last", ChannelLastObservation, f"{describe(self.env.observation_space)} -> channel-last", "gymnasium's image wrappers read HWC")
            layout = "HWC"
        if grayscale:
            before = describe(self.env.observation_space)
            self.wrap("grayscale", GrayscaleObservation, f"{before} -> grayscale", "grayscale override", keep_dim=False)
            layout = "HW"
        if size:
            before = describe(self.env.observation_space)
            self.wrap("resize", ResizeObservation, f"{before} -> {size[0]}x{size[1]}", "large images cost compute; 84x84 is the standard input", shape=size)
        if layout == "HWC":
            self.wrap("image_channel_first", ChannelFirstObservation, f"{describe(self.env.observation_space)} -> channel-first", "networks read CHW")
        stack = o.frame_stack or 1
        if stack > 1:
            self.wrap("image_frame_stack", FrameStack, f"{describe(self.env.observation_space)} -> stack of {stack}", "frame_stack override", stack_size=stack)

    def _nested_observation(self, space: spaces.Dict | spaces.Tuple) -> None:
        accepted = self.spec.observations
        drop: list[tuple[Any, ...]] = []
        usable: list[tuple[tuple[Any, ...], spaces.Space]] = []
        for path, leaf in leaves(space):
            if isinstance(leaf, UNUSABLE_LEAVES) or not isinstance(leaf, (spaces.Box, *DISCRETE_LEAVES)):
                drop.append(path)
                self.note("drop_leaf", f"{path_str(path)}: {describe(leaf)} dropped", "no network reads this kind of leaf")
            else:
                usable.append((path, leaf))
        if not usable:
            raise AdaptError(
                f"{path_str(())}: nothing usable remains of {describe(space)} (Text, Graph and Sequence leaves are dropped); "
                f"{self.accepts}. Fix: wrap the env to expose a Box or Discrete observation"
            )
        if self.options.frame_stack and self.options.frame_stack > 1:
            raise AdaptError(f"{path_str(())}: frame_stack applies to vector and image observations, not to {describe(space)}. Fix: drop frame_stack")
        has_images = any(is_image(leaf) for _, leaf in usable)
        all_discrete = all(isinstance(leaf, DISCRETE_LEAVES) for _, leaf in usable)
        if all_discrete and "index" in accepted and not drop and not ({"vector", "nested"} & accepted):
            size = index_size(space)
            self._check_index_size(space, size)
            self.wrap("flat_index", FlatIndexObservation, f"{describe(space)} -> one index of Discrete({size})", "tabular agent needs a state index")
            return
        if "nested" in accepted and has_images:
            size = self.options.image_size or ((84, 84) if self.spec.preprocess_images else None)
            self.wrap(
                "nested_observation",
                NestedObservation,
                f"{describe(space)} -> Dict of channel-first images + one float32 'vector'",
                f"{self.agent_name} reads nested input: images stay images, vectors are concatenated",
                drop=drop,
                image_size=size,
                grayscale=bool(self.options.grayscale),
            )
        elif "vector" in accepted:
            n = sum(_vector_len(leaf) for _, leaf in usable)
            why = f"{self.agent_name} needs one float vector" + ("; image leaves are flattened" if has_images else "")
            self.wrap("vector_observation", VectorObservation, f"{describe(space)} -> concatenated float32[{n}]" + (" (one-hot for discrete leaves)" if any(isinstance(l, DISCRETE_LEAVES) for _, l in usable) else ""), why, drop=drop)
        elif "nested" in accepted:
            self.wrap("nested_observation", NestedObservation, f"{describe(space)} -> Dict('vector')", f"{self.agent_name} reads nested input", drop=drop)
        elif "index" in accepted:
            bad = next(path for path, leaf in usable if not isinstance(leaf, DISCRETE_LEAVES))
            raise AdaptError(
                f"{path_str(bad)}: {describe(dict(usable)[bad])} is not discrete, but {self.accepts} (one state index). "
                f"Fix: use a network agent ({_suggest('observation', 'nested')})"
            )
        else:
            self._error_observation((), space, "a nested observation")

    def _error_observation(self, path: tuple[Any, ...], space: spaces.Space, what: str) -> None:
        kinds = {"image": "image", "a nested observation": "nested"}.get(what, "vector")
        raise AdaptError(
            f"{path_str(path)}: {describe(space)} is {what}, but {self.accepts}; no conversion exists. "
            f"Fix: use an agent that accepts it ({_suggest('observation', kinds)})"
        )

    def flatten_images(self) -> None:
        space = self.env.observation_space
        self.wrap("flatten_image", VectorObservation, f"{describe(space)} -> flat float32[{int(np.prod(space.shape))}]", f"{self.agent_name} does not accept images")

    # -- rewards -----------------------------------------------------------------------------
    def rewards(self, atari: bool) -> None:
        if self.options.clip_rewards and not atari:
            self.wrap("clip_rewards", ClipReward, "reward -> clipped to [-1, 1]", "clip_rewards override; episode statistics keep the raw return", min_reward=-1.0, max_reward=1.0)

    # -- env state (search) ------------------------------------------------------------------
    def env_state(self) -> None:
        if not self.spec.needs_env_state:
            return
        problem = restore_problem(self.env)
        if problem is not None:
            raise AdaptError(f"{self.agent_name} searches from saved env states, but {problem}")
        facility = state_facility(self.env)
        self.note("env_state", f"env state saved by {STATE_FACILITIES[facility]}, with every wrapper's state",
                  f"{self.agent_name} searches from saved states (env.get_state() / env.set_state(state))")
        if not self.turn_based and aec_in(self.env) is None:  # a single-player env: outermost, the whole chain
            self.wrap("remember_positions", RememberPositions, "each observation -> the env state behind it remembered",
                      f"{self.agent_name} searches in the env from the state behind the observation it acts on "
                      f"(a single-player env's observation is not its state)")

    def remember_positions(self) -> None:
        """Inside the seats, so that the positions of every seat's observations are remembered: the
        learner's, and those of opponents that search (the agent itself at a game's other seats)."""
        if self.spec.needs_env_state and aec_in(self.env) is not None:
            self.wrap("remember_positions", RememberPositions, "each observation -> the game position behind it remembered",
                      f"{self.agent_name} starts its search at the position an observation shows, which a game's "
                      f"observation need not say (history planes, OpenSpiel tensors)")

    # -- actions -----------------------------------------------------------------------------
    def actions(self) -> None:
        space = self.env.action_space
        accepted = self.spec.actions
        name = self.agent_name
        if isinstance(space, COMPOSITE_SPACES):
            if not self._composite_action(space):
                return
            space = self.env.action_space  # one Box now: continue with the Box rules
        if isinstance(space, spaces.Discrete):
            if "discrete" in accepted:
                return
            if {"continuous", "unit_continuous"} & accepted and self.options.discrete_as_continuous:
                self.wrap("argmax_action", ArgmaxAction, f"{describe(space)} action <- argmax of float32[{space.n}] scores in [-1, 1]", "discrete_as_continuous override")
                return
            if "multi_discrete" in accepted:
                raise AdaptError(f"action: {describe(space)}; {self.accepts}. Fix: use {_suggest('action', 'discrete')}")
            raise AdaptError(
                f"action: {describe(space)} is discrete, but {self.accepts}. Fix: use an agent for discrete actions "
                f"({_suggest('action', 'discrete')}), or pass discrete_as_continuous=True to act by argmax over scores"
            )
        if isinstance(space, (spaces.MultiDiscrete, spaces.MultiBinary)):
            if "multi_discrete" in accepted:
                return
            if "discrete" in accepted:
                size = math.prod(int(n) for n in nvec(space))
                if size > self.options.max_discrete_actions:
                    raise AdaptError(
                        f"action: flattening {describe(space)} gives {size:,} discrete actions, more than "
                        f"max_discrete_actions={self.options.max_discrete_actions:,}; {self.accepts}. "
                        f"Fix: use an agent for multi-discrete actions ({_suggest('action', 'multi_discrete')}) or raise max_discrete_actions"
                    )
                self.wrap("flatten_multi_discrete", FlattenMultiDiscreteAction, f"{describe(space)} action -> Discrete({size}) (masks -> product mask)", f"{name} picks one action from a list")
                return
            raise AdaptError(
                f"action: {describe(space)} is multi-discrete, but {self.accepts}; no conversion exists. "
                f"Fix: use {_suggest('action', 'multi_discrete')} or {_suggest('action', 'discrete')}"
            )
        if isinstance(space, spaces.Box):
            finite = bool(np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high)))
            unit = finite and bool(np.all(space.low == -1) and np.all(space.high == 1))
            if "continuous" in accepted and not finite:
                unbounded = [int(i) for i in np.flatnonzero(~(np.isfinite(space.low) & np.isfinite(space.high)).reshape(-1))]
                raise AdaptError(
                    f"action: {describe(space)} has infinite bounds in dimension(s) {unbounded}; {name}'s Gaussian "
                    f"policy scales and clips its actions to the action bounds, which must be finite. Fix: bound the action space "
                    f"(gymnasium.wrappers.ClipAction keeps infinite bounds; declare the env's real limits)"
                )
            if "continuous" in accepted or ("unit_continuous" in accepted and unit):
                return
            if "unit_continuous" in accepted:
                if not finite:
                    raise AdaptError(f"action: {describe(space)} has infinite bounds, so it cannot be rescaled to [-1, 1]; {self.accepts}. Fix: bound the action space")
                self.wrap("unit_box_action", UnitBoxAction, f"{describe(space)} action -> Box in [-1, 1], clipped", f"{name} outputs actions in [-1, 1]")
                return
            if {"discrete", "multi_discrete"} & accepted:
                if not finite:
                    raise AdaptError(f"action: {describe(space)} has infinite bounds, so it cannot be discretised; {self.accepts}. Fix: bound the action space")
                bins = self.options.action_bins
                per_dim = np.broadcast_to(np.asarray(bins), (int(np.prod(space.shape)),))
                size = int(np.prod(per_dim.astype(object)))
                if "discrete" in accepted and size <= self.options.max_discrete_actions:
                    self.wrap("discretize_action", DiscretizeAction, f"{describe(space)} action -> Discrete({size}) grid ({bins} bins per dimension)", f"{name} needs discrete actions", bins=bins)
                    return
                if "multi_discrete" in accepted:
                    self.wrap("discretize_action", DiscretizeAction, f"{describe(space)} action -> MultiDiscrete({per_dim.tolist()})", f"{name} needs discrete actions", bins=bins, multidiscrete=True)
                    return
                raise AdaptError(
                    f"action: discretising {describe(space)} with {bins} bins per dimension gives a grid of {size:,} actions, more than "
                    f"max_discrete_actions={self.options.max_discrete_actions:,}; {self.accepts}. Fix: fewer action_bins, or a continuous agent "
                    f"({_suggest('action', 'continuous')})"
                )
            raise AdaptError(f"action: {describe(space)}; {self.accepts}; no conversion exists")
        raise AdaptError(f"action: {describe(space)} is not supported; {self.accepts}. Fix: wrap the env to expose a Discrete, MultiDiscrete or Box action space")


    def _composite_action(self, space: spaces.Dict | spaces.Tuple) -> bool:
        """The rules for a Dict/Tuple action space. Agents with one head per leaf take it as it
        is; value-based agents get it flattened into one Discrete (Box leaves discretised);
        continuous agents get its Box leaves as one Box (True: the Box rules come next)."""
        accepted, name = self.spec.actions, self.agent_name
        found = list(leaves(space))
        for path, leaf in found:
            if not isinstance(leaf, (*DISCRETE_LEAVES, spaces.Box)):
                raise AdaptError(f"{path_str(path, 'action')}: {describe(leaf)} cannot be an action leaf; {self.accepts}. "
                                 f"Fix: wrap the env so that every action leaf is Discrete, MultiDiscrete, MultiBinary or Box")
            if isinstance(leaf, spaces.Box) and not (np.all(np.isfinite(leaf.low)) and np.all(np.isfinite(leaf.high))):
                raise AdaptError(f"{path_str(path, 'action')}: {describe(leaf)} has infinite bounds; {self.accepts}. Fix: bound the action space")
        discrete = [(path, leaf) for path, leaf in found if isinstance(leaf, DISCRETE_LEAVES)]
        if "composite" in accepted:
            shape, dtype = stored_action(space)
            masked = _has_wrapper(self.env, ActionMask) and bool(discrete)
            self.note(
                "composite_action",
                f"{describe(space)} action -> one head per leaf ({len(found)} leaves: "
                + ", ".join(f"{path_str(path, 'action')} {describe(leaf)}" for path, leaf in found)
                + f"), stored flat as {dtype}[{shape[0]}] in leaf order"
                + ("; per-leaf masks concatenated in leaf order" if masked else ""),
                f"{name} acts on composite actions: log-probabilities and entropies summed over the leaves",
            )
            return False
        if {"continuous", "unit_continuous"} & accepted:
            if discrete:
                path, leaf = discrete[0]
                raise AdaptError(
                    f"{path_str(path, 'action')}: {describe(leaf)} is a discrete leaf of {describe(space)}, but {self.accepts}: "
                    f"a continuous policy takes continuous leaves only (a Dict/Tuple of Boxes becomes one Box). "
                    f"Fix: use an agent for composite actions ({_suggest('action', 'composite')}), or make that leaf a Box"
                )
            size = sum(int(np.prod(leaf.shape)) for _, leaf in found)
            self.wrap("flatten_box_action", FlattenBoxAction, f"{describe(space)} action -> one float32[{size}] Box (leaves side by side)",
                      f"{name} has one continuous policy")
            return True
        if "discrete" in accepted:
            bins = self.options.action_bins
            grid = composite_grid(space, bins)
            size = math.prod(n for *_, sizes in grid for n in sizes)
            factors = " x ".join(
                f"{path_str(path, 'action')} " + ("x".join(str(n) for n in sizes) + (" bins" if isinstance(leaf, spaces.Box) else ""))
                for path, leaf, sizes in grid
            )
            if size > self.options.max_discrete_actions:
                raise AdaptError(
                    f"action: flattening {describe(space)} gives {factors} = {size:,} discrete actions, more than "
                    f"max_discrete_actions={self.options.max_discrete_actions:,}; {self.accepts}. Fix: fewer action_bins, "
                    f"raise max_discrete_actions, or use an agent for composite actions ({_suggest('action', 'composite')})"
                )
            boxes = any(isinstance(leaf, spaces.Box) for _, leaf in found)
            self.wrap("flatten_composite_action", FlattenCompositeAction,
                      f"{describe(space)} action -> Discrete({size}): {factors}"
                      + (f" (Box leaves discretised to bin centers, {bins} bins per dimension)" if boxes else "")
                      + (" (masks -> product mask)" if discrete else ""),
                      f"{name} picks one action from a list", bins=bins)
            return False
        raise AdaptError(
            f"action: {describe(space)} is composite, but {self.accepts}; no conversion exists. "
            f"Fix: use an agent for composite actions ({_suggest('action', 'composite')})"
        )


def _vector_len(space: spaces.Space) -> int:
    if isinstance(space, (spaces.Dict, spaces.Tuple)):
        return sum(vector_size(leaf) for _, leaf in leaves(space))
    return vector_size(space)


class AutoAdapt(gym.Wrapper):
    """Adapt any gymnasium env to an agent's declared needs with a chain of gymnasium wrappers.

    The result is an ordinary gymnasium env: ``check_env`` passes on it, other libraries can train
    on it, and ``gym.make(adapted.spec)`` rebuilds the whole chain (the spec is the chain's; this
    outer object only holds the plan and adds no work per step).

    Example:
        >>> from rladapt.agents import DQN
        >>> env = AutoAdapt("Taxi-v4", DQN())
        >>> print(env.plan)
        1. observations checked against the declared space, rewards -> float (...)  [EnforceSpaces]
        2. episode return and length -> info['episode'] (raw score for logging, ...)  [EpisodeStatistics]
        3. info['action_mask'] (gymnasium Taxi convention) -> info['action_mask'] (bool) (agent uses action masks)  [ActionMask]
        4. Discrete(500) observation -> one-hot float32[500] (DQN needs float vectors)  [VectorObservation]

    :param env: an env instance, or a registered env id (made with ``env_kwargs``; Atari ids are
        made with ``frameskip=1`` so the standard pipeline can skip with max-pooling).
    :param agent: an agent (instance or class) with a ``spec``, or an :class:`~rladapt.spec.AgentSpec`.
    :param overrides: see :class:`AdaptOptions` (frame_stack, frame_skip, image_size, grayscale,
        action_bins, mask, clip_rewards, ...).
    :raises AdaptError: when no conversion joins a space to the agent, naming the space path, what
        the agent accepts, and a fix.
    """

    def __new__(cls, env: Any = None, agent: AgentNeeds | None = None, **overrides: Any) -> Any:
        # (no arguments: copy and pickle make the object before restoring its state)
        env_id, env_kwargs = None, None
        if isinstance(env, str) and env.split(".")[0] in PARALLEL_MODULES:
            env_kwargs = overrides.pop("env_kwargs", None) or {}
            env_id, env = env, _module_env(env, "parallel_env", env_kwargs, "PettingZoo parallel env", "multiagent")
        if is_parallel_env(env):  # every agent acts at once: one chain per agent (adapt_parallel)
            adapted = adapt_parallel(env, agent, **overrides)
            # what run directories record, so that eval and resume rebuild it
            adapted.env_id = env_id
            adapted.options = ParallelAdaptOptions.from_overrides({**overrides, "env_kwargs": env_kwargs or None})
            return adapted
        if isinstance(agent, dict):
            raise AdaptError("an agent per group ({group: agent}) applies to PettingZoo parallel envs; this env is "
                             f"{type(env).__name__}")
        return super().__new__(cls)

    def __init__(self, env: gym.Env | str, agent: AgentNeeds, **overrides: Any):
        options = AdaptOptions.from_overrides(overrides)
        spec = _agent_spec(agent)
        from_id = isinstance(env, str)
        if from_id:
            env = _make(env, spec, options)
        aec_step = None
        if is_aec_env(env):
            name = (getattr(env, "metadata", None) or {}).get("name") or type(env.unwrapped).__name__
            env = PettingZooTurns(env)
            aec_step = PlanStep("PettingZooTurns", f"PettingZoo AEC {name} ({env.num_players} players) -> gymnasium env with "
                                "info['current_player'] and per-player info['rewards']",
                                "turn-based game: one learner seat, opponents at the others", "pettingzoo_turns")
        if not isinstance(env, gym.Env):
            raise TypeError(f"AutoAdapt needs a gymnasium.Env or an env id, got {type(env).__name__}")
        elif options.env_kwargs and not from_id:
            raise AdaptError("env_kwargs applies only when the env is given as an id")
        for attribute in ("observation_space", "action_space"):
            declared = getattr(env, attribute, None)
            if not isinstance(declared, spaces.Space):
                raise AdaptError(
                    f"{type(env.unwrapped).__name__} has no {attribute} (found {declared!r}): a gymnasium env "
                    f"declares self.{attribute} = gymnasium.spaces.... in its __init__"
                )
        builder = _Builder(env, spec, options, _agent_name(agent))
        builder.family = env_family(env)
        if aec_step is not None:
            builder.steps.append(aec_step)
        atari = _is_atari(env) if options.atari is None else options.atari
        use_atari = atari and bool({"image", "vector"} & spec.observations) and is_image(env.observation_space)
        probe_info = None
        if options.mask in (None, True) and not isinstance(env.action_space, spaces.Box):
            try:
                _, probe_info = env.reset()  # info-based masks (Taxi) show only in infos
            except Exception as error:
                raise AdaptError(
                    f"{type(env.unwrapped).__name__}.reset() raised {type(error).__name__}: {error} (AutoAdapt resets "
                    f"the env once to look for an action mask in its info; pass mask=False to skip that)"
                ) from error

        builder.turns(probe_info)
        builder.enforce_spaces()
        if not builder.turn_based:  # a game's statistics are the learner's: outside its seat
            builder.episode_statistics()
        if use_atari:
            builder.atari_pipeline()
        else:
            builder.frame_skip(image=is_image(env.observation_space))
        builder.masks(probe_info)
        if not use_atari:
            builder.observations()
        elif "image" not in spec.observations:
            builder.flatten_images()
        builder.rewards(use_atari)
        builder.actions()
        builder.remember_positions()
        if builder.turn_based:
            builder.seats(agent)
            builder.episode_statistics()
        builder.env_state()
        super().__init__(builder.env)
        self.plan = Plan(builder.steps)
        self.options = options
        #: The base env's family (:func:`env_family`): agents' per-kind defaults may read it.
        self.family = builder.family
        # Forward the hot calls straight to the chain: this object adds no per-step work.
        self.step = self.env.step  # type: ignore[method-assign]
        self.reset = self.env.reset  # type: ignore[method-assign]

    def get_state(self) -> EnvState:
        """The state of the base env and of every wrapper of the chain (time limit, frame stack,
        episode statistics ...), saved by the env's own facility (:mod:`rladapt.wrappers.state`).

        :raises TypeError: the env cannot be restored (the message names the attribute and the fix).
        """
        return get_state(self.env)

    def set_state(self, state: EnvState) -> None:
        """Restore a state from :meth:`get_state`: stepping on from it gives the same observations,
        rewards and masks as the first time.

        :param state: what :meth:`get_state` returned.
        """
        set_state(self.env, state)

    @property
    def spec(self) -> gym.envs.registration.EnvSpec | None:
        """The spec of the adapted chain: ``gym.make(env.spec)`` rebuilds it, None if the base env is unregistered."""
        return self.env.spec


@dataclass(frozen=True)
class ParallelAdaptOptions(AdaptOptions):
    """:class:`AdaptOptions` of a PettingZoo parallel env (:func:`adapt_parallel`), with its own two.

    :param agent_ids: append each agent's one-hot index in its group to its observation.
    :param global_state: add the global state to each observation for a centralised critic.
    """

    agent_ids: bool = False
    global_state: bool = False


#: AutoAdapt options that only PettingZoo parallel envs take (:func:`adapt_parallel`).
PARALLEL_OPTIONS = ("agent_ids", "global_state")

#: Top-level modules whose env ids (``mpe2.simple_spread_v3``) name PettingZoo parallel envs, made
#: with the module's ``parallel_env(**env_kwargs)``.
PARALLEL_MODULES = ("mpe2",)


def _module_env(env_id: str, constructor: str, kwargs: dict[str, Any], what: str, extra: str) -> Any:
    """``module.<constructor>(**kwargs)`` of the module named by ``env_id``: PettingZoo AEC games
    (``pettingzoo.classic.connect_four_v3``, ``env()``) and parallel envs (``mpe2.simple_spread_v3``,
    ``parallel_env()``).

    :param what: what the constructor makes, for the error (``"PettingZoo AEC env"``).
    :param extra: the rladapt extra that installs such modules.
    """
    import importlib

    try:
        module = importlib.import_module(env_id)
    except ImportError as error:
        raise AdaptError(f"cannot make env {env_id!r}: {error} (these envs need the extra: pip install 'rladapt[{extra}]')") from None
    if not callable(getattr(module, constructor, None)):
        raise AdaptError(f"cannot make env {env_id!r}: the module has no {constructor}() constructor of a {what}")
    return getattr(module, constructor)(**kwargs)


def adapt_parallel(env: Any, agent: AgentNeeds | dict[str, AgentNeeds], *, agent_ids: bool = False,
                   global_state: bool = False, **overrides: Any) -> AdaptedParallelEnv:
    """A PettingZoo parallel env adapted agent by agent (``AutoAdapt(parallel_env, agent)`` calls
    this): each agent's observation and action go through AutoAdapt's rules for ``agent`` (spaces,
    masks, images, episode statistics), as one :class:`~rladapt.wrappers.parallel.AdaptedParallelEnv`.

    Example:
        >>> from mpe2 import simple_spread_v3
        >>> from rladapt.agents import PPO
        >>> env = AutoAdapt(simple_spread_v3.parallel_env(), PPO())
        >>> env.groups, env.observation_space("agent_0")
        ({'agent': ['agent_0', 'agent_1', 'agent_2']}, Box(-inf, inf, (18,), float32))

    :param env: a PettingZoo ``ParallelEnv`` (an AEC env through ``pettingzoo.utils.aec_to_parallel``).
    :param agent: the agent whose needs each agent's chain meets, or ``{group: agent}`` to adapt
        each group (:func:`~rladapt.wrappers.parallel.group_of`) for its own agent.
    :param agent_ids: append a one-hot of each agent's index in its group to its observation, so a
        policy shared by the group can tell its members apart.
    :param global_state: observations become ``{"observation": ..., "state": ...}`` with the env's
        ``state()`` (or all observations concatenated) for a centralised critic (MAPPO).
    :param overrides: :class:`AdaptOptions` for every agent's chain. ``frame_skip`` > 1 is refused
        (all agents step together; one agent's chain cannot repeat the joint step).
    :raises AdaptError: an override that cannot apply to a parallel env, or an agent's space that
        no conversion joins to ``agent`` (the message names the agent).
    """
    for name in ("opponent", "seat"):
        if overrides.get(name) is not None:
            raise AdaptError(f"{name}= applies to turn-based games; in a parallel env every agent acts at once "
                             f"(train one policy per group instead: rladapt.multiagent.learn_groups)")
    if (overrides.get("frame_skip") or 1) > 1:
        raise AdaptError(f"frame_skip={overrides['frame_skip']} cannot apply to a parallel env: every agent steps "
                         "together, so one agent's chain cannot repeat the joint step")
    if overrides.get("env_kwargs"):
        raise AdaptError("env_kwargs applies only when the env is given as an id")
    base = getattr(env, "unwrapped", env)
    family = env_family(env)
    family = "multi_agent" if family == "other" else family  # a parallel env rladapt does not list

    def adapt_agent(seat: gym.Env) -> gym.Env:
        own = agent
        if isinstance(agent, dict):  # one agent per group (rladapt.multiagent.learn_groups)
            group = group_of(seat.agent)
            if group not in agent:
                raise AdaptError(f"agent {seat.agent!r} is in group {group!r}, which has no agent in {sorted(agent)}")
            own = agent[group]
        try:
            return AutoAdapt(seat, own, frame_skip=1, **{k: v for k, v in overrides.items() if k != "frame_skip"})
        except AdaptError as error:
            raise AdaptError(f"agent {seat.agent!r}: {error}") from None

    try:
        adapted = AdaptedParallelEnv(env, adapt_agent, agent_ids=agent_ids, global_state=global_state, family=family)
    except ValueError as error:
        if isinstance(error, AdaptError):
            raise
        raise AdaptError(str(error)) from None
    name = adapted.metadata.get("name") or type(base).__name__
    groups = ", ".join(f"{group} x{len(members)}" for group, members in adapted.groups.items())
    steps = [PlanStep("AdaptedParallelEnv", f"PettingZoo parallel {name} ({len(adapted.possible_agents)} agents; "
                      f"groups {groups}) -> one chain per agent", "every agent acts at once", "parallel_agents")]
    if agent_ids:
        steps.append(PlanStep(None, "one-hot agent index within its group -> end of each observation",
                              "agent_ids=True: a shared policy tells its members apart", "agent_ids"))
    if global_state:
        source = "the env's state()" if adapted._env_state else "every agent's observation concatenated"
        steps.append(PlanStep(None, f"observation -> {{'observation': local, 'state': {source}}}",
                              "global_state=True: a centralised critic reads the state", "global_state"))
    for group, plan in adapted.plans.items():
        steps += [dataclasses.replace(step, change=f"{group}: {step.change}") for step in plan or ()]
    #: The plan: the parallel step, then each group's chain (its first agent's; every member's is the same).
    adapted.plan = Plan(steps)
    return adapted


def _make(env_id: str, spec: AgentSpec, options: AdaptOptions) -> Any:
    kwargs = dict(options.env_kwargs or {})
    if env_id.startswith("pettingzoo."):  # a PettingZoo game by module: pettingzoo.classic.tictactoe_v3
        return _module_env(env_id, "env", kwargs, "PettingZoo AEC env", "games")
    try:
        atari = _is_atari_id(env_id)
    except gym.error.Error as error:
        raise AdaptError(f"cannot make env {env_id!r}: {error}") from None
    if atari and options.atari is not False and {"image", "vector"} & spec.observations:
        kwargs.setdefault("frameskip", 1)  # the standard pipeline skips with max-pooling itself
        if options.grayscale is not False:
            # AtariPreprocessing reads the grayscale screen from the ALE itself: an RGB observation
            # would be copied every frame for nothing (a quarter of the step).
            kwargs.setdefault("obs_type", "grayscale")
    return gym.make(env_id, **kwargs)


