"""MuZero (Schrittwieser et al. 2020): search in a learned model, trained on its own games.

Three networks: the *representation* ``h = f(observation)``, the *dynamics*
``(h', reward) = g(h, action)`` and the *prediction* ``(policy, value) = p(h)``. The search
(:func:`rladapt.search.tree.search_model`: PUCT, Dirichlet root noise, rewards on edges, Q scaled
by the search's min-max) never asks the env for a rule: only the root's moves are the legal ones.

One iteration of the loop::

    games = collector.collect(agent, games_per_iteration)    # self-play (SelfPlayCollector)
        each move: search from the observation (simulations), the move drawn in proportion to
        the visits for the first temperature_moves moves, then the most visited; every position
        kept with its action, reward, search policy and the search's root value
    replay of games <- the games, each position with priority |root value - value target|
    gradient_steps minibatches of positions (drawn by priority), each unrolled unroll_steps moves:
        value target  z_t = r_t + d r_{t+1} + ... + d^(n-1) r_{t+n-1} + d^n v_{t+n}  (n = td_steps,
                      v the root value; zero past the game's end; two players: each reward and
                      the bootstrap enter with the sign of the player to move at t)
        reward target the reward of the move into each unrolled position
        policy target the search policy (none past the game's end)
        loss = sum over the unroll of CE(value) * value_weight + CE(reward) + CE(policy), each
        step after the first scaled by 1 / unroll_steps, the hidden state's gradient halved at
        each dynamics step, weighted by the priorities' importance weights

Values and rewards are categorical over ``-support_size..support_size`` in the space of the
invertible transform ``h(x) = sign(x) (sqrt(|x| + 1) - 1) + 0.001 x`` (two-hot targets).

It plays single-player envs (vector observations, or images through a small CNN) and turn-based
games of two players whose turns alternate (rladapt's TicTacToe, PettingZoo's tictactoe_v3 and
connect_four_v3), with values from the player to move's view. Self-play games of turn-based
games may be played in worker processes (``workers=N``); single-player envs are played in the
learner's process. No reanalyse. Past the end of a truncated episode (CartPole's 500 steps) the
value target is zero, as past a terminal one.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from tensordict import TensorDictBase
from torch import nn

from rladapt.agents.base import Agent, AgentConfig
from rladapt.agents.nets import make_encoder, mlp
from rladapt.search.binding import GameBinding
from rladapt.search.game import EnvGame, GameError, TurnBasedGame, game_for, game_name
from rladapt.search.selfplay import SelfPlayCollector
from rladapt.search.tree import LatentNode, best_move, search_model, visit_policy
from rladapt.spec import AgentSpec
from rladapt.agents.tuning import SearchBudget, suggest_hidden

if TYPE_CHECKING:
    import optuna

__all__ = ["MuZero", "MuZeroConfig", "GameReplay", "unroll_targets", "scalar_to_support", "support_to_scalar"]

#: The keys of a self-play game (one row per position), what the collector batches.
GAME_KEYS = ("observation", "action_mask", "action", "reward", "search_policy", "root_value", "position")


def muzero_search_space(trial: optuna.Trial, budget: SearchBudget) -> dict[str, Any]:
    """MuZero's search space (around muzero-general's CartPole and tic-tac-toe settings); the
    n-step and the discount stay at their per-kind defaults (to the end in board games)."""
    return {
        "lr": trial.suggest_float("lr", 3e-4, 2e-2, log=True),
        "simulations": trial.suggest_categorical("simulations", (8, 16, 25, 50)),
        "unroll_steps": trial.suggest_categorical("unroll_steps", (3, 5, 10)),
        "batch_size": trial.suggest_categorical("batch_size", (64, 128, 256)),
        "gradient_steps": trial.suggest_categorical("gradient_steps", (4, 8, 16, 32)),
        "value_weight": trial.suggest_categorical("value_weight", (0.25, 0.5, 1.0)),
        "hidden_size": trial.suggest_categorical("hidden_size", (32, 64, 128)),
        "hidden": suggest_hidden(trial),
    }


@dataclass
class MuZeroConfig(AgentConfig):
    """Settings of :class:`MuZero`.

    :param game: the turn-based game (a name of :data:`rladapt.search.game.GAMES`); None: the
        game behind the env the agent is bound to, or a single-player env when there is none.
    :param simulations: search simulations per self-play move.
    :param eval_simulations: simulations per move when acting (``act``, ``evaluate``); None: ``simulations``.
    :param c_puct: PUCT's exploration constant.
    :param dirichlet_alpha: concentration of the root noise (about 10 / typical legal moves).
    :param dirichlet_fraction: weight of the noise in the root prior.
    :param temperature_moves: self-play moves drawn in proportion to the visits at the start of
        each game, the most visited after; None: 4 in board games, every move otherwise.
    :param discount: the discount of rewards; None: 1 in board games, 0.997 otherwise.
    :param td_steps: ``n`` of the n-step value targets; None: to the game's end in board games, 50 otherwise.
    :param unroll_steps: moves the dynamics is unrolled for in training (``K``).
    :param support_size: values and rewards are categorical over ``-support_size..support_size``
        in the transformed space ``h(x)``.
    :param games_per_iteration: self-play games per iteration (split over the workers).
    :param replay_size: positions kept for training (the most recent whole games).
    :param priority_alpha: positions are drawn with probability ``priority ** alpha`` (0: uniform).
    :param priority_beta: exponent of the importance weights that correct the priorities.
    :param batch_size: positions per gradient step.
    :param gradient_steps: gradient steps per iteration.
    :param lr: Adam's step size.
    :param weight_decay: L2 penalty on the weights.
    :param value_weight: weight of the value loss beside the policy and reward losses.
    :param hidden_size: size of the hidden state.
    :param hidden: hidden layer sizes of each of the three networks.
    """

    game: str | None = None
    simulations: int = 32
    eval_simulations: int | None = None
    c_puct: float = 1.25
    dirichlet_alpha: float = 0.25
    dirichlet_fraction: float = 0.25
    temperature_moves: int | None = None
    discount: float | None = None
    td_steps: int | None = None
    unroll_steps: int = 5
    support_size: int = 20
    games_per_iteration: int = 4
    replay_size: int = 20_000
    priority_alpha: float = 0.5
    priority_beta: float = 1.0
    batch_size: int = 128
    gradient_steps: int = 16
    lr: float = 3e-3
    weight_decay: float = 1e-4
    value_weight: float = 1.0
    hidden_size: int = 64
    hidden: tuple[int, ...] = (64,)


# -- the value transform and the categorical support ------------------------------------------
_EPS = 0.001


def _transform(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * (torch.sqrt(x.abs() + 1) - 1) + _EPS * x


def _inverse_transform(y: torch.Tensor) -> torch.Tensor:
    return torch.sign(y) * (((torch.sqrt(1 + 4 * _EPS * (y.abs() + 1 + _EPS)) - 1) / (2 * _EPS)) ** 2 - 1)


def scalar_to_support(x: torch.Tensor, size: int) -> torch.Tensor:
    """Two-hot encoding of ``h(x)`` over ``-size..size``: ``[..., 2 * size + 1]``, rows sum to 1.

    ``h(x) = sign(x) (sqrt(|x| + 1) - 1) + 0.001 x`` squashes large values (MuZero's value
    transform), so a small support covers large returns.

    Example:
        >>> scalar_to_support(torch.tensor([0.0, 3.0]), size=2)   # h(3) = 1.003
        tensor([[0.0000, 0.0000, 1.0000, 0.0000, 0.0000],
                [0.0000, 0.0000, 0.0000, 0.9970, 0.0030]])

    :param x: scalars (any shape).
    :param size: the support is the integers ``-size..size``.
    """
    y = _transform(x).clamp(-size, size)
    low = y.floor()
    high_weight = y - low
    out = torch.zeros(*x.shape, 2 * size + 1, dtype=torch.float32, device=x.device)
    index = (low + size).long()
    out.scatter_(-1, index.unsqueeze(-1), (1 - high_weight).unsqueeze(-1))
    out.scatter_add_(-1, (index + 1).clamp(max=2 * size).unsqueeze(-1), high_weight.unsqueeze(-1))
    return out


def support_to_scalar(logits: torch.Tensor, size: int) -> torch.Tensor:
    """The scalar a categorical over ``-size..size`` (logits) stands for: ``h^-1`` of its mean.

    Example:
        >>> probabilities = scalar_to_support(torch.tensor([-7.5, 3.0]), size=5)
        >>> support_to_scalar(probabilities.log(), size=5).round(decimals=3)   # the inverse
        tensor([-7.5000,  3.0000])

    :param logits: ``[..., 2 * size + 1]`` logits over the support.
    :param size: the support is the integers ``-size..size``.
    """
    support = torch.arange(-size, size + 1, dtype=torch.float32, device=logits.device)
    return _inverse_transform((torch.softmax(logits, -1) * support).sum(-1))


# -- the networks --------------------------------------------------------------------------------
def _scale_hidden(h: torch.Tensor) -> torch.Tensor:
    """Each hidden state scaled to [0, 1] (the paper's normalisation: the dynamics sees states
    of the same range as the representation gives)."""
    low, high = h.min(-1, keepdim=True).values, h.max(-1, keepdim=True).values
    return (h - low) / (high - low).clamp_min(1e-5)


class MuZeroNet(nn.Module):
    """The representation, dynamics and prediction networks.

    :param observation_space: the adapted observation space (a vector, or an image through a small CNN).
    :param actions: number of actions.
    :param hidden_size: size of the hidden state.
    :param hidden: hidden layer sizes of each network.
    :param support_size: half-width of the value and reward supports.
    """

    def __init__(self, observation_space: Any, actions: int, hidden_size: int, hidden: tuple[int, ...], support_size: int) -> None:
        super().__init__()
        self.actions, self.support_size = actions, support_size
        encoder = make_encoder(observation_space)
        self.representation = nn.Sequential(encoder, mlp([encoder.out_dim, *hidden, hidden_size], activation=nn.ReLU, out_gain=1.0))
        self.dynamics_trunk = mlp([hidden_size + actions, *hidden], activation=nn.ReLU)
        self.next_state = nn.Linear(hidden[-1], hidden_size)
        self.reward = nn.Linear(hidden[-1], 2 * support_size + 1)
        self.prediction_trunk = mlp([hidden_size, *hidden], activation=nn.ReLU)
        self.policy = nn.Linear(hidden[-1], actions)
        self.value = nn.Linear(hidden[-1], 2 * support_size + 1)

    def represent(self, obs: torch.Tensor) -> torch.Tensor:
        return _scale_hidden(self.representation(obs))

    def dynamics(self, h: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.dynamics_trunk(torch.cat([h, F.one_hot(action, self.actions).float()], -1))
        return _scale_hidden(self.next_state(x)), self.reward(x)

    def predict(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.prediction_trunk(h)
        return self.policy(x), self.value(x)


# -- the targets ----------------------------------------------------------------------------------
def unroll_targets(game: dict[str, np.ndarray], t: int, unroll_steps: int, td_steps: int, discount: float,
                   alternate: bool, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The training targets of position ``t`` of a game, unrolled ``unroll_steps`` moves.

    :param game: the game's ``reward`` (of each move, to its mover), ``root_value`` (the
        search's value at each position, for the player to move), ``search_policy`` and ``action``.
    :param t: the position the unroll starts at.
    :param unroll_steps: ``K``.
    :param td_steps: ``n`` of the n-step value target.
    :param discount: the discount.
    :param alternate: two players alternating: a reward or value of the player to move ``j``
        moves later enters with sign ``(-1) ** j``.
    :param rng: draws the actions unrolled past the game's end (uniform: they carry no target).
    :return: ``action [K]``, ``value [K + 1]``, ``reward [K + 1]`` (entry 0 unused: zero),
        ``policy [K + 1, A]`` and ``policy_mask [K + 1]`` (0 past the game's end).
    """
    rewards, values, policies, actions = game["reward"], game["root_value"], game["search_policy"], game["action"]
    length, num_actions = len(rewards), policies.shape[1]
    sign = -1.0 if alternate else 1.0
    out = {
        "action": np.zeros(unroll_steps, dtype=np.int64), "value": np.zeros(unroll_steps + 1, dtype=np.float32),
        "reward": np.zeros(unroll_steps + 1, dtype=np.float32),
        "policy": np.zeros((unroll_steps + 1, num_actions), dtype=np.float32),
        "policy_mask": np.zeros(unroll_steps + 1, dtype=np.float32),
    }
    for k in range(unroll_steps + 1):
        u = t + k
        if u < length:
            end = min(u + td_steps, length)
            z = sum((sign * discount) ** j * float(rewards[u + j]) for j in range(end - u))
            if u + td_steps < length:
                z += (sign * discount) ** td_steps * float(values[u + td_steps])
            out["value"][k] = z
            out["policy"][k] = policies[u]
            out["policy_mask"][k] = 1.0
        if k > 0 and u - 1 < length:
            out["reward"][k] = rewards[u - 1]
        if k < unroll_steps:
            out["action"][k] = actions[u] if u < length else rng.integers(num_actions)
    return out


