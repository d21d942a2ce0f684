"""Who plays the other seats of a turn-based game: ``"random"``, ``"human"``, a fixed agent,
``"self"`` (the learner's current policy) or a :class:`SnapshotPool` of past ones (a saved agent:
:class:`~rladapt.checkpoint.CheckpointOpponent`, so that this module reads no files).

``AutoAdapt(env, agent, opponent=..., seat=...)`` takes any of these, or a checkpoint path
(:func:`rladapt.adapt.resolve_opponent`);
:class:`~rladapt.wrappers.OpponentSeats` calls ``reset(rng)`` at each episode and ``act(obs, mask,
seats)`` at each opponent move, with the observation and mask of the adapted env from the
opponent's seat. An opponent that plays the learner's policy gets the agent acting in its process
through ``bind_learner`` (every collector binds it: the learner in-process, a worker's copy,
whose weights the learner publishes, in worker processes), so self-play works with ``workers=N``.

Example:
    >>> from pettingzoo.classic import tictactoe_v3
    >>> from rladapt import AutoAdapt
    >>> from rladapt.agents import DQN
    >>> agent = DQN(seed=0)
    >>> env = AutoAdapt(tictactoe_v3.env(), agent, opponent=SnapshotPool(every=5_000, latest=0.5))
    >>> agent.learn(env, 40_000)                                                # doctest: +SKIP
    >>> agent.evaluate(env, episodes=200, opponent="random", seed=123).rates()  # doctest: +SKIP
    {'win': 0.925, 'draw': 0.065, 'loss': 0.01}
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, TextIO

import gymnasium as gym
import numpy as np
import torch

from rladapt.errors import AdaptError
from rladapt.spec import bind_agent
from rladapt.protocols import ActingAgent

__all__ = [
    "AgentOpponent", "HumanOpponent", "Opponent", "RandomOpponent", "SelfPlay", "SnapshotPool",
    "OPPONENT_NAMES", "bind_learner", "human_table", "opponent_seats", "shown_move",
]

OPPONENT_NAMES = ("random", "human", "self", "pool")


class Opponent:
    """Base of the opponents: ``name`` (what evaluations and the plan call it), ``reset(rng)`` at
    each episode, ``act(obs, mask, seats)`` for each move. Subclass it for your own (a scripted
    player, a search)."""

    name = "opponent"
    #: Whether it plays the learner's policy (needs :meth:`bind_learner`).
    needs_learner = False

    def reset(self, rng: np.random.Generator) -> None:
        """A new episode begins; ``rng`` is the seats wrapper's generator (seeded by ``reset(seed=...)``)."""
        self.rng = rng
        self.carried_state = None  # a recurrent agent's state starts again with the episode

    def agent_move(self, agent: ActingAgent, obs: Any, mask: np.ndarray | None, deterministic: bool,
                   shown: tuple[gym.Env, TextIO] | None = None) -> Any:
        """``agent``'s move: masks passed when it uses them, a recurrent agent's state threaded through
        the episode (it starts again at :meth:`reset`).

        :param shown: ``(env, output)`` to print the agent's view of every move it chose from
            (:func:`shown_move`), or None.
        """
        state = getattr(self, "carried_state", None)
        if shown is not None:
            action, self.carried_state = shown_move(agent, obs, mask, deterministic, state, *shown)
            return action
        mask = mask if agent.spec.masks else None
        if not agent.state_specs():
            return agent.act(obs, mask, deterministic)
        action, self.carried_state = agent.act(obs, mask, deterministic, state=state)
        return action

    def act(self, obs: Any, mask: np.ndarray | None, seats: gym.Env) -> Any:
        """The move for ``obs`` (the adapted env's observation from this opponent's seat).

        :param obs: the observation.
        :param mask: ``info["action_mask"]`` (legal moves), or None when the env has no masks.
        :param seats: the :class:`~rladapt.wrappers.OpponentSeats` wrapper (spaces, family).
        """
        raise NotImplementedError

    def bind_learner(self, agent: ActingAgent) -> None:
        """The agent acting in this process (only opponents with ``needs_learner`` use it)."""

    def __repr__(self) -> str:
        return self.name


