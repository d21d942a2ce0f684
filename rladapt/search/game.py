"""The turn-based game interface every search works on, and its adapters.

A search (MCTS, AlphaZero) needs more than a gymnasium env gives: whose turn it is, the legal
moves, the outcome for every player, and a way to save a position and come back to it. That is
:class:`TurnBasedGame`, defined once here; the adapters:

- :class:`TicTacToeGame`: rladapt's tic-tac-toe board (:mod:`rladapt.envs.tictactoe`) seen by two
  players (the env itself always answers with its built-in opponent);
- :class:`PettingZooGame`: a PettingZoo AEC game (``tictactoe_v3``, ``connect_four_v3``, ...): the
  observation and ``action_mask`` of the agent to move, per-agent rewards, and its state saved and
  restored by :mod:`rladapt.wrappers.state` (its wrappers included);
- :class:`EnvGame`: any restorable single-player gymnasium env with discrete actions (CartPole,
  Atari through the ALE's cloneState, your own env): one player whose outcome is the return.

:func:`game_for` finds the game behind an env (adapted or not). A game's observation is the one the
player to move would get from the env, so a network trained in self-play reads the env's
observations unchanged, and :meth:`TurnBasedGame.from_observation` rebuilds the position an
observation shows (the search starts there when the agent acts in an env).
"""

from __future__ import annotations

import ast
import copy
import importlib
import inspect
import sys
from abc import ABC, abstractmethod
from typing import Any, Hashable

import gymnasium as gym
import numpy as np

from rladapt.envs.tictactoe import LINES, TicTacToeEnv
from rladapt.wrappers.multiplayer import recall_env, recall_position
from rladapt.wrappers.state import get_state, set_state

__all__ = [
    "ENV_GAME", "EnvGame", "GAMES", "GameError", "PettingZooGame", "TicTacToeGame", "TurnBasedGame", "build_from_spec", "copy_aec", "game_for", "game_name", "game_spec",
    "make_game", "register_game",
]


class GameError(TypeError):
    """No turn-based game is behind an env, or an observation shows no position of the game."""


class TurnBasedGame(ABC):
    """A game of ``num_players`` players taking turns, for search.

    Players are numbered from 0. ``outcome()`` is meaningful once ``is_terminal()``: one return
    per player (+1 win, -1 loss, 0 draw in the two-player games here). ``clone()`` returns an
    opaque saved position that ``restore`` goes back to, any number of times.
    """

    #: Number of players.
    num_players: int = 2
    #: Number of actions (the legal ones are a subset, :meth:`legal_actions`).
    num_actions: int
    #: The shape of :meth:`observation`.
    observation_shape: tuple[int, ...]
    #: Names of the actions, for the terminal view.
    action_names: tuple[str, ...] = ()

    @abstractmethod
    def reset(self, seed: int | None = None) -> None:
        """Go to the starting position."""

    @abstractmethod
    def current_player(self) -> int:
        """The player to move."""

    @abstractmethod
    def legal_actions(self) -> np.ndarray:
        """A bool mask of shape ``(num_actions,)``: True where the move is legal."""

    @abstractmethod
    def step(self, action: int) -> None:
        """Play ``action`` for the player to move."""

    @abstractmethod
    def is_terminal(self) -> bool:
        """Whether the game is over."""

    @abstractmethod
    def outcome(self) -> np.ndarray:
        """float64 ``(num_players,)``: each player's return (final once the game is over)."""

    @abstractmethod
    def observation(self) -> np.ndarray:
        """What the player to move observes (the env's observation for that seat)."""

    @abstractmethod
    def clone(self) -> Any:
        """The position, saved."""

    @abstractmethod
    def restore(self, state: Any) -> None:
        """Go back to a position saved by :meth:`clone`."""

    @abstractmethod
    def key(self) -> Hashable:
        """A hashable key of the position (transposition tables, memoised minimax)."""

    @abstractmethod
    def from_observation(self, observation: np.ndarray) -> "TurnBasedGame":
        """A new game at the position ``observation`` shows (flattened observations are accepted).

        :raises GameError: the observation shows no position of this game.
        """

    def spawn(self) -> "TurnBasedGame":
        """A new, independent game of the same kind at the starting position."""
        game = self.from_observation(self._start_observation())
        return game

    def _start_observation(self) -> np.ndarray:
        saved = self.clone()
        self.reset()
        obs = self.observation().copy()
        self.restore(saved)
        return obs