class GameReplay:
    """The most recent whole self-play games (``size`` positions at most), each position with a
    priority; positions are drawn in proportion to ``priority ** alpha``.

    :param size: positions kept (the oldest games leave first).
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.games: list[dict[str, np.ndarray]] = []
        self.priorities: list[np.ndarray] = []
        self.count = 0
        self.num_envs = 1

    def add(self, game: dict[str, np.ndarray], priorities: np.ndarray) -> None:
        self.games.append(game)
        self.priorities.append(np.asarray(priorities, dtype=np.float64))
        self.count += len(priorities)
        while self.count > self.size and len(self.games) > 1:
            self.count -= len(self.priorities.pop(0))
            self.games.pop(0)

    def sample(self, batch_size: int, rng: np.random.Generator, alpha: float, beta: float) -> tuple[list[tuple[int, int]], np.ndarray]:
        """``batch_size`` ``(game, position)`` pairs and their importance weights (max 1)."""
        flat = np.concatenate(self.priorities) ** alpha
        probs = flat / flat.sum()
        picks = rng.choice(len(flat), size=batch_size, p=probs)
        starts = np.cumsum([0] + [len(p) for p in self.priorities])
        games = np.searchsorted(starts, picks, side="right") - 1
        weights = (len(flat) * probs[picks]) ** -beta
        return [(int(g), int(i - starts[g])) for g, i in zip(games, picks)], (weights / weights.max()).astype(np.float32)

    def update_priorities(self, picks: list[tuple[int, int]], priorities: np.ndarray) -> None:
        for (g, i), p in zip(picks, priorities):
            self.priorities[g][i] = p

    def __len__(self) -> int:
        return self.count

    def state_dict(self) -> dict[str, Any]:
        """The games as tensors (for training-state checkpoints)."""
        state: dict[str, Any] = {"config": torch.tensor([self.size, 0, 0, 1]),
                                 "lengths": torch.tensor([len(p) for p in self.priorities], dtype=torch.int64),
                                 "priorities": torch.from_numpy(np.concatenate(self.priorities)) if self.games else torch.zeros(0)}
        for key in GAME_KEYS:
            state[key] = torch.from_numpy(np.concatenate([g[key] for g in self.games])) if self.games else torch.zeros(0)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.games, self.priorities, self.count = [], [], 0
        start = 0
        for length in state["lengths"].tolist():
            game = {key: state[key][start:start + length].numpy().copy() for key in GAME_KEYS}
            self.add(game, state["priorities"][start:start + length].numpy().copy())
            start += length


# -- the episodes self-play steps ---------------------------------------------------------------
class _EnvEpisodes:
    """A single-player env seen as self-play sees a game (``spawn``, ``step -> reward``)."""

    def __init__(self, env: Any, seed: int | None) -> None:
        self.env, self.seed, self.num_players = env, seed, 1

    def spawn(self) -> "_EnvEpisodes":
        self.obs, info = self.env.reset(seed=self.seed)
        self.seed = None  # seed the first episode only: the env's RNG carries on after it
        self.mask = info.get("action_mask")
        self.done = False
        return self

    def observation(self) -> np.ndarray:
        return self.obs

    def legal_actions(self) -> np.ndarray | None:
        return None if self.mask is None else np.asarray(self.mask, dtype=bool)

    def step(self, action: int) -> float:
        self.obs, reward, terminated, truncated, info = self.env.step(action)
        self.mask = info.get("action_mask")
        self.done = bool(terminated or truncated)
        return float(reward)

    def is_terminal(self) -> bool:
        return self.done


class _GameEpisode:
    """A turn-based game seen as self-play sees it: ``step`` returns the mover's result."""

    def __init__(self, game: TurnBasedGame) -> None:
        self.game = game

    def observation(self) -> np.ndarray:
        return self.game.observation()

    def legal_actions(self) -> np.ndarray:
        return self.game.legal_actions()

    def step(self, action: int) -> float:
        mover = self.game.current_player()
        self.game.step(action)
        return float(self.game.outcome()[mover]) if self.game.is_terminal() else 0.0

    def is_terminal(self) -> bool:
        return self.game.is_terminal()


