"""Turn-based multi-player envs as the single-agent env an agent trains on.

Envs say whose turn it is in several ways; the first wrappers here normalise them into one
protocol, the *turn protocol*, and :class:`OpponentSeats` then gives the learner one seat:

- ``info["current_player"]``: the seat (0-based) to move next, after ``reset`` and every ``step``;
- ``info["rewards"]``: float64 ``[num_players]``, every seat's reward from this step (optional: without
  it the scalar reward is the mover's, and the other seat of a two-player game gets its negative);
- the scalar reward: the reward of the seat that just moved.

:class:`PettingZooTurns` turns a PettingZoo AEC env (``tictactoe_v3``, ``connect_four_v3``,
``go_v5``, ``chess_v6`` ...) into a gymnasium env speaking that protocol (gymnasium has no such
converter, and PettingZoo's own ``aec_to_parallel`` is for simultaneous moves); :class:`NextPlayerTurns`
does it for SRL-style envs (a ``next_player`` attribute and a list of per-player rewards). Envs that
already put ``info["current_player"]`` or ``info["to_play"]`` in their infos need neither.

Opponents are duck-typed objects with ``name``, ``reset(rng)`` and ``act(obs, mask, seats)`` (see
:mod:`rladapt.opponents`); this module imports none of them.
"""

from __future__ import annotations

import hashlib

from collections import OrderedDict
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rladapt.errors import AdaptError
from rladapt.wrappers.state import EnvState, get_state
from rladapt.protocols import ActingAgent

__all__ = [
    "NextPlayerTurns", "OpponentSeats", "aec_in", "PettingZooTurns", "RememberPositions", "TURN_KEYS", "has_attribute", "is_aec_env",
    "outcome_of", "recall_env", "recall_position",
]

#: The info keys that say whose turn it is, in the order they are looked for.
TURN_KEYS = ("current_player", "to_play")


def is_aec_env(env: Any) -> bool:
    """Whether ``env`` is a PettingZoo AEC env (or a PettingZoo wrapper of one), by its protocol:
    ``possible_agents``, ``observe``, ``last`` and ``agent_iter``."""
    return all(hasattr(env, name) for name in ("possible_agents", "observe", "last", "agent_iter")) and not isinstance(env, gym.Env)


def outcome_of(returns: np.ndarray, seat: int) -> str:
    """``"win"``, ``"loss"`` or ``"draw"`` for ``seat`` given every seat's total reward: a win
    when its return is above every other seat's, a loss when another's is above it."""
    others = np.delete(np.asarray(returns, dtype=np.float64), seat)
    best = float(others.max()) if others.size else 0.0
    mine = float(returns[seat])
    return "win" if mine > best else "loss" if mine < best else "draw"