class TicTacToeGame(TurnBasedGame):
    """Tic-tac-toe for two players on the board of :class:`~rladapt.envs.tictactoe.TicTacToeEnv`.

    Player 0 is X and moves first. :meth:`observation` is the env's: a float32 ``(9,)`` board,
    +1 for the marks of the player to move, -1 for the other's, 0 empty; so the observation the
    env gives its agent (X, to move) is the position for player 0 to move.

    :param board: the starting cells, +1 X, -1 O, 0 empty (default: the empty board).
    """

    num_players = 2
    num_actions = 9
    observation_shape = (9,)
    action_names = TicTacToeEnv.action_names

    def __init__(self, board: Any = None) -> None:
        self._start = [0] * 9 if board is None else [int(v) for v in np.asarray(board).reshape(9)]
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        self.board = list(self._start)
        self.to_move = 0 if sum(v != 0 for v in self.board) % 2 == 0 else 1
        self.winner = self._find_winner()

    def _find_winner(self) -> int | None:
        for a, b, c in LINES:
            line = self.board[a] + self.board[b] + self.board[c]
            if line == 3:
                return 0
            if line == -3:
                return 1
        return None

    def current_player(self) -> int:
        return self.to_move

    def legal_actions(self) -> np.ndarray:
        if self.is_terminal():
            return np.zeros(9, dtype=bool)
        return np.array([v == 0 for v in self.board])

    def legal_list(self) -> list[int]:
        """The legal moves as a list (the fast path of the searches)."""
        if self.is_terminal():
            return []
        return [i for i, v in enumerate(self.board) if v == 0]

    def step(self, action: int) -> None:
        action = int(action)
        if self.is_terminal() or not 0 <= action < 9 or self.board[action] != 0:
            raise ValueError(f"cell {action} is not a legal move on the board {self.board} (player {self.to_move} to move)")
        mark = 1 if self.to_move == 0 else -1
        self.board[action] = mark
        for a, b, c in LINES:
            if action in (a, b, c) and self.board[a] + self.board[b] + self.board[c] == 3 * mark:
                self.winner = self.to_move
                break
        self.to_move = 1 - self.to_move

    def is_terminal(self) -> bool:
        return self.winner is not None or 0 not in self.board

    def outcome(self) -> np.ndarray:
        if self.winner is None:
            return np.zeros(2)
        return np.array([1.0, -1.0]) if self.winner == 0 else np.array([-1.0, 1.0])

    def observation(self) -> np.ndarray:
        sign = 1 if self.to_move == 0 else -1
        return np.array(self.board, dtype=np.float32) * sign

    def clone(self) -> tuple[list[int], int, int | None]:
        return list(self.board), self.to_move, self.winner

    def restore(self, state: tuple[list[int], int, int | None]) -> None:
        board, self.to_move, self.winner = state
        self.board = list(board)

    def key(self) -> Hashable:
        return tuple(self.board)

    def from_observation(self, observation: np.ndarray) -> "TicTacToeGame":
        cells = np.asarray(observation, dtype=np.float64).reshape(-1)
        if cells.shape != (9,) or not np.isin(cells, (-1.0, 0.0, 1.0)).all():
            raise GameError(f"a tic-tac-toe observation is 9 cells of -1, 0 or +1, got {np.asarray(observation).tolist()}")
        mine, theirs = int((cells == 1).sum()), int((cells == -1).sum())
        if mine == theirs:  # X (player 0) to move: +1 are X's marks
            board = cells
        elif theirs == mine + 1:  # O to move: +1 are O's marks
            board = -cells
        elif mine == theirs + 1:  # the env's final board after X's last move (a win or a full board)
            game = TicTacToeGame(cells)
            if game.is_terminal():
                return game
            board = None
        else:
            board = None
        if board is None:
            raise GameError(f"no tic-tac-toe position has {mine} marks of the player to move and {theirs} of the other")
        return TicTacToeGame(board)