def shown_move(agent: ActingAgent, obs: Any, mask: np.ndarray | None, deterministic: bool, state: Any, env: gym.Env,
               output: TextIO) -> tuple[Any, Any]:
    """``(action, state)``: ``agent``'s move for ``obs``, with its view of every move printed to
    ``output`` (one line per move, the one it plays marked ``->``). The view is the one the move
    was chosen from (``agent.act_and_values``: a search agent's one search), not a second look.

    :param agent: the agent (bound to ``env``'s spaces).
    :param obs: an observation of the adapted env.
    :param mask: ``info["action_mask"]`` (shown as ``masked``; passed on when the agent uses masks), or None.
    :param deterministic: the most likely move instead of a sample.
    :param state: a recurrent agent's state from its previous move of the episode (None: the first), else None.
    :param env: the adapted env (its action space and move names).
    :param output: where the view goes.
    """
    from rladapt.logging.terminal import action_names, format_action_values

    action, view, state = agent.act_and_values(obs, mask if agent.spec.masks else None, deterministic, state=state)
    space = env.action_space
    if isinstance(space, gym.spaces.Discrete):
        names, chosen = action_names(env, int(space.n)), int(action) - int(space.start)
        if view is not None:
            print(format_action_values(view[0], view[1], chosen, names, mask), file=output)
        else:
            print(f"  -> action {names[chosen]}", file=output)
    else:
        print(f"  -> action {np.asarray(action).round(3)}", file=output)
    return action, state


def _legal(mask: np.ndarray | None, space: gym.Space) -> np.ndarray | None:
    if mask is None or not isinstance(space, gym.spaces.Discrete):
        return None
    return np.flatnonzero(mask) + int(space.start)


class RandomOpponent(Opponent):
    """A uniformly random legal move (any action when the env has no masks)."""

    name = "random"

    def __init__(self) -> None:
        self.rng = np.random.default_rng()

    def act(self, obs: Any, mask: np.ndarray | None, seats: gym.Env) -> Any:
        legal = _legal(mask, seats.action_space)
        if legal is not None:
            return int(self.rng.choice(legal))
        if isinstance(seats.action_space, gym.spaces.Discrete):
            return int(seats.action_space.start + self.rng.integers(seats.action_space.n))
        seats.action_space.seed(int(self.rng.integers(2**31)))
        return seats.action_space.sample()


class AgentOpponent(Opponent):
    """A fixed agent at the other seats (for the agent saved at a checkpoint path, loaded in each
    process on first use: :class:`~rladapt.checkpoint.CheckpointOpponent`).

    :param agent: an agent built for the same adapted env (trained, loaded or fresh).
    :param deterministic: play its most likely move (False: sample).
    :param name: what evaluations call it (default: the agent class).
    :param output: where to print the board and its view of every move it plays (a person
        watching, as in ``agent.play(env, human_seat=...)`` of a game of more than two seats);
        None: it plays silently.
    """

    def __init__(self, agent: ActingAgent, deterministic: bool = True, name: str | None = None,
                 output: TextIO | None = None) -> None:
        if isinstance(agent, (str, Path)):
            raise TypeError(f"AgentOpponent takes an agent; for the checkpoint {str(agent)!r} use "
                            f"rladapt.checkpoint.CheckpointOpponent(path) or pass opponent=path")
        if not callable(getattr(agent, "act", None)):
            raise TypeError(f"an agent opponent needs an agent with act(obs, mask, deterministic), got {agent!r}")
        self.set_player(agent, deterministic, name or type(agent).__name__, output)

    def set_player(self, agent: ActingAgent | None, deterministic: bool, name: str, output: TextIO | None) -> None:
        """Set what every agent opponent holds (a subclass that finds its agent later passes None)."""
        self.agent = agent
        self.deterministic = deterministic
        self.name = name
        self.output = output
        self.rng = np.random.default_rng()

    def acting_agent(self, seats: gym.Env) -> ActingAgent:
        """The agent that moves, bound to the adapted env's spaces on first use."""
        if getattr(self.agent, "observation_space", None) is None:
            # Collectors step envs under inference mode: weights made there could never be loaded into again.
            with torch.inference_mode(False):
                bind_agent(self.agent, seats.observation_space, seats.action_space, seats.family)
        return self.agent

    def act(self, obs: Any, mask: np.ndarray | None, seats: gym.Env) -> Any:
        agent = self.acting_agent(seats)
        if self.output is None:
            return self.agent_move(agent, obs, mask, self.deterministic)
        from rladapt.logging.terminal import board_text

        print(board_text(seats, obs), file=self.output)
        print(f"{self.name} moves (seat {seats.to_move}):", file=self.output)
        return self.agent_move(agent, obs, mask, self.deterministic, shown=(seats, self.output))

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["output"] = None  # a terminal stays with its process
        return state


