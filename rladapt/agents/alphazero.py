"""AlphaZero (Silver et al. 2017): PUCT search guided by a policy-value network, trained on its own
self-play games.

One iteration of the loop::

    games = collector.collect(agent, games_per_iteration)    # self-play, in-process or in workers:
        each move: PUCT search from the position (simulations), Dirichlet noise at the root,
        the move drawn from the visit counts (temperature 1) for the first temperature_moves
        moves, then the most visited; every position kept with the search's visit distribution
    each position's value target = the game's result for the player to move there
    replay window (the last replay_size positions) <- the positions
    gradient_steps minibatches: cross-entropy(policy, search policy) + value_weight * MSE(value,
        value target), Adam with L2 weight decay

Acting (``act``, ``evaluate``, ``play``) searches with ``eval_simulations`` and no noise and plays
the most visited move; ``action_values`` shows the visit shares.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from tensordict import TensorDictBase
from torch import nn

from rladapt.agents.base import Agent, AgentConfig
from rladapt.agents.masks import masked_logits
from rladapt.agents.nets import mlp
from rladapt.search.binding import GameBinding
from rladapt.search.game import EnvGame, GameError, TurnBasedGame
from rladapt.search.selfplay import SelfPlayCollector
from rladapt.search.tree import Node, best_move, search, value_vector, visit_policy
from rladapt.spaces import vector_size
from rladapt.spec import AgentSpec

__all__ = ["AlphaZero", "AlphaZeroConfig"]


@dataclass
class AlphaZeroConfig(AgentConfig):
    """Settings of :class:`AlphaZero`.

    :param game: the game (a name of :data:`rladapt.search.game.GAMES`); None: the game behind
        the env the agent is bound to.
    :param simulations: PUCT simulations per self-play move.
    :param eval_simulations: simulations per move when acting (``act``, ``evaluate``); None: ``simulations``.
    :param c_puct: PUCT's exploration constant.
    :param dirichlet_alpha: concentration of the root noise (about 10 / typical legal moves).
    :param dirichlet_fraction: weight of the noise in the root prior.
    :param temperature_moves: self-play moves drawn in proportion to the visits (temperature 1)
        at the start of each game; the most visited move after.
    :param games_per_iteration: self-play games per iteration (split over the workers).
    :param replay_size: positions kept for training (the most recent).
    :param batch_size: positions per gradient step.
    :param gradient_steps: gradient steps per iteration.
    :param lr: Adam's step size.
    :param weight_decay: L2 penalty on the weights.
    :param value_weight: weight of the value loss beside the policy loss.
    :param hidden: sizes of the network's hidden layers (shared by both heads).
    """

    game: str | None = None
    simulations: int = 64
    eval_simulations: int | None = None
    c_puct: float = 1.5
    dirichlet_alpha: float = 1.0
    dirichlet_fraction: float = 0.25
    temperature_moves: int = 4
    games_per_iteration: int = 16
    replay_size: int = 20_000
    batch_size: int = 128
    gradient_steps: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    value_weight: float = 1.0
    hidden: tuple[int, ...] = (128, 128)


class PolicyValueNet(nn.Module):
    """An MLP trunk with a policy head (logits per action) and a value head (tanh, the expected
    result for the player to move).

    :param inputs: size of the flattened observation.
    :param actions: number of actions.
    :param hidden: hidden layer sizes.
    """

    def __init__(self, inputs: int, actions: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.trunk = mlp([inputs, *hidden], activation=nn.ReLU)
        self.policy = nn.Linear(hidden[-1], actions)
        self.value = nn.Linear(hidden[-1], 1)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.trunk(obs)
        return self.policy(features), torch.tanh(self.value(features)).squeeze(-1)


class PositionReplay:
    """The most recent ``size`` self-play positions, preallocated.

    :param size: positions kept.
    :param inputs: flattened observation size.
    :param actions: number of actions.
    """

    def __init__(self, size: int, inputs: int, actions: int) -> None:
        self.obs = torch.zeros(size, inputs)
        self.mask = torch.zeros(size, actions, dtype=torch.bool)
        self.policy = torch.zeros(size, actions)
        self.value = torch.zeros(size)
        self.size, self.count, self.next = size, 0, 0

    def add(self, batch: TensorDictBase) -> None:
        rows = batch.reshape(-1)
        n = min(rows.shape[0], self.size)
        rows = rows[-n:]
        index = (self.next + torch.arange(n)) % self.size
        self.obs[index] = rows.get("observation").float()
        self.mask[index] = rows.get("action_mask").bool()
        self.policy[index] = rows.get("search_policy").float()
        self.value[index] = rows.get("value_target").float()
        self.next = int((self.next + n) % self.size)
        self.count = min(self.size, self.count + n)

    def sample(self, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        index = torch.randint(self.count, (batch,), generator=generator)
        return self.obs[index], self.mask[index], self.policy[index], self.value[index]


class AlphaZero(GameBinding, Agent):
    """AlphaZero for turn-based games: PUCT search with a policy-value network, learning from
    self-play (see the module docstring).

    Plays rladapt's TicTacToe, PettingZoo's classic board games (through
    :class:`rladapt.search.GameEnv`) and any registered :class:`~rladapt.search.game.TurnBasedGame`.

    Example:
        >>> agent = AlphaZero(seed=0)
        >>> agent.learn("rladapt/TicTacToe-v0", 20_000, workers=2)   # doctest: +SKIP
    """

    spec: ClassVar[AgentSpec] = AgentSpec(observations=frozenset({"vector"}), actions=frozenset({"discrete"}), masks=True,
                                          needs_env_state=True, plays_every_seat=True)
    Config: ClassVar[type[AlphaZeroConfig]] = AlphaZeroConfig

    def build(self) -> None:
        hp = self.hp
        self.num_actions = int(self.action_space.n)
        self.net = PolicyValueNet(vector_size(self.observation_space), self.num_actions, tuple(hp.hidden))
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        self.rng = random.Random(self.config.seed)
        self._cache: dict[bytes, tuple[np.ndarray, float]] = {}

    def bind_env(self, env: Any) -> None:
        """Bind to the turn-based game behind ``env`` (:meth:`GameBinding.bind_env`).

        :raises GameError: ``env`` is a single-player env: AlphaZero's values are game results
            from the view of the player to move, learned by self-play.
        """
        super().bind_env(env)
        if isinstance(self.game, EnvGame):
            self.config.game = self.hp.game = self._game = None
            raise GameError("AlphaZero learns turn-based games by self-play (values are wins and losses); this is a "
                            "single-player env: use MuZero (it learns a model of the env and its returns) or MCTS "
                            "(it searches the env itself through its saved states)")

    # -- the collector ---------------------------------------------------------------------
    def make_collector(self, source: Any, num_envs: int, workers: Any) -> SelfPlayCollector:
        """Self-play games (in ``workers`` processes): the loop's collector for this agent."""
        if workers == "distributed":
            raise ValueError("AlphaZero plays its self-play games in worker processes (workers=N), not on torchrun ranks")
        return SelfPlayCollector(self, workers)

    def collect_steps(self) -> int:
        """Self-play games per iteration (the collector's rows are their positions)."""
        return self.hp.games_per_iteration

    def weights_changed(self) -> None:
        """Forget the cached network evaluations (after an update or loading new weights)."""
        self._cache.clear()

    # -- search ----------------------------------------------------------------------------
    def evaluate_position(self, game: TurnBasedGame) -> tuple[np.ndarray, np.ndarray]:
        """``(prior over all actions, value per player)`` of the network at ``game``'s position."""
        obs = np.asarray(game.observation(), dtype=np.float32).reshape(-1)
        key = obs.tobytes()
        cached = self._cache.get(key)
        if cached is None:
            with torch.inference_mode():
                logits, value = self.net(torch.from_numpy(obs).unsqueeze(0))
                legal = torch.from_numpy(game.legal_actions()).unsqueeze(0)
                prior = torch.softmax(masked_logits(logits, legal), -1)[0].numpy()
            cached = self._cache[key] = (prior, float(value))
        prior, value = cached
        return prior, value_vector(value, game.current_player(), game.num_players)

    def search_root(self, game: TurnBasedGame, mask: np.ndarray | None = None, noise: bool = False,
                    simulations: int | None = None) -> Node:
        """The root of a PUCT search from ``game``'s position.

        :param game: the game at the position.
        :param mask: moves allowed at the root (the env's action mask), or None.
        :param noise: mix Dirichlet noise into the root prior (self-play).
        :param simulations: simulations (None: ``eval_simulations``, else ``simulations``).
        """
        hp = self.hp
        n = simulations or hp.eval_simulations or hp.simulations
        dirichlet = (hp.dirichlet_alpha, hp.dirichlet_fraction, self.np_random) if noise else None
        return search(game, n, "puct", hp.c_puct, evaluate=self.evaluate_position, rng=self.rng, noise=dirichlet, allowed=mask)

    def search_player(self, simulations: int | None = None) -> Any:
        """A player for :func:`rladapt.search.play_match`: ``game -> move``, by search."""
        return lambda game: best_move(self.search_root(game, simulations=simulations))

    def self_play_game(self, game: TurnBasedGame) -> dict[str, np.ndarray]:
        """One game in which the search moves for every player: its positions, the search policies,
        the value targets (the result for the player to move at each position) and the outcome."""
        hp = self.hp
        observations, masks, policies, players = [], [], [], []
        moves = 0
        while not game.is_terminal():
            root = self.search_root(game, noise=True, simulations=hp.simulations)
            policy = visit_policy(root, self.num_actions)
            observations.append(np.asarray(game.observation(), dtype=np.float32).reshape(-1))
            masks.append(game.legal_actions())
            policies.append(policy.astype(np.float32))
            players.append(game.current_player())
            if moves < hp.temperature_moves:
                action = int(self.np_random.choice(self.num_actions, p=policy))
            else:
                action = best_move(root)
            game.step(action)
            moves += 1
        outcome = game.outcome()
        return {
            "observation": np.stack(observations), "action_mask": np.stack(masks), "search_policy": np.stack(policies),
            "value_target": outcome[np.asarray(players)].astype(np.float32), "outcome": outcome,
        }

    # -- acting ----------------------------------------------------------------------------
    # -- learning --------------------------------------------------------------------------
    def make_storage(self, num_envs: int, steps: int) -> PositionReplay:
        return PositionReplay(self.hp.replay_size, vector_size(self.observation_space), self.num_actions)

    def store(self, storage: PositionReplay, batch: TensorDictBase) -> PositionReplay:
        storage.add(batch)
        return storage

    def ready(self, storage: PositionReplay) -> bool:
        return storage.count >= self.hp.batch_size

    def update(self, storage: PositionReplay, progress: float) -> dict[str, float]:
        """``gradient_steps`` minibatches of policy cross-entropy and value error."""
        hp = self.hp
        policy_losses, value_losses = [], []
        for _ in range(hp.gradient_steps):
            obs, mask, target_policy, target_value = storage.sample(hp.batch_size, self.generator)
            logits, value = self.net(obs)
            log_probs = torch.log_softmax(masked_logits(logits, mask), -1)
            policy_loss = -(target_policy * log_probs.clamp_min(-1e9)).sum(-1).mean()
            value_loss = F.mse_loss(value, target_value)
            loss = policy_loss + hp.value_weight * value_loss
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            policy_losses.append(policy_loss.item())
            value_losses.append(value_loss.item())
        self.weights_changed()
        return {"train/policy_loss": float(np.mean(policy_losses)), "train/value_loss": float(np.mean(value_losses))}