#: How the PettingZoo classic board games store their board: the attribute path of the flat list
#: of cells (0 empty, 1 the first player's piece, 2 the second's), and its observation's layout.
_PETTINGZOO_BOARDS = {
    "tictactoe_v3": ("board.squares", (3, 3)),
    "connect_four_v3": ("board", (6, 7)),
}


class PettingZooGame(TurnBasedGame):
    """A PettingZoo AEC game as a :class:`TurnBasedGame`: PettingZoo's classic games (go, chess,
    connect four, tic-tac-toe, ...), OpenSpiel's games through shimmy's
    ``OpenSpielCompatibilityV0``, and any AEC env whose agents share one discrete action space.

    The player to move is ``agent_selection``; its observation is ``observe(agent)["observation"]``
    (or the whole observation when it is not a dict) and its legal moves the ``action_mask`` of
    the observation or of ``infos[agent]`` (all moves when neither has one); the outcome is each
    agent's cumulative reward. Positions are saved with :func:`rladapt.wrappers.state.get_state`
    (every PettingZoo wrapper's state too). :attr:`spec` says how to build the game again
    (worker processes, checkpoints): the env's constructor and its arguments, read from the env.

    :meth:`from_observation` rebuilds a position from its observation for the boards of
    :data:`_PETTINGZOO_BOARDS` (the observation's two planes are the mover's and the other's
    pieces); for every other game it starts from the position an adapted env remembered with the
    observation (:class:`rladapt.wrappers.multiplayer.RememberPositions`, which AutoAdapt inserts
    for search agents).

    :param env: an AEC env (``go_v5.env(board_size=5)``); it is reset here.
    :param seed: seed of the first reset.
    :param spec: how to build the game again (default: read from ``env``, see :func:`game_spec`).
    """

    def __init__(self, env: Any, seed: int | None = None, spec: str | None = None) -> None:
        for name in ("observe", "possible_agents", "last"):
            if not hasattr(env, name):
                raise GameError(f"{type(env).__name__} is not a PettingZoo AEC env (it has no {name})")
        self.env = env
        # Reads go to the base env: PettingZoo's wrappers forward every attribute through
        # __getattr__, which cost a search on go 5x5 a fifth of its time.
        self._raw = env.unwrapped
        self.name = env.metadata.get("name", type(env.unwrapped).__name__)
        self.agents = list(env.possible_agents)
        self.num_players = len(self.agents)
        action_space = env.action_space(self.agents[0])
        if not hasattr(action_space, "n"):
            raise GameError(f"{self.name}: search needs a Discrete action space, got {action_space}")
        self.num_actions = int(action_space.n)
        space = env.observation_space(self.agents[0])
        inner = space["observation"] if hasattr(space, "spaces") and "observation" in space.spaces else space
        self.observation_shape = tuple(inner.shape)
        self.spec = spec if spec is not None else (self.name if self.name in _PETTINGZOO_BOARDS else game_spec(env))
        self.reset(seed)

    def reset(self, seed: int | None = None) -> None:
        self.env.reset(seed=seed)
        self._cached: Any = None

    def spawn(self) -> "PettingZooGame":
        return PettingZooGame(copy_aec(self.env), spec=self.spec)

    def _observed(self) -> Any:
        if self._cached is None:
            self._cached = self.env.observe(self._raw.agent_selection)
        return self._cached

    def current_player(self) -> int:
        return self.agents.index(self._raw.agent_selection)

    def legal_actions(self) -> np.ndarray:
        if self.is_terminal():
            return np.zeros(self.num_actions, dtype=bool)
        observed = self._observed()
        mask = observed.get("action_mask") if isinstance(observed, dict) else None
        if mask is None:
            mask = self._raw.infos.get(self._raw.agent_selection, {}).get("action_mask")
        if mask is None:
            return np.ones(self.num_actions, dtype=bool)
        return np.asarray(mask, dtype=bool)

    def step(self, action: int) -> None:
        if not self.legal_actions()[int(action)]:
            raise ValueError(f"action {action} is not legal for {self.env.agent_selection} in {self.name}")
        self.env.step(int(action))
        # Agents done but still selected take their None step (PettingZoo's dead steps).
        while not self.is_terminal() and self._done(self._raw.agent_selection):
            self.env.step(None)
        self._cached = None

    def _done(self, agent: str) -> bool:
        raw = self._raw
        return bool(raw.terminations.get(agent, True) or raw.truncations.get(agent, True))

    def is_terminal(self) -> bool:
        agents = self._raw.agents
        return not agents or all(self._done(a) for a in agents)

    def outcome(self) -> np.ndarray:
        rewards = self._raw._cumulative_rewards
        return np.array([float(rewards.get(a, 0.0)) for a in self.agents])

    def observation(self) -> np.ndarray:
        observed = self._observed()
        return np.asarray(observed["observation"] if isinstance(observed, dict) else observed)

    def clone(self) -> Any:
        return get_state(self.env)

    def restore(self, state: Any) -> None:
        set_state(self.env, state)
        self._cached = None

    def _cells(self) -> tuple[list[int], Any, str]:
        path, _ = _PETTINGZOO_BOARDS[self.name]
        holder: Any = self.env.unwrapped
        parts = path.split(".")
        for part in parts[:-1]:
            holder = getattr(holder, part)
        return getattr(holder, parts[-1]), holder, parts[-1]

    def key(self) -> Hashable:
        if self.name in _PETTINGZOO_BOARDS:
            cells, _, _ = self._cells()
            return tuple(cells)
        return self.current_player(), np.ascontiguousarray(self.observation()).tobytes()

    def from_observation(self, observation: np.ndarray) -> "PettingZooGame":
        if self.name not in _PETTINGZOO_BOARDS:
            return self._remembered(observation)
        cells_now, _, _ = self._cells()
        _, shape = _PETTINGZOO_BOARDS[self.name]
        planes = np.asarray(observation).reshape(*shape, 2)
        mine, theirs = planes[..., 0].astype(bool), planes[..., 1].astype(bool)
        if (mine & theirs).any() or theirs.sum() - mine.sum() not in (0, 1):
            raise GameError(f"the observation shows no {self.name} position ({int(mine.sum())} pieces of the player to move, "
                            f"{int(theirs.sum())} of the other)")
        mover = 0 if mine.sum() == theirs.sum() else 1
        board = np.zeros(shape, dtype=np.int64)
        board[mine] = mover + 1
        board[theirs] = 2 - mover
        game = PettingZooGame.__new__(PettingZooGame)
        game.__dict__.update({k: v for k, v in self.__dict__.items() if k != "env"})
        game.env = copy.deepcopy(self.env)
        game._raw = game.env.unwrapped
        game.reset()
        cells, holder, attribute = game._cells()
        if not isinstance(cells, list):
            raise GameError(f"{self.name} stores its board as {type(cells).__name__}, not a list of cells")
        setattr(holder, attribute, [int(v) for v in board.reshape(-1)])
        if mover == 1:  # the second player to move: its turn, and the first player's after it
            raw = game.env.unwrapped
            raw.agent_selection = raw._agent_selector.next()
        game._cached = None
        return game

    def _remembered(self, observation: np.ndarray) -> "PettingZooGame":
        state = recall_position(observation)
        if state is None:
            raise GameError(
                f"{self.name}'s observation does not say its position, and no adapted env of this process returned this "
                f"observation: search agents act on envs adapted for them (AutoAdapt(env, agent) remembers the position "
                f"behind each observation), or search from a game (agent.search_root(game))"
            )
        game = self.spawn()
        try:
            game.restore(state)
        except (TypeError, ValueError) as error:
            raise GameError(f"the position remembered for this observation is not one of {self.spec}: {error}") from None
        return game