class HumanOpponent(Opponent):
    """A person at the terminal: the board, the legal moves by number and name, the agent's view
    of each move (``advisor.action_values``), then a move read from ``input``; a move that is not
    a number or name of a legal move is refused with the reason and asked again.

    :param input: where moves are read (default: standard input).
    :param output: where the board and prompts go (default: standard output).
    :param advisor: an agent whose ``action_values(obs, mask)`` is shown for each move (the
        agent being played against, in ``agent.play(env, human_seat=...)``), or None.
    """

    name = "human"

    def __init__(self, input: TextIO | None = None, output: TextIO | None = None, advisor: Any = None) -> None:
        self.input, self.output, self.advisor = input, output, advisor

    def bind_learner(self, agent: ActingAgent) -> None:
        if self.advisor is None:  # the agent being played against shows its view of your moves
            self.advisor = agent

    def act(self, obs: Any, mask: np.ndarray | None, seats: gym.Env) -> Any:
        from rladapt.logging.terminal import action_names, board_text, format_action_values

        out = self.output or sys.stdout
        space = seats.action_space
        if not isinstance(space, gym.spaces.Discrete):
            raise AdaptError(f"a human plays Discrete actions by number; this env's actions are {space}")
        n, start = int(space.n), int(space.start)
        names = action_names(seats, n)
        legal = list(range(n)) if mask is None else [i for i in range(n) if mask[i]]
        print(f"your move (seat {seats.to_move}):", file=out)
        print(board_text(seats, obs), file=out)
        print("legal moves: " + ", ".join(f"{i + start}={names[i]}" if names[i] != str(i) else str(i + start) for i in legal), file=out)
        if self.advisor is not None and getattr(self.advisor, "observation_space", None) is not None:
            view = self.advisor.action_values(obs, mask if self.advisor.spec.masks else None)
            if view is not None:
                values, kind = view
                best = int(np.argmax(np.where(np.asarray(mask, dtype=bool), values, -np.inf))) if mask is not None else int(np.argmax(values))
                print(f"{type(self.advisor).__name__}'s view of your moves (-> its pick):", file=out)
                print(format_action_values(values, kind, best, names, mask), file=out)
        stream = self.input or sys.stdin
        while True:
            print("> ", end="", file=out)
            out.flush()
            line = stream.readline()
            if not line:
                raise RuntimeError("no more input: the human player left the game (end of input)")
            text = line.strip()
            choice = _parse_move(text, names, start)
            if choice is None:
                print(f"'{text}' is not a move: type a move's number ({start}..{start + n - 1}) or its name", file=out)
            elif choice - start not in legal:
                print(f"move {choice} ({names[choice - start]}) is not legal here; legal moves: "
                      + ", ".join(str(i + start) for i in legal), file=out)
            else:
                return choice

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "input": None, "output": None}  # a terminal stays with its process


