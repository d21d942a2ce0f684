"""MCTS: UCT with random playouts over a turn-based game. Nothing is learned.

Each move, ``simulations`` simulations from the position the observation shows: select by UCB1
among the legal moves (``Q + c * sqrt(ln N / n)``, unvisited moves first), add one leaf, value it
with a uniformly random playout to the end of the game, back the result up as the return of the
player who moves at each node. Solved positions (wins in one, proved losses) are kept exact
(:mod:`rladapt.search.tree`). The move played is the most visited one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from tensordict import TensorDictBase

from rladapt.agents.base import Agent, AgentConfig
from rladapt.search.binding import GameBinding
from rladapt.search.game import TurnBasedGame
from rladapt.search.tree import best_move, search
from rladapt.spec import AgentSpec

__all__ = ["MCTS", "MCTSConfig"]


@dataclass
class MCTSConfig(AgentConfig):
    """Settings of :class:`MCTS`.

    :param simulations: simulations per move (600 never loses tic-tac-toe to a random player in
        the test suite's 400 games; more is stronger and slower).
    :param c_uct: UCB1's exploration constant (on values scaled to [0, 1] in a single-player env).
    :param playout_moves: the most moves of a random playout, whose value is then the return so
        far; None: to the end of a turn-based game, and ``SINGLE_PLAYER_PLAYOUT_MOVES`` (100) moves
        in a single-player env, whose episodes can last thousands of steps (Atari).
    :param game: the game searched (a name of :data:`rladapt.search.game.GAMES`); None: the game
        behind the env the agent is bound to (``"env"``: a single-player env, searched in the env
        the agent acts on through its saved states).
    """

    num_envs: int | None = 1
    simulations: int = 800
    c_uct: float = 1.4
    playout_moves: int | None = None
    game: str | None = None


#: Random playout length in a single-player env when ``playout_moves`` is None.
SINGLE_PLAYER_PLAYOUT_MOVES = 100


class MCTS(GameBinding, Agent):
    """Monte Carlo tree search (UCT, random playouts) for turn-based games and restorable
    single-player envs; no learning.

    Plays rladapt's TicTacToe, PettingZoo's classic board games (through
    :class:`rladapt.search.GameEnv`), any :class:`~rladapt.search.game.TurnBasedGame`, and any
    single-player env with discrete actions whose state can be saved (CartPole, Atari): there it
    searches in the env itself, from the state behind each observation, and restores it before
    the move is played (:class:`~rladapt.search.game.EnvGame`).
    ``learn`` runs the loop (nothing to update); ``evaluate``, ``play`` and ``act`` search.

    Example:
        >>> agent = MCTS(simulations=600, seed=0)
        >>> agent.evaluate("rladapt/TicTacToe-v0", episodes=10).mean   # doctest: +SKIP
    """

    spec: ClassVar[AgentSpec] = AgentSpec(observations=frozenset({"vector"}), actions=frozenset({"discrete"}), masks=True,
                                          needs_env_state=True, plays_every_seat=True)
    Config: ClassVar[type[MCTSConfig]] = MCTSConfig

    def build(self) -> None:
        self.rng = random.Random(self.config.seed)

    def search_root(self, game: TurnBasedGame, mask: np.ndarray | None = None) -> Any:
        """The root of a search from ``game``'s position (its ``visits`` per legal move)."""
        moves = self.hp.playout_moves
        if moves is None and game.num_players == 1:
            moves = SINGLE_PLAYER_PLAYOUT_MOVES
        return search(game, self.hp.simulations, "uct", self.hp.c_uct, rng=self.rng, allowed=mask, playout_moves=moves)

    def search_player(self) -> Any:
        """A player for :func:`rladapt.search.play_match`: ``game -> move``, by search."""
        return lambda game: best_move(self.search_root(game))

    def update(self, batch: TensorDictBase, progress: float) -> dict[str, float]:
        """Nothing to learn: the search is the policy."""
        return {}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {}
