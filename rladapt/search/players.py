"""Players for turn-based games, and matches between them: the yardsticks of the search agents.

A player is a callable ``player(game) -> action`` (the game at the position to move; a player must
not leave it moved). :class:`RandomPlayer` plays a uniform legal move, :class:`MinimaxPlayer` the
game-theoretic best move (memoised negamax; ``depth`` limits it to a lookahead: ``depth=2`` is the
usual "2-ply" player that wins when it can and blocks an immediate loss), and an agent's
``search_player()`` searches. :func:`play_match` plays games between two players from a chosen
seat and counts wins, draws and losses.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable, Hashable

from rladapt.search.game import TurnBasedGame
from rladapt.search.tree import legal_moves

__all__ = ["MatchResult", "MinimaxPlayer", "RandomPlayer", "play_match"]

Player = Callable[[TurnBasedGame], int]


class RandomPlayer:
    """A uniformly random legal move.

    :param seed: seed of its random source.
    """

    def __init__(self, seed: int | None = None) -> None:
        self.rng = random.Random(seed)

    def __call__(self, game: TurnBasedGame) -> int:
        return self.rng.choice(legal_moves(game))


class MinimaxPlayer:
    """Negamax with a memo of the positions seen, ties between equally good moves broken at
    random (so games against it vary). Without ``depth`` it plays perfectly (tic-tac-toe: a few
    thousand positions); with ``depth`` it looks that many plies ahead and scores the horizon 0.

    Two-player zero-sum games only; each ply discounts by 0.99, so a win sooner scores higher than
    a win later: it finishes games and delays losses.

    :param depth: plies to look ahead (None: to the end of the game).
    :param seed: seed of the tie-breaks.
    """

    def __init__(self, depth: int | None = None, seed: int | None = None) -> None:
        self.depth = depth
        self.rng = random.Random(seed)
        self.memo: dict[tuple[Hashable, int, int | None], float] = {}

    def _value(self, game: TurnBasedGame, depth: int | None) -> float:
        """The value of the position for the player to move."""
        if game.is_terminal():
            return 0.0  # the mover's result is scored by the move that ended the game
        if depth == 0:
            return 0.0
        key = (game.key(), game.current_player(), depth)
        if key in self.memo:
            return self.memo[key]
        best = max(score for _, score in self._scores(game, depth))
        self.memo[key] = best
        return best

    def _scores(self, game: TurnBasedGame, depth: int | None) -> list[tuple[int, float]]:
        player = game.current_player()
        saved = game.clone()
        scores = []
        for move in legal_moves(game):
            game.step(move)
            if game.is_terminal():
                score = float(game.outcome()[player])
            else:
                score = -0.99 * self._value(game, None if depth is None else depth - 1)
            scores.append((move, score))
            game.restore(saved)
        return scores

    def __call__(self, game: TurnBasedGame) -> int:
        scores = self._scores(game, self.depth)
        best = max(score for _, score in scores)
        return self.rng.choice([move for move, score in scores if score >= best - 1e-9])


@dataclass
class MatchResult:
    """Wins, draws and losses of the first player passed to :func:`play_match`, from its seat.

    :param wins: games it won.
    :param draws: games drawn.
    :param losses: games it lost.
    :param moves: moves per game.
    """

    wins: int = 0
    draws: int = 0
    losses: int = 0
    moves: list[int] = field(default_factory=list)

    @property
    def games(self) -> int:
        return self.wins + self.draws + self.losses

    @property
    def win_rate(self) -> float:
        return self.wins / max(1, self.games)

    @property
    def score(self) -> float:
        """Wins plus half the draws, over the games."""
        return (self.wins + 0.5 * self.draws) / max(1, self.games)

    def __str__(self) -> str:
        return f"{self.wins} wins, {self.draws} draws, {self.losses} losses in {self.games} games"


def play_match(game: TurnBasedGame, player: Player, opponent: Player, games: int, seat: int = 0,
               seed: int | None = None) -> MatchResult:
    """Play ``games`` games of ``player`` in ``seat`` against ``opponent`` in the other seat
    (two-player games); count the results for ``player``.

    :param game: the game (a new one is spawned for each game; ``game`` is not moved).
    :param player: the player counted.
    :param opponent: the other.
    :param games: how many games.
    :param seat: 0 (moves first) or 1.
    :param seed: seed of each game's reset (game ``i`` gets ``seed + i``).
    """
    result = MatchResult()
    for i in range(games):
        board = game.spawn()
        board.reset(None if seed is None else seed + i)
        moves = 0
        while not board.is_terminal():
            mover = player if board.current_player() == seat else opponent
            action = int(mover(board))
            if not board.legal_actions()[action]:
                raise ValueError(f"{mover} played the illegal move {action}")
            board.step(action)
            moves += 1
        score = board.outcome()[seat]
        result.wins += int(score > 0)
        result.draws += int(score == 0)
        result.losses += int(score < 0)
        result.moves.append(moves)
    return result