class MuZero(GameBinding, Agent):
    """MuZero: search in a learned model of the env, learning from self-play (see the module
    docstring). Single-player envs (vector or image observations) and two-player turn-based games.

    Example:
        >>> agent = MuZero(seed=0)
        >>> agent.learn("CartPole-v1", 20_000)                            # doctest: +SKIP
        >>> MuZero(seed=0).learn("rladapt/TicTacToe-v0", 20_000, workers=2)   # doctest: +SKIP
    """

    spec: ClassVar[AgentSpec] = AgentSpec(observations=frozenset({"vector", "image"}), actions=frozenset({"discrete"}),
                                          masks=True, plays_every_seat=True)
    Config: ClassVar[type[MuZeroConfig]] = MuZeroConfig
    search_space = staticmethod(muzero_search_space)

    @staticmethod
    def kind_defaults(board: bool) -> dict[str, Any]:
        """The settings that differ between board games (results at the end, to the game's end
        undiscounted) and other envs."""
        return {"temperature_moves": 4 if board else 1 << 30, "discount": 1.0 if board else 0.997,
                "td_steps": 1 << 30 if board else 50}

    def default_settings(self, observation_kind: str, action_kind: str) -> dict[str, Any]:
        return self.kind_defaults(self.env_family == "board_game" or self.config.game is not None)

    def build(self) -> None:
        hp = self.hp
        self.num_actions = int(self.action_space.n)
        self.net = MuZeroNet(self.observation_space, self.num_actions, hp.hidden_size, tuple(hp.hidden), hp.support_size)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        self.rng = random.Random(self.config.seed)
        self.replay: GameReplay | None = None
        self.training_steps = 0

    def bind_env(self, env: Any) -> None:
        """Bind to the turn-based game behind ``env``; an env without one is a single-player env."""
        if self.config.game is None and not isinstance(getattr(self, "_game", None), _EnvEpisodes):
            try:
                game = game_for(env)
            except GameError:
                return
            if isinstance(game, EnvGame):  # a single-player env: MuZero learns its own model of it
                return
            if game.num_players != 2:
                raise ValueError(f"MuZero plays two-player turn-based games (values from the player to move's view); "
                                 f"this game has {game.num_players} players")
            self.config.game = self.hp.game = game_name(game)
            self._game = game
            # A game found behind an env of another family (GameEnv over a PettingZoo game): board-game defaults.
            filled = {k: v for k, v in self.kind_defaults(True).items() if getattr(self.config, k) is None}
            self.hp = dataclasses.replace(self.hp, **filled)

    @property
    def alternate(self) -> bool:
        """Whether the player to move changes every move (a turn-based game)."""
        return self.config.game is not None

    # -- the collector ---------------------------------------------------------------------
    def make_collector(self, source: Any, num_envs: int, workers: Any) -> SelfPlayCollector:
        """Self-play games: turn-based games in ``workers`` processes or here, single-player envs here."""
        if workers == "distributed":
            raise ValueError("MuZero plays its self-play games in worker processes (workers=N), not on torchrun ranks")
        if self.config.game is None:
            if workers:
                raise ValueError("MuZero plays a single-player env's episodes in the learner's process: use workers=0 "
                                 "(worker processes play turn-based games, whose rules each process rebuilds from the game's name)")
            if isinstance(self._game, _EnvEpisodes):
                self._game.env.close()  # the previous learn call's env
            seed = None if self.config.seed is None else self.config.seed + self.num_timesteps  # as the loop seeds its envs
            self._game = _EnvEpisodes(source.remote_maker()(), seed)
        return SelfPlayCollector(self, workers, keys=GAME_KEYS)

    def collect_steps(self) -> int:
        return self.hp.games_per_iteration

    def weights_changed(self) -> None:
        """Nothing cached between updates."""

    # -- search ----------------------------------------------------------------------------
    def _model_step(self, state: torch.Tensor, action: int) -> tuple[torch.Tensor, float, np.ndarray, float]:
        with torch.inference_mode():
            next_state, reward_logits = self.net.dynamics(state, torch.tensor([action]))
            logits, value_logits = self.net.predict(next_state)
            size = self.hp.support_size
            return (next_state, float(support_to_scalar(reward_logits, size)), torch.softmax(logits, -1)[0].numpy(),
                    float(support_to_scalar(value_logits, size)))

    def search_observation(self, observation: Any, mask: np.ndarray | None = None, noise: bool = False,
                           simulations: int | None = None) -> LatentNode:
        """The root of a search in the model from ``observation``.

        :param observation: the adapted env's observation (the player to move's view).
        :param mask: the legal moves at the root, or None (all).
        :param noise: mix Dirichlet noise into the root prior (self-play).
        :param simulations: simulations (None: ``eval_simulations``, else ``simulations``).
        """
        hp = self.hp
        with torch.inference_mode():
            state = self.net.represent(torch.as_tensor(np.asarray(observation)).unsqueeze(0))
            logits, _ = self.net.predict(state)
            prior = torch.softmax(logits, -1)[0].numpy()
        dirichlet = (hp.dirichlet_alpha, hp.dirichlet_fraction, self.np_random) if noise else None
        return search_model(state, prior, self._model_step, simulations or hp.eval_simulations or hp.simulations,
                            hp.c_puct, hp.discount, self.alternate, dirichlet, mask)

    def search_root(self, game: TurnBasedGame, mask: np.ndarray | None = None) -> LatentNode:
        """The root of a search from ``game``'s position (what :class:`GameBinding` and players call)."""
        legal = game.legal_actions() if mask is None else game.legal_actions() & np.asarray(mask, dtype=bool)
        return self.search_observation(game.observation(), legal)

    def search_player(self, simulations: int | None = None) -> Any:
        """A player for :func:`rladapt.search.play_match`: ``game -> move``, by search in the model."""
        return lambda game: best_move(self.search_observation(game.observation(), game.legal_actions(), simulations=simulations))

    def self_play_game(self, game: Any) -> dict[str, np.ndarray]:
        """One self-play game (an episode of a single-player env): per position the observation,
        the legal moves, the move played, its reward to the mover, the search policy and value."""
        hp = self.hp
        episode = game if isinstance(game, _EnvEpisodes) else _GameEpisode(game)
        rows: dict[str, list[Any]] = {key: [] for key in GAME_KEYS}
        moves, total = 0, 0.0
        while not episode.is_terminal():
            obs = np.asarray(episode.observation())
            legal = episode.legal_actions()
            root = self.search_observation(obs, legal, noise=True, simulations=hp.simulations)
            policy = visit_policy(root, self.num_actions)
            action = int(self.np_random.choice(self.num_actions, p=policy)) if moves < hp.temperature_moves else best_move(root)
            reward = episode.step(action)
            total += reward
            rows["observation"].append(obs)
            rows["action_mask"].append(np.ones(self.num_actions, dtype=bool) if legal is None else legal)
            rows["action"].append(action)
            rows["reward"].append(reward)
            rows["search_policy"].append(policy.astype(np.float32))
            rows["root_value"].append(sum(root.value_sum) / max(1, root.total))
            rows["position"].append(moves)
            moves += 1
        out = {key: np.asarray(value) for key, value in rows.items()}
        out["reward"], out["root_value"] = out["reward"].astype(np.float32), out["root_value"].astype(np.float32)
        # The episode's return: the first player's result in a game, the sum of rewards otherwise.
        out["outcome"] = np.asarray([episode.game.outcome()[0] if self.alternate else total], dtype=np.float64)
        return out

    # -- acting ----------------------------------------------------------------------------
    def act_batch(self, td: TensorDictBase, deterministic: bool = False) -> TensorDictBase:
        """Search from every observation of the batch (the mask's moves at the root): the most
        visited move (``deterministic``), else one drawn in proportion to the visits."""
        obs = td.get("observation").cpu().numpy()
        masks = td.get("action_mask", None)
        masks = None if masks is None else masks.cpu().numpy().astype(bool)
        actions = []
        for i in range(len(obs)):
            mask = None if masks is None else masks[i]
            if mask is not None and not mask.any():
                raise ValueError("MuZero got an action mask that allows no move")
            actions.append(self.pick(self.search_observation(obs[i], mask), deterministic))
        td.set("action", torch.as_tensor(actions, dtype=torch.int64, device=td.device))
        return td

    def explore(self, td: TensorDictBase) -> TensorDictBase:
        return self.act_batch(td, deterministic=False)

    def search_observation_root(self, obs: Any, mask: np.ndarray | None = None) -> LatentNode:
        """The root of a search in the model from ``obs`` (no game needed: single-player envs too);
        what :class:`GameBinding`'s ``action_values`` and ``act_and_values`` search from."""
        return self.search_observation(obs, None if mask is None else np.asarray(mask, dtype=bool))

    # -- learning --------------------------------------------------------------------------
    def build_replay(self, num_envs: int) -> GameReplay:
        return GameReplay(self.hp.replay_size)

    def make_storage(self, num_envs: int, steps: int) -> GameReplay:
        if self.replay is None:
            self.replay = self.build_replay(1)
        return self.replay

    def store(self, storage: GameReplay, batch: TensorDictBase) -> GameReplay:
        """Split the batch's positions into games and add each with priorities |root value - z|."""
        rows = {key: batch.get(key).reshape(batch.shape[0], *batch.get(key).shape[2:]).numpy() for key in GAME_KEYS}
        starts = np.flatnonzero(rows["position"] == 0).tolist() + [len(rows["position"])]
        hp = self.hp
        for a, b in zip(starts[:-1], starts[1:]):
            game = {key: value[a:b].copy() for key, value in rows.items()}
            z = np.asarray([unroll_targets(game, t, 0, hp.td_steps, hp.discount, self.alternate, self.np_random)["value"][0]
                            for t in range(b - a)])
            storage.add(game, np.abs(game["root_value"] - z) + 1e-3)
        return storage

    def ready(self, storage: GameReplay) -> bool:
        return len(storage) >= self.hp.batch_size

    def resume_state(self) -> dict[str, Any]:
        return {"training_steps": self.training_steps}

    def load_resume_state(self, state: dict[str, Any]) -> None:
        self.training_steps = int(state.get("training_steps", 0))

    def _batch(self, storage: GameReplay) -> tuple[list[tuple[int, int]], dict[str, torch.Tensor]]:
        hp = self.hp
        picks, weights = storage.sample(hp.batch_size, self.np_random, hp.priority_alpha, hp.priority_beta)
        targets = [unroll_targets(storage.games[g], t, hp.unroll_steps, hp.td_steps, hp.discount, self.alternate, self.np_random)
                   for g, t in picks]
        batch = {key: torch.from_numpy(np.stack([x[key] for x in targets])) for key in targets[0]}
        batch["observation"] = torch.from_numpy(np.stack([storage.games[g]["observation"][t] for g, t in picks]))
        batch["weight"] = torch.from_numpy(weights)
        return picks, batch

    def update(self, storage: GameReplay, progress: float) -> dict[str, float]:
        """``gradient_steps`` minibatches of the unrolled loss (see the module docstring)."""
        hp = self.hp
        size, steps = hp.support_size, hp.unroll_steps
        sums = {"value": 0.0, "reward": 0.0, "policy": 0.0}
        for _ in range(hp.gradient_steps):
            picks, b = self._batch(storage)
            value_target = scalar_to_support(b["value"], size)
            reward_target = scalar_to_support(b["reward"], size)
            state = self.net.represent(b["observation"])
            value_loss = reward_loss = policy_loss = torch.zeros(hp.batch_size)
            for k in range(steps + 1):
                if k > 0:
                    state, reward_logits = self.net.dynamics(state, b["action"][:, k - 1])
                    state = 0.5 * state + 0.5 * state.detach()  # halve the gradient through each dynamics step
                logits, value_logits = self.net.predict(state)
                scale = 1.0 if k == 0 else 1.0 / steps
                if k == 0:
                    root_value = support_to_scalar(value_logits.detach(), size)
                value_loss = value_loss + scale * -(value_target[:, k] * torch.log_softmax(value_logits, -1)).sum(-1)
                policy_loss = policy_loss + scale * b["policy_mask"][:, k] * -(b["policy"][:, k] * torch.log_softmax(logits, -1)).sum(-1)
                if k > 0:
                    reward_loss = reward_loss + scale * -(reward_target[:, k] * torch.log_softmax(reward_logits, -1)).sum(-1)
            loss = (b["weight"] * (hp.value_weight * value_loss + reward_loss + policy_loss)).mean()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.training_steps += 1
            storage.update_priorities(picks, (root_value - b["value"][:, 0]).abs().numpy() + 1e-3)
            for name, value in (("value", value_loss), ("reward", reward_loss), ("policy", policy_loss)):
                sums[name] += float(value.detach().mean())
        return {f"train/{name}_loss": total / hp.gradient_steps for name, total in sums.items()}