class PettingZooTurns(gym.Env):
    """A PettingZoo AEC env as a gymnasium env in the turn protocol (module docstring).

    ``step(action)`` plays ``action`` for the agent to move and returns the observation of the
    next agent to move (PettingZoo's classic games observe the board from the mover's side, with
    ``observation["action_mask"]`` its legal moves). Agents that are done but still selected get
    their ``None`` step here. Once every agent is done the game is over: ``terminated`` (or
    ``truncated`` when an agent was truncated), and the observation is that of seat
    :attr:`final_observer` (:class:`OpponentSeats` sets it to the learner's seat).

    Example:
        >>> from pettingzoo.classic import tictactoe_v3
        >>> env = PettingZooTurns(tictactoe_v3.env())
        >>> env.observation_space["observation"].shape, env.action_space
        ((3, 3, 2), Discrete(9))
        >>> obs, info = env.reset(seed=0); info["current_player"]
        0

    :param env: a PettingZoo AEC env whose agents share one observation and one action space.
    """

    metadata = {"render_modes": []}

    def __init__(self, env: Any) -> None:
        if not is_aec_env(env):
            raise AdaptError(f"PettingZooTurns needs a PettingZoo AEC env, got {type(env).__name__}")
        self.aec = env
        self.players: list[str] = list(env.possible_agents)
        first = self.players[0]
        obs_space, act_space = env.observation_space(first), env.action_space(first)
        for agent in self.players[1:]:
            if env.observation_space(agent) != obs_space or env.action_space(agent) != act_space:
                raise AdaptError(
                    f"{type(env.unwrapped).__name__}: agents {first!r} and {agent!r} have different spaces "
                    f"({obs_space}, {act_space} against {env.observation_space(agent)}, {env.action_space(agent)}); "
                    f"one learner seat needs every seat to see and act alike"
                )
        self.observation_space, self.action_space = obs_space, act_space
        self.num_players = len(self.players)
        self.render_mode = getattr(env, "render_mode", None)
        self.metadata = {**dict(getattr(env, "metadata", {}) or {}), "num_players": self.num_players}
        # The game's id (pettingzoo.classic.tictactoe_v3): what runs are named by and what
        # ``AutoAdapt("pettingzoo.classic.tictactoe_v3", agent)`` and the command line make again.
        module, name = type(env.unwrapped).__module__.split("."), self.metadata.get("name")
        #: ``pettingzoo.<family>.<game>`` for PettingZoo's own games, else None.
        self.env_id = ".".join(module[:2] + [name]) if name and module[0] == "pettingzoo" and len(module) > 2 else None
        #: Whose observation ``step`` returns once the game is over.
        self.final_observer = 0
        names = getattr(env.unwrapped, "action_names", None)  # the game's move names, where it has some
        if names is not None:
            self.action_names = tuple(str(name) for name in names)
        self._rewards = np.zeros(self.num_players, dtype=np.float64)

    def _seat(self, agent: str) -> int:
        return self.players.index(agent)

    def _info(self) -> dict[str, Any]:
        agent = self.aec.agent_selection
        info = dict(self.aec.infos.get(agent, {}))
        info["current_player"] = self._seat(agent)
        info["num_players"] = self.num_players
        info["rewards"] = self._rewards.copy()
        return info

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        self.aec.reset(seed=seed, options=options)
        self._rewards[:] = 0.0
        return self.aec.observe(self.aec.agent_selection), self._info()

    def _done(self, agent: str) -> bool:
        return bool(self.aec.terminations.get(agent, True) or self.aec.truncations.get(agent, True))

    def _add_rewards(self) -> None:
        for agent, reward in self.aec.rewards.items():
            self._rewards[self._seat(agent)] += float(reward)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        mover = self.aec.agent_selection
        if self._done(mover):
            raise RuntimeError(f"{type(self.aec.unwrapped).__name__}: step() after the game ended; call reset() first")
        self._rewards[:] = 0.0
        self.aec.step(action)
        self._add_rewards()
        # Agents done but still selected take their None step (PettingZoo's dead steps).
        while self.aec.agents and self._done(self.aec.agent_selection) and not all(self._done(a) for a in self.aec.agents):
            self.aec.step(None)
            self._add_rewards()
        over = not self.aec.agents or all(self._done(a) for a in self.aec.agents)
        reward = float(self._rewards[self._seat(mover)])
        if not over:
            return self.aec.observe(self.aec.agent_selection), reward, False, False, self._info()
        truncated = any(self.aec.truncations.get(a, False) for a in self.players)
        terminated = not truncated
        info = self._info()
        info["current_player"] = self.final_observer
        return self.aec.observe(self.players[self.final_observer]), reward, terminated, truncated, info

    def render(self) -> Any:
        return self.aec.render()

    def close(self) -> None:
        self.aec.close()


