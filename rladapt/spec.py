"""What an agent declares it accepts. AutoAdapt reads only this (DESIGN.md principle 2)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:
    from rladapt.agents.base import Agent

#: Observation kinds an agent may accept.
OBSERVATION_KINDS = frozenset({"vector", "image", "index", "nested"})
#: Action kinds an agent may accept. ``unit_continuous`` is a Box in [-1, 1] (tanh-squashed policies);
#: ``composite`` a Dict or Tuple of Discrete, MultiDiscrete, MultiBinary and Box leaves.
ACTION_KINDS = frozenset({"discrete", "multi_discrete", "continuous", "unit_continuous", "composite"})


@dataclass(frozen=True)
class AgentSpec:
    """The needs of an agent class, declared once as ``Agent.spec``.

    :param observations: observation kinds accepted: ``"vector"`` (float32 flat vector),
        ``"image"`` (uint8 channel-first image, possibly frame-stacked), ``"index"`` (one discrete
        index, for tabular agents), ``"nested"`` (a Dict of images and one ``"vector"`` entry).
    :param actions: action kinds accepted: ``"discrete"``, ``"multi_discrete"`` (also MultiBinary),
        ``"continuous"`` (any finite Box; the agent clips), ``"unit_continuous"`` (Box in [-1, 1]),
        ``"composite"`` (a Dict/Tuple of those leaves, stored flat: :func:`rladapt.spaces.stored_action`).
    :param masks: the agent uses invalid-action masks (``info["action_mask"]``).
    :param frame_stack: frames stacked for Atari games (the standard pipeline uses 4).
    :param preprocess_images: resize large images to 84x84 (Atari: the full standard pipeline).
    :param needs_env_state: the agent saves and restores the env's state (search: MCTS,
        AlphaZero); AutoAdapt checks that the adapted env can do it (``env.get_state()`` /
        ``env.set_state(state)``) and raises ``AdaptError`` naming the cause when it cannot.
    :param plays_every_seat: in a turn-based game the agent moves for every player (self-play
        search: MCTS, AlphaZero), so AutoAdapt seats no opponents unless ``opponent=`` or ``seat=``
        asks for them.

    Example:
        >>> spec = AgentSpec(observations={"vector", "image"}, actions={"discrete"}, masks=True)
        >>> sorted(spec.observations)
        ['image', 'vector']
        >>> AgentSpec(actions={"joystick"})
        Traceback (most recent call last):
        ...
        ValueError: unknown kinds ['joystick'] in AgentSpec; observation kinds are [...], action kinds [...]
    """

    observations: frozenset[str] = frozenset({"vector"})
    actions: frozenset[str] = frozenset({"discrete"})
    masks: bool = False
    frame_stack: int = 4
    preprocess_images: bool = True
    needs_env_state: bool = False
    plays_every_seat: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "observations", frozenset(self.observations))
        object.__setattr__(self, "actions", frozenset(self.actions))
        unknown = (self.observations - OBSERVATION_KINDS) | (self.actions - ACTION_KINDS)
        if unknown:
            raise ValueError(
                f"unknown kinds {sorted(unknown)} in AgentSpec; observation kinds are "
                f"{sorted(OBSERVATION_KINDS)}, action kinds {sorted(ACTION_KINDS)}"
            )
        if not self.observations or not self.actions:
            raise ValueError("an AgentSpec must accept at least one observation and one action kind")
        if self.frame_stack < 1:
            raise ValueError(f"frame_stack must be >= 1, got {self.frame_stack}")


#: What AutoAdapt reads an agent's needs from: an agent, an agent class, or the AgentSpec itself.
AgentNeeds = Union["Agent", "type[Agent]", AgentSpec]


def bind_agent(agent, observation_space, action_space, family: str | None = None, env=None) -> None:
    """Bind ``agent`` to an adapted env: record the env's family, then call its ``setup``.

    The family (:func:`rladapt.adapt.env_family`) is set as ``agent.env_family`` before
    ``setup(observation_space, action_space)`` runs, so per-kind defaults can read it while user
    agents keep the two-argument ``setup`` of the public contract. An agent already bound keeps
    the family it was built for.

    :param agent: any agent (an :class:`rladapt.Agent` or an object with ``setup``).
    :param observation_space: the adapted env's single observation space.
    :param action_space: the adapted env's single action space.
    :param family: the env's family; None: ``"other"``.
    :param env: the adapted env, for agents that read more of it than its spaces: an agent with
        a ``bind_env(env)`` method gets it after ``setup`` (the search agents find their game).
    """
    if getattr(agent, "observation_space", None) is None:
        agent.env_family = family or "other"
    agent.setup(observation_space, action_space)
    if env is not None and callable(getattr(agent, "bind_env", None)):
        agent.bind_env(env)