def human_table(agent: ActingAgent, human_seat: int, num_players: int, input: TextIO | None = None,
                output: TextIO | None = None, deterministic: bool = True) -> tuple[int, list[Opponent]]:
    """Who sits where when a person plays ``agent``: the person at ``human_seat``, the agent at
    every other seat. ``(seat, opponents)`` for :class:`~rladapt.wrappers.OpponentSeats`: the
    agent's own seat (the lowest that is not the person's) and the players of the others in seat
    order (a :class:`HumanOpponent`, and the agent again, showing its view of each move it plays,
    at the seats beyond two).

    :param agent: the agent played against.
    :param human_seat: the person's seat (0 moves first).
    :param num_players: the game's seats.
    :param input: where the person's moves are read (default: standard input).
    :param output: where the boards, the agent's views and the prompts go (default: standard output).
    :param deterministic: the agent plays its most likely moves.
    :raises ValueError: for a seat the game does not have.
    """
    if isinstance(human_seat, bool) or not isinstance(human_seat, (int, np.integer)) or not 0 <= human_seat < num_players:
        raise ValueError(f"human_seat must be a seat of this {num_players}-player game (0 to {num_players - 1}), got {human_seat!r}")
    seat = 1 if human_seat == 0 else 0
    shown = output if output is not None else sys.stdout
    opponents = [HumanOpponent(input, output, advisor=agent) if s == human_seat else AgentOpponent(agent, deterministic, output=shown)
                 for s in range(num_players) if s != seat]
    return seat, opponents


def _parse_move(text: str, names: list[str], start: int) -> int | None:
    try:
        value = int(text)
    except ValueError:
        lowered = [name.lower() for name in names]
        return lowered.index(text.lower()) + start if text.lower() in lowered else None
    return value if start <= value < start + len(names) else None


def _copy_agent(agent: ActingAgent) -> Any:
    """A CPU agent of the same class and settings, bound to the same spaces, to act with snapshots."""
    import dataclasses

    settings = {f.name: getattr(agent.config, f.name) for f in dataclasses.fields(agent.config)}
    settings.update(device="cpu", num_threads=1)
    copy = type(agent)(**settings)
    bind_agent(copy, agent.observation_space, agent.action_space, agent.env_family)
    copy.use_masks = agent.use_masks
    copy.eval()
    return copy


class SelfPlay(Opponent):
    """The learner's current policy (``opponent="self"``): in worker processes the worker's copy
    of the agent, which gets the learner's weights at every publish.

    :param deterministic: play its most likely move (default False: sample, as the learner explores).
    """

    name = "self"
    needs_learner = True

    def __init__(self, deterministic: bool = False) -> None:
        self.deterministic = deterministic
        self.learner: Any = None

    def bind_learner(self, agent: ActingAgent) -> None:
        self.learner = agent

    def _learner(self, seats: gym.Env) -> Any:
        if self.learner is None:
            raise RuntimeError(
                f"opponent {self.name!r} plays the learner's policy, but no agent acts in this process: build the env with "
                "AutoAdapt(env, agent_instance, ...) or train with agent.learn (vectorization='async' runs envs in "
                "subprocesses without the agent: use workers=N instead)"
            )
        if getattr(self.learner, "observation_space", None) is None:
            with torch.inference_mode(False):  # the learner's weights must stay trainable
                bind_agent(self.learner, seats.observation_space, seats.action_space, seats.family)
        return self.learner

    def act(self, obs: Any, mask: np.ndarray | None, seats: gym.Env) -> Any:
        return self.agent_move(self._learner(seats), obs, mask, self.deterministic)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "learner": None}  # copies and other processes bind their own agent