class EnvGame(TurnBasedGame):
    """A single-player gymnasium env as a one-player game: what lets a search (MCTS) act on any
    env whose state can be saved and restored (:mod:`rladapt.wrappers.state`: CartPole, MuJoCo,
    Atari through ``cloneState``, an env with ``backup()``/``restore()``).

    A position is the env's state (every wrapper's included) with the return accumulated since
    the search started: moves are ``env.step`` calls, the legal moves those of
    ``info["action_mask"]`` (all moves without one), the game ends when the episode does
    (terminated or truncated), and its outcome is ``[return]``: the sum of the rewards since the
    search's root. There is no opponent and no win: searches value such a game by the returns
    they see, scaled to the range seen (:func:`rladapt.search.tree.search`).

    The search runs in the live env the agent acts in: :meth:`from_observation` finds it with the
    state it had when it returned the observation (:class:`~rladapt.wrappers.multiplayer.RememberPositions`,
    which AutoAdapt puts outermost for search agents), and every search ends with the env restored
    to that state, so the episode goes on as if no search had run. ``EnvGame()`` (no env) is the
    template the agents' ``game`` setting names (:data:`ENV_GAME`): it only finds positions.

    :param env: the live env (a chain below a ``RememberPositions``), or None for the template.
    """

    num_players = 1

    def __init__(self, env: Any = None) -> None:
        self.env = env
        self.num_actions = 0
        if env is not None:
            space = env.action_space
            if not isinstance(space, gym.spaces.Discrete):
                raise GameError(f"search moves through discrete actions; this env's (adapted) action space is {space} "
                                f"(give the search agent an env with a Discrete action space)")
            self.num_actions, self._start = int(space.n), int(space.start)
        self._obs: Any = None
        self._mask: np.ndarray | None = None
        self._done, self._return = False, 0.0

    def reset(self, seed: int | None = None) -> None:
        self._obs, info = self.env.reset(seed=seed)
        self._position(info)

    def _position(self, info: dict[str, Any], done: bool = False) -> None:
        mask = info.get("action_mask")
        self._mask = None if mask is None else np.asarray(mask, dtype=bool)
        self._done = done

    def current_player(self) -> int:
        return 0

    def legal_actions(self) -> np.ndarray:
        if self._done:
            return np.zeros(self.num_actions, dtype=bool)
        return np.ones(self.num_actions, dtype=bool) if self._mask is None else self._mask

    def step(self, action: int) -> None:
        self._obs, reward, terminated, truncated, info = self.env.step(self._start + int(action))
        self._return += float(reward)
        self._position(info, bool(terminated or truncated))

    def is_terminal(self) -> bool:
        return self._done

    def outcome(self) -> np.ndarray:
        return np.array([self._return])

    def observation(self) -> np.ndarray:
        return np.asarray(self._obs)

    def clone(self) -> Any:
        return get_state(self.env), self._obs, self._mask, self._done, self._return

    def restore(self, state: Any) -> None:
        env_state, self._obs, self._mask, self._done, self._return = state
        set_state(self.env, env_state)

    def key(self) -> Hashable:
        return np.ascontiguousarray(self.observation()).tobytes(), self._done

    def from_observation(self, observation: np.ndarray) -> "EnvGame":
        remembered = recall_env(observation)
        if remembered is None:
            raise GameError(
                "this observation came from no adapted env of this process: search agents act on single-player envs "
                "adapted for them (AutoAdapt(env, agent) remembers the state behind each observation), in-process "
                "(vectorization='async' runs envs in subprocesses the search cannot reach)"
            )
        env, state = remembered
        game = EnvGame(env)
        set_state(env, state)
        game._obs = observation  # the root's moves: all, narrowed by the agent's mask (search's allowed)
        return game

    def spawn(self) -> "EnvGame":
        return EnvGame()


