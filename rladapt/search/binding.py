"""What the search agents share: the game they play, found from the env they are bound to.

An agent's ``game`` setting names the game (:data:`rladapt.search.game.GAMES`); left at None it is
filled in from the env the agent is first bound to (``learn``, ``evaluate``, ``play`` bind it),
so checkpoints and worker processes know it. Acting starts the search at the position the
observation shows (:meth:`~rladapt.search.game.TurnBasedGame.from_observation`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rladapt.search.game import TurnBasedGame, game_for, game_name, make_game

__all__ = ["GameBinding"]


class GameBinding:
    """Mixin of the search agents: ``bind_env``, the game, and the position of an observation."""

    _game: TurnBasedGame | None = None

    def bind_env(self, env: Any) -> None:
        """Bind the agent to the game behind ``env`` (:func:`rladapt.search.game.game_for`),
        recording its name in the ``game`` setting when that is None.

        :param env: the adapted env (or a game).
        """
        if self.config.game is None:
            game = game_for(env)
            self.config.game = self.hp.game = game_name(game)
            self._game = game

    @property
    def game(self) -> TurnBasedGame:
        """A game of the agent's kind (a template: positions are spawned from it)."""
        if self._game is None:
            if self.config.game is None:
                raise RuntimeError(f"{type(self).__name__} knows no game yet: learn, evaluate or play on an env first, "
                                   f"or set game= (one of rladapt.search.game.GAMES)")
            self._game = make_game(self.config.game)
        return self._game

    def position(self, observation: Any) -> TurnBasedGame:
        """The game at the position ``observation`` shows (the player to move is the agent)."""
        return self.game.from_observation(np.asarray(observation))
