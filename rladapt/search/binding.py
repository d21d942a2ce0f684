"""What the search agents share: the game they play, found from the env they are bound to.

An agent's ``game`` setting names the game (:data:`rladapt.search.game.GAMES`); left at None it is
filled in from the env the agent is first bound to (``learn``, ``evaluate``, ``play`` bind it),
so checkpoints and worker processes know it. Acting starts the search at the position the
observation shows (:meth:`~rladapt.search.game.TurnBasedGame.from_observation`).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from tensordict import TensorDictBase

from rladapt.search.game import GameError, TurnBasedGame, game_for, game_name, make_game
from rladapt.search.tree import best_move, visit_policy
from rladapt.types import ActionValues

__all__ = ["GameBinding"]


class GameBinding:
    """Mixin of the search agents: ``bind_env``, the game, the position of an observation, and
    acting by search (the agent supplies ``search_root(game, mask)``)."""

    _game: TurnBasedGame | None = None

    def reseed(self, seed: int | None) -> None:
        """Seed the search's random sources (tie-breaks, playouts, root noise, move draws): each
        worker process's copy gets its own seed, so workers do not play the same games."""
        self.rng = random.Random(seed)
        self.np_random = np.random.default_rng(seed)
        if seed is not None:
            self.generator.manual_seed(seed)

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

    def act_batch(self, td: TensorDictBase, deterministic: bool = False) -> TensorDictBase:
        """Search from the position of every observation of the batch: the most visited move
        (``deterministic``), else a move drawn in proportion to the visits."""
        return self._search_actions(td, deterministic, lenient=False)

    def explore(self, td: TensorDictBase) -> TensorDictBase:
        """Collection: as :meth:`act_batch`, except that an observation of a finished game (what
        a vector env's autoreset step shows; its action is ignored) gets the first valid action."""
        return self._search_actions(td, False, lenient=True)

    def _search_actions(self, td: TensorDictBase, deterministic: bool, lenient: bool) -> TensorDictBase:
        obs = td.get("observation").cpu().numpy()
        masks = td.get("action_mask", None)
        masks = None if masks is None else masks.cpu().numpy()
        actions = []
        for i in range(len(obs)):
            mask = None if masks is None else masks[i]
            try:
                game = self.position(obs[i])
                playable = not game.is_terminal() and bool(game.legal_actions().any())
            except GameError:
                if not lenient:
                    raise
                playable = False
            if not playable:
                if not lenient:
                    raise GameError(f"{type(self).__name__} got the observation of a finished game: there is no move to search for")
                actions.append(0 if mask is None or not mask.any() else int(np.flatnonzero(mask)[0]))
                continue
            actions.append(self.pick(self.search_root(game, mask), deterministic))
        td.set("action", torch.as_tensor(actions, dtype=torch.int64, device=td.device))
        return td

    def pick(self, root: Any, deterministic: bool) -> int:
        """The move a search's root says: the most visited (:func:`best_move`, ``deterministic``),
        else one drawn in proportion to the visits."""
        if deterministic:
            return best_move(root)
        policy = visit_policy(root, int(self.action_space.n))
        return int(self.np_random.choice(len(policy), p=policy))

    def search_observation_root(self, obs: Any, mask: np.ndarray | None = None) -> Any:
        """The root of a search from the position ``obs`` shows (the mask's moves at the root)."""
        return self.search_root(self.position(obs), mask)

    def action_values(self, obs: Any, mask: np.ndarray | None = None) -> ActionValues:
        """The share of the search's visits of every move (the terminal view of ``play``)."""
        root = self.search_observation_root(obs, mask)
        return ActionValues(visit_policy(root, int(self.action_space.n)), "prob")

    def act_and_values(self, obs: Any, mask: np.ndarray | None = None, deterministic: bool = True,
                       state: Any = None) -> tuple[int, ActionValues, None]:
        """One search from ``obs``: the move it picks and its share of visits of every move, so the
        view shown is the search the move came from (two calls would search twice, and a search
        with random playouts or ties can differ between runs)."""
        if state is not None:
            raise TypeError(f"{type(self).__name__} carries no state between moves; got one")
        root = self.search_observation_root(obs, mask)
        move = self.pick(root, deterministic)
        return int(self.env_action(np.asarray([move]))[0]), ActionValues(visit_policy(root, int(self.action_space.n)), "prob"), None