#: The ``game`` setting of a search agent bound to a single-player env: the env it acts on.
ENV_GAME = "env"


#: Modules a game spec may import when the process has not imported them (the registry's rule:
#: rladapt never imports a module only because a file names it; these are the game libraries').
SPEC_MODULE_PREFIXES = ("pettingzoo.", "shimmy.", "shimmy", "rladapt.envs.")


def _literal(value: Any) -> Any:
    """A constructor argument as a literal a spec can hold (a pyspiel game as its string)."""
    if type(value).__module__ == "pyspiel":
        return str(value)
    try:
        if ast.literal_eval(repr(value)) == value:
            return value
    except (ValueError, SyntaxError):
        pass
    raise GameError(f"the argument {value!r} ({type(value).__name__}) cannot be written into a game spec")


def game_spec(env: Any) -> str:
    """How to build a PettingZoo AEC env again, as ``"module:factory(key=value, ...)"``: PettingZoo's
    ``pettingzoo.classic.go_v5:env(board_size=5)``, shimmy's
    ``shimmy.openspiel_compatibility:OpenSpielCompatibilityV0(game_name='hex(board_size=5)')``.
    The arguments are read from the env's ``EzPickle`` record of its constructor call (PettingZoo's
    and shimmy's envs keep one); those equal to their defaults and ``render_mode`` are left out.

    :param env: the AEC env (wrapped or not).
    :raises GameError: the env keeps no record of its constructor arguments, or one is not a literal.
    """
    raw = env.unwrapped
    args, kwargs = getattr(raw, "_ezpickle_args", None), getattr(raw, "_ezpickle_kwargs", None)
    if args is None or kwargs is None:
        raise GameError(f"{type(raw).__name__} does not record its constructor arguments (gymnasium.utils.EzPickle), so rladapt "
                        f"cannot build it again in worker processes and checkpoints: register it with "
                        f"rladapt.search.game.register_game(name, factory) and pass game=name")
    parameters = [p for p in inspect.signature(type(raw).__init__).parameters.values() if p.name != "self"]
    given = {**dict(zip((p.name for p in parameters), args)), **kwargs}
    for p in parameters:  # an argument the record lacks but the env keeps (shimmy's OpenSpiel config)
        if p.name not in given and p.name != "render_mode" and hasattr(raw, p.name):
            given[p.name] = getattr(raw, p.name)
    defaults = {p.name: p.default for p in parameters}
    arguments: dict[str, Any] = {}
    for key, value in given.items():
        if key == "render_mode" or (key in defaults and defaults[key] is not inspect.Parameter.empty and _same(value, defaults[key])):
            continue
        if key == "env" and type(value).__module__ == "pyspiel":  # shimmy: a loaded OpenSpiel game -> its name
            key = "game_name"
        arguments[key] = _literal(value)
    module = type(raw).__module__
    parts, name = module.split("."), raw.metadata.get("name", "")
    versioned = ".".join(parts[:2] + [name]) if parts[0] == "pettingzoo" and len(parts) > 2 and name else None
    if versioned and hasattr(_import(versioned), "env"):
        factory = f"{versioned}:env"
    else:
        factory = f"{module}:{type(raw).__qualname__}"
    return f"{factory}({', '.join(f'{k}={v!r}' for k, v in arguments.items())})"