class NextPlayerTurns(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """An SRL-style turn-based env in the turn protocol: ``env.next_player`` (or
    ``next_player_index``) says who moves next and ``step`` returns one reward per player (a list
    or array); this puts the seat in ``info["current_player"]``, the rewards in ``info["rewards"]``
    and the mover's reward as the scalar one (gymnasium rewards are floats).

    Example:
        >>> env = NextPlayerTurns(MySrlGame())        # doctest: +SKIP
        >>> obs, info = env.reset(seed=0); info["current_player"]  # doctest: +SKIP
        0

    :param env: the env.
    :param num_players: how many players (None: ``env.num_players``, else the length of the first rewards).
    """

    def __init__(self, env: gym.Env, num_players: int | None = None) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, num_players=num_players)
        gym.Wrapper.__init__(self, env)
        self._attribute = next((name for name in ("next_player", "next_player_index") if has_attribute(env, name)), None)
        if self._attribute is None:
            raise AdaptError(f"{type(env.unwrapped).__name__} has no next_player (or next_player_index) attribute")
        self.num_players = num_players or getattr(env.unwrapped, "num_players", None) or 2
        self.metadata = {**env.metadata, "num_players": self.num_players}

    def _next(self) -> int:
        return int(self.env.get_wrapper_attr(self._attribute))

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        info = dict(info, current_player=self._next(), rewards=np.zeros(self.num_players), num_players=self.num_players)
        return obs, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        mover = self._next()
        obs, rewards, terminated, truncated, info = self.env.step(action)
        per_player = np.asarray(rewards, dtype=np.float64).reshape(-1)
        if per_player.shape != (self.num_players,):
            raise ValueError(f"{type(self.env.unwrapped).__name__}.step returned {per_player.size} rewards; "
                             f"NextPlayerTurns expects one per player ({self.num_players})")
        info = dict(info, current_player=self._next(), rewards=per_player, num_players=self.num_players)
        return obs, float(per_player[mover]), terminated, truncated, info


def has_attribute(env: gym.Env, name: str) -> bool:
    """Whether ``env`` or a wrapper inside it has the attribute ``name`` (``get_wrapper_attr``)."""
    try:
        env.get_wrapper_attr(name)
        return True
    except AttributeError:
        return False