class SnapshotPool(SelfPlay):
    """Past versions of the learner: a snapshot of its weights every ``every`` of its env steps
    (the newest ``size`` kept); at each episode the opponent is a uniformly random player with
    probability ``random``, else the current policy with probability ``latest``, else a snapshot
    drawn uniformly from the pool (the current policy while the pool is empty).

    The random share keeps positions a weak player walks into in the learner's data: a policy
    trained only against versions of itself never sees them and loses its grip on the weak
    players it once beat (PPO on connect four, pure self-play: 0.90 wins against random at 20k
    steps, 0.77 at 500k).

    :param every: learner env steps between snapshots.
    :param size: snapshots kept (the oldest dropped).
    :param latest: probability of playing the current policy in an episode (of those without the
        random player).
    :param random: probability of a uniformly random legal player in an episode (0: pure self-play).
    :param deterministic: play the most likely move (default False: sample).
    """

    name = "pool"

    def __init__(self, every: int = 10_000, size: int = 10, latest: float = 0.5, random: float = 0.2,
                 deterministic: bool = False) -> None:
        super().__init__(deterministic)
        if not (isinstance(every, (int, np.integer)) and every > 0):
            raise ValueError(f"SnapshotPool every must be a positive number of steps, got {every!r}")
        if not (isinstance(size, (int, np.integer)) and size > 0):
            raise ValueError(f"SnapshotPool size must be a positive integer, got {size!r}")
        if not 0.0 <= float(latest) <= 1.0:
            raise ValueError(f"SnapshotPool latest is a probability in [0, 1], got {latest!r}")
        if isinstance(random, bool) or not isinstance(random, (int, float)) or not 0.0 <= float(random) <= 1.0:
            raise ValueError(f"SnapshotPool random is a probability in [0, 1], got {random!r}")
        self.every, self.size, self.latest, self.random = int(every), int(size), float(latest), float(random)
        self._random_player = RandomOpponent()
        self.snapshots: list[tuple[int, dict[str, torch.Tensor]]] = []
        self._next = self.every
        self._player: Any = None  # the agent copy that plays snapshots
        #: The step of the snapshot in play; None: the current policy; "random": the random player.
        self.playing: int | str | None = None

    def reset(self, rng: np.random.Generator) -> None:
        super().reset(rng)
        learner = self.learner
        if learner is None or getattr(learner, "observation_space", None) is None:
            self.playing = None
            return
        # Collectors reset envs under inference mode; snapshots and the player's weights are made
        # outside it, so that they can be loaded in and out of it.
        with torch.inference_mode(False), torch.no_grad():
            self._choose(learner, rng)

    def _choose(self, learner: Any, rng: np.random.Generator) -> None:
        while learner.num_timesteps >= self._next:  # a snapshot per `every` steps passed
            state = {k: v.detach().clone().cpu() for k, v in learner.state_dict().items()}
            self.snapshots = (self.snapshots + [(self._next, state)])[-self.size:]
            self._next += self.every
        if self.random and rng.random() < self.random:
            self._random_player.reset(rng)
            self.playing = "random"
            return
        if not self.snapshots or rng.random() < self.latest:
            self.playing = None
            return
        step, state = self.snapshots[int(rng.integers(len(self.snapshots)))]
        if self._player is None:
            self._player = _copy_agent(learner)
        self._player.load_state_dict(state)
        self.playing = step

    def act(self, obs: Any, mask: np.ndarray | None, seats: gym.Env) -> Any:
        if self.playing == "random":
            return self._random_player.act(obs, mask, seats)
        agent = self._learner(seats) if self.playing is None else self._player
        return self.agent_move(agent, obs, mask, self.deterministic)

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "_player": None}


def opponent_seats(env: Any) -> Any:
    """The :class:`~rladapt.wrappers.OpponentSeats` wrapper in an env's chain, or None."""
    from rladapt.wrappers.chain import find_wrapper
    from rladapt.wrappers.multiplayer import OpponentSeats

    return find_wrapper(env, OpponentSeats)


def bind_learner(envs: Any, agent: ActingAgent) -> None:
    """Bind ``agent`` to the learner-policy opponents of ``envs`` (one env or a vector env).

    :raises RuntimeError: for a human opponent in a vector env (people play through ``play``
        and ``evaluate``, not in training).
    """
    if isinstance(envs, gym.vector.VectorEnv):
        # Subprocess envs (vectorization="async") cannot reach this process's agent: their
        # learner-policy opponents raise when they first move, naming the fix.
        inner = getattr(envs, "envs", None)
        if inner is None:
            return
        for env in inner:
            seats = opponent_seats(env)
            if seats is not None and any(isinstance(o, HumanOpponent) for o in seats.opponents):
                raise RuntimeError("a 'human' opponent plays through agent.play(env, human_seat=...) or evaluate, not in training")
            bind_learner(env, agent)
        return
    seats = opponent_seats(envs)
    if seats is not None:
        seats.bind_learner(agent)