def _same(value: Any, default: Any) -> bool:
    try:
        return bool(value == default) and type(value) is type(default)
    except Exception:  # an array's == is no truth value
        return False


def _import(module: str) -> Any:
    if module not in sys.modules and not module.startswith(SPEC_MODULE_PREFIXES):
        raise GameError(f"the game spec names module {module!r}, which this process has not imported: import it first "
                        f"(rladapt imports only the game libraries' modules by name: {', '.join(SPEC_MODULE_PREFIXES[:2])})")
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise GameError(f"the game spec names module {module!r}, which cannot be imported ({error})") from None


def build_from_spec(spec: str) -> "PettingZooGame":
    """The game a :func:`game_spec` string describes, at its start.

    :raises GameError: the spec is malformed, names an unimportable module, or builds no AEC env.
    """
    module, _, call = spec.partition(":")
    try:
        node = ast.parse(call, mode="eval").body
        if not isinstance(node, ast.Call) or node.args:
            raise ValueError("expected factory(key=value, ...)")
        path, func = [], node.func
        while isinstance(func, ast.Attribute):
            path.append(func.attr)
            func = func.value
        if not isinstance(func, ast.Name):
            raise ValueError("the factory must be a name")
        path.append(func.id)
        kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords}
    except (SyntaxError, ValueError) as error:
        raise GameError(f"game spec {spec!r} is not 'module:factory(key=value, ...)' with literal values ({error})") from None
    factory: Any = _import(module)
    for name in reversed(path):
        factory = getattr(factory, name)
    return PettingZooGame(factory(**kwargs), spec=spec)


def copy_aec(env: Any) -> Any:
    """An independent copy of a PettingZoo AEC env, wrappers included (to be reset by its user).

    ``copy.deepcopy`` of an env that pickles by its constructor arguments (``EzPickle``:
    PettingZoo's and shimmy's) builds a fresh env from the arguments it recorded, which may miss
    some (shimmy records no OpenSpiel ``config``: a 5x5 breakthrough would come back 8x8); the
    copy then takes every attribute of ``env`` (:func:`~rladapt.wrappers.state.set_state`), so it
    is the same game.
    """
    clone = copy.deepcopy(env)
    try:
        spec = game_spec(env)
    except GameError:
        spec = None
    if spec is not None and game_spec(clone) != spec:  # the pickled copy lost an argument: build the base from the spec
        chain = [clone]
        while chain[-1] is not chain[-1].unwrapped:
            chain.append(chain[-1].env)
        base = build_from_spec(spec).env
        if len(chain) == 1:
            clone = base
        else:
            chain[-2].env = base
    set_state(clone, get_state(env))
    return clone