class OpponentSeats(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """The learner holds one seat of a turn-based env; opponents play the others.

    ``reset`` lets the opponents move until it is the learner's turn; ``step(action)`` plays the
    learner's move, then the opponents' moves, and returns the next observation the learner
    moves from, with the learner's own reward summed over those plies (from ``info["rewards"]``
    when the env gives per-player rewards, else the scalar reward, zero-sum for the other seat).
    With ``seat=None`` the learner's seat changes every episode (seat ``k % num_players`` in the
    k-th episode after a seeded reset), so it learns to play first and second.

    It sits outside the observation, mask and action conversions, so an opponent sees what the
    learner would see from its seat (``info["action_mask"]`` its legal moves) and answers in the
    adapted action space. At the end of a game ``info["outcome"]`` is ``"win"``, ``"draw"`` or
    ``"loss"`` for the learner and ``info["returns"]`` every seat's total reward; every info
    carries ``info["seat"]``.

    Example:
        >>> from pettingzoo.classic import tictactoe_v3
        >>> from rladapt.opponents import RandomOpponent
        >>> from rladapt.wrappers import ActionMask
        >>> env = OpponentSeats(ActionMask(PettingZooTurns(tictactoe_v3.env()), "observation"), [RandomOpponent()])
        >>> obs, info = env.reset(seed=0); info["seat"]
        0

    :param env: an env in the turn protocol (:data:`TURN_KEYS` in its infos).
    :param opponents: one opponent per other seat (in seat order), or one for all of them.
    :param seat: the learner's seat; None: alternate between episodes.
    :param num_players: how many seats (None: ``info["num_players"]``, else 2).
    :param family: the env's family, for an opponent that binds an unbound learner to this env.
    """

    def __init__(self, env: gym.Env, opponents: Sequence[Any], seat: int | None = None, num_players: int | None = None,
                 family: str = "other") -> None:
        gym.utils.RecordConstructorArgs.__init__(self, opponents=opponents, seat=seat, num_players=num_players, family=family)
        gym.Wrapper.__init__(self, env)
        self.num_players = int(num_players or env.metadata.get("num_players") or 2)
        self.opponents: list[Any] = []
        self.fixed_seat: int | None = None
        self.seat_players(opponents, seat)
        self.family = family
        self.seat = self.fixed_seat or 0
        self._episode = 0
        self._rng = np.random.default_rng()
        self._returns = np.zeros(self.num_players, dtype=np.float64)
        self._to_move = 0
        self._can_set_observer = has_attribute(env, "final_observer")

    def seat_players(self, opponents: Sequence[Any], seat: int | None) -> tuple[list[Any], int | None]:
        """Seat new players from the next reset on (``agent.play`` seats a person this way);
        returns the previous ``(opponents, seat)``, to put them back.

        :param opponents: one opponent per other seat (in seat order), or one for all of them.
        :param seat: the learner's seat; None: alternate between episodes.
        """
        if seat is not None and not (isinstance(seat, (int, np.integer)) and 0 <= seat < self.num_players):
            raise AdaptError(f"seat must be None (alternate) or a seat in [0, {self.num_players}), got {seat!r}")
        opponents = list(opponents)
        if len(opponents) == 1:
            opponents = opponents * (self.num_players - 1)
        if len(opponents) != self.num_players - 1:
            raise AdaptError(f"{self.num_players} seats need {self.num_players - 1} opponents (or one for all), got {len(opponents)}")
        previous = (self.opponents, self.fixed_seat)
        self.opponents, self.fixed_seat = opponents, None if seat is None else int(seat)
        return previous

    @property
    def needs_learner(self) -> bool:
        """Whether an opponent acts with the learner's policy (``"self"``, a snapshot pool)."""
        return any(getattr(o, "needs_learner", False) for o in self.opponents)

    def bind_learner(self, agent: ActingAgent) -> None:
        """Give the opponents that play the learner's policy the agent acting in this process
        (the learner itself, or a worker's copy that receives its weights)."""
        for opponent in self.opponents:
            bind = getattr(opponent, "bind_learner", None)
            if bind is not None:
                bind(agent)

    @property
    def to_move(self) -> int:
        """The seat to move now (-1 once the game is over)."""
        return self._to_move

    def opponent_at(self, seat: int) -> Any:
        """The opponent playing ``seat`` this episode."""
        others = [s for s in range(self.num_players) if s != self.seat]
        return self.opponents[others.index(seat)]

    def _turn(self, info: dict[str, Any]) -> int:
        for key in TURN_KEYS:
            if key in info:
                return int(info[key])
        raise AdaptError(f"the env's info has none of {list(TURN_KEYS)}: OpponentSeats cannot tell whose turn it is")

    def _account(self, reward: float, info: dict[str, Any], mover: int) -> float:
        """Add one ply's rewards to every seat's return; the learner's part of it."""
        if "rewards" in info:
            per_player = np.asarray(info["rewards"], dtype=np.float64)
        else:  # the scalar reward is the mover's; two-player zero-sum for the other seat
            per_player = np.zeros(self.num_players)
            per_player[mover] = reward
            if self.num_players == 2:
                per_player[1 - mover] = -reward
        self._returns += per_player
        return float(per_player[self.seat])

    def _play_opponents(self, obs: Any, info: dict[str, Any]) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        reward, terminated, truncated = 0.0, False, False
        while self._to_move != self.seat:
            mover = self._to_move
            action = self.opponent_at(mover).act(obs, info.get("action_mask"), self)
            obs, r, terminated, truncated, info = self.env.step(action)
            reward += self._account(float(r), info, mover)
            self._to_move = self._turn(info)
            if terminated or truncated:
                break
        return obs, reward, terminated, truncated, info

    def _finish(self, info: dict[str, Any], done: bool) -> dict[str, Any]:
        info = dict(info)
        info["seat"] = self.seat
        if done:
            info["outcome"] = outcome_of(self._returns, self.seat)
            info["returns"] = self._returns.copy()
        return info

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
            self._episode = 0
        self.seat = self.fixed_seat if self.fixed_seat is not None else self._episode % self.num_players
        self._episode += 1
        if self._can_set_observer:
            self.env.set_wrapper_attr("final_observer", self.seat)
        for opponent in self.opponents:
            opponent.reset(self._rng)
        obs, info = self.env.reset(seed=seed, options=options)
        self._returns[:] = 0.0
        self._to_move = self._turn(info)
        obs, _, terminated, truncated, info = self._play_opponents(obs, info)
        if terminated or truncated:
            raise RuntimeError(f"the game ended before the learner (seat {self.seat}) had a move")
        return obs, self._finish(info, False)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        if self._to_move != self.seat:
            raise RuntimeError("OpponentSeats.step() after the game ended; call reset() first")
        obs, r, terminated, truncated, info = self.env.step(action)
        reward = self._account(float(r), info, self.seat)
        self._to_move = self._turn(info)
        if not (terminated or truncated):
            obs, more, terminated, truncated, info = self._play_opponents(obs, info)
            reward += more
        if terminated or truncated:
            self._to_move = -1  # nothing more to play until reset
        return obs, reward, terminated, truncated, self._finish(info, terminated or truncated)


#: The most recent positions behind the observations :class:`RememberPositions` returned, by
#: observation (its float32 bytes): ``(the env the state is of, the state)``. What a search agent
#: reads to start from the position an observation shows when the observation alone cannot say it
#: (go's history planes, chess, OpenSpiel; any single-player env).
_POSITIONS: "OrderedDict[bytes, tuple[Any, EnvState]]" = OrderedDict()
#: How many positions are remembered (an agent acts on the latest observations only).
POSITIONS_KEPT = 4096


def _observation_key(observation: Any) -> bytes:
    array = np.ascontiguousarray(np.asarray(observation, dtype=np.float32))
    # A digest: keys of image observations (an Atari stack is 113 kB as float32) stay small.
    return hashlib.blake2b(str(array.shape).encode() + array.tobytes(), digest_size=16).digest()


def recall_position(observation: Any) -> EnvState | None:
    """The state of the PettingZoo AEC game (its wrappers included), or of a single-player chain,
    at the moment a :class:`RememberPositions` wrapper of this process returned ``observation``,
    or None.

    :param observation: an observation as the agent received it (any array-like; compared as float32).
    """
    remembered = _POSITIONS.get(_observation_key(observation))
    return None if remembered is None else remembered[1]


def recall_env(observation: Any) -> tuple[Any, EnvState] | None:
    """``(env, state)``: the env whose state :func:`recall_position` gives for ``observation``
    (the AEC game, or the live chain of a single-player env below its :class:`RememberPositions`)
    and that state; None when no wrapper of this process returned ``observation``.

    :param observation: an observation as the agent received it.
    """
    return _POSITIONS.get(_observation_key(observation))


def aec_in(env: gym.Env) -> Any:
    """The PettingZoo AEC game inside a gymnasium chain (its :class:`PettingZooTurns`), or None."""
    layer: Any = env
    while layer is not None:
        if isinstance(layer, PettingZooTurns):
            return layer.aec
        layer = getattr(layer, "env", None)
    return None


class RememberPositions(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Remembers the position behind every observation it returns, for search agents.

    A search agent starts its search from the position an observation shows. Where a game's
    observation does not say the position (go's and chess's planes hold history; OpenSpiel's
    tensors are the game's own; a single-player env's observation is not its state), the agent
    asks :func:`recall_position` / :func:`recall_env` instead. With each observation it returns,
    this wrapper saves (``get_state``, every wrapper included):

    - in a turn-based chain, the state of the AEC game inside; it sits after the conversions and
      inside :class:`OpponentSeats`, so that opponents' observations count too;
    - in a single-player chain, the state of the chain below it (it is then outermost), with the
      chain itself: the search steps that live chain and restores it before the agent's move is
      played, so the env goes on exactly as if no search had run.

    Costs one state copy per step (0.2 ms for go 5x5); AutoAdapt inserts it only for agents that
    search from saved states. Two envs of one process returning the same observation share its
    entry (the newest wins): search agents act in one env at a time (``num_envs=1``).

    :param env: a chain holding a :class:`PettingZooTurns`, or any restorable single-player chain.
    """

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        aec = aec_in(env)
        self._target = aec if aec is not None else env
        # A single-player env is searched only from its latest observation: its older entries are
        # dropped (a game's are kept: opponents and replays act on earlier positions too).
        self._latest_only = aec is None
        self._last_key: bytes | None = None

    def _remember(self, observation: Any) -> None:
        key = _observation_key(observation)
        if self._latest_only and self._last_key is not None and self._last_key != key:
            _POSITIONS.pop(self._last_key, None)
        self._last_key = key
        _POSITIONS[key] = (self._target, get_state(self._target))
        _POSITIONS.move_to_end(key)
        while len(_POSITIONS) > POSITIONS_KEPT:
            _POSITIONS.popitem(last=False)

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self._remember(obs)
        return obs, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._remember(obs)
        return obs, reward, terminated, truncated, info
