"""Search for turn-based games: the game interface, its adapters, tree search, players.

- :mod:`rladapt.search.game`: :class:`TurnBasedGame` (legal moves, whose turn, step, outcome per
  player, clone/restore) and its adapters for rladapt's TicTacToe and PettingZoo AEC games;
- :mod:`rladapt.search.tree`: UCT and PUCT over one tree;
- :mod:`rladapt.search.players`: random and minimax players, matches between players;
- :mod:`rladapt.search.env`: :class:`GameEnv`, a game as a gymnasium env (self-play view);
- :mod:`rladapt.search.selfplay`: AlphaZero's self-play games, in-process or in worker processes.

The agents are :class:`rladapt.agents.MCTS` and :class:`rladapt.agents.AlphaZero`.
"""

from rladapt.search.env import GameEnv
from rladapt.search.game import GameError, PettingZooGame, TicTacToeGame, TurnBasedGame, game_for
from rladapt.search.players import MatchResult, MinimaxPlayer, RandomPlayer, play_match
from rladapt.search.tree import search, visit_policy

__all__ = [
    "GameEnv", "GameError", "MatchResult", "MinimaxPlayer", "PettingZooGame", "RandomPlayer", "TicTacToeGame", "TurnBasedGame",
    "game_for", "play_match", "search", "visit_policy",
]