def game_for(env: Any) -> TurnBasedGame:
    """The turn-based game behind ``env``: rladapt's TicTacToe env (adapted or not), a
    :class:`~rladapt.search.env.GameEnv`, a PettingZoo AEC env, or a gymnasium env whose chain
    holds one (a single-agent view of a PettingZoo game); for any other gymnasium env, the
    :class:`EnvGame` template (a single-player env searched through its saved states).

    :param env: the env.
    :raises GameError: no game is found (the message names what is supported).
    """
    if isinstance(env, TurnBasedGame):
        return env
    base = getattr(env, "unwrapped", env)
    if isinstance(base, TicTacToeEnv):
        return TicTacToeGame()
    game = getattr(base, "game", None)
    if isinstance(game, TurnBasedGame):
        return game.spawn()
    if hasattr(env, "possible_agents") and hasattr(env, "observe"):
        return PettingZooGame(copy_aec(env))
    for value in vars(base).values():  # a gymnasium view of an AEC game holds the AEC env
        if hasattr(value, "observe") and hasattr(value, "possible_agents"):
            return PettingZooGame(copy_aec(value))
    if isinstance(env, gym.Env):  # a single-player env: searched through its saved states
        return EnvGame(env).spawn()
    raise GameError(
        f"search needs a turn-based game or a gymnasium env, and {type(base).__name__} is neither: use "
        f"rladapt/TicTacToe-v0, a PettingZoo AEC game (rladapt.search.GameEnv.pettingzoo(connect_four_v3.env())), a "
        f"rladapt.search.GameEnv over your own TurnBasedGame, or a single-player gymnasium env"
    )


def _pettingzoo(name: str) -> TurnBasedGame:
    module = importlib.import_module(f"pettingzoo.classic.{name}")
    return PettingZooGame(module.env())


#: Games the search agents know by name (their ``game`` setting): name -> zero-argument factory.
GAMES: dict[str, Any] = {
    "tictactoe": TicTacToeGame,
    "tictactoe_v3": lambda: _pettingzoo("tictactoe_v3"),
    "connect_four_v3": lambda: _pettingzoo("connect_four_v3"),
    ENV_GAME: EnvGame,
}


def register_game(name: str, factory: Any) -> None:
    """Make a game known by ``name`` to the search agents' ``game`` setting (and checkpoints).

    :param name: the name (``MCTS(game=name)``).
    :param factory: zero-argument callable returning a :class:`TurnBasedGame` at its start.
    """
    GAMES[name] = factory


def make_game(name: str) -> TurnBasedGame:
    """The game ``name`` names, at its starting position: a name of :data:`GAMES`, or a game
    spec (:func:`game_spec`: ``"pettingzoo.classic.go_v5:env(board_size=5)"``).

    :raises ValueError: an unknown name (the message lists the known ones).
    :raises GameError: a spec that cannot be built (the message says why).
    """
    if name in GAMES:
        return GAMES[name]()
    if ":" in name:
        return build_from_spec(name)
    raise ValueError(f"unknown game {name!r}; known games: {sorted(GAMES)}, or a game spec 'module:factory(key=value, ...)' "
                     f"(rladapt.search.game.register_game adds a name)")


def game_name(game: TurnBasedGame) -> str:
    """What the agents' ``game`` setting records of ``game``'s kind: its registered name, or for a
    PettingZoo/OpenSpiel game its spec (how to build it again, :func:`game_spec`).

    :raises GameError: the game's kind is neither registered nor rebuildable from a spec.
    """
    if isinstance(game, TicTacToeGame):
        return "tictactoe"
    if isinstance(game, PettingZooGame):
        return game.spec
    for key, factory in GAMES.items():
        if factory is type(game):
            return key
    raise GameError(f"{type(game).__name__} is not registered: rladapt.search.game.register_game(name, factory) makes it "
                    f"known to the search agents")
