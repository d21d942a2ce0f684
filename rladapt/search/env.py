"""A turn-based game as a gymnasium env whose caller plays every seat (the self-play view).

The search agents train on the game itself (:mod:`rladapt.search.selfplay`); this env is what
``learn``, ``evaluate``, ``AutoAdapt`` and the CLI step: each ``step`` plays the move of the
player to move, the observation is the next mover's, the reward is the result of the player who
just moved. Seats against opponents (the learner holds one seat) are a different view, that of
the multi-player wrappers.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rladapt.search.game import PettingZooGame, TurnBasedGame

__all__ = ["GameEnv"]


class GameEnv(gym.Env):
    """A :class:`~rladapt.search.game.TurnBasedGame` as a gymnasium env: the caller moves for
    whoever is to move.

    ## Observation space

    ``Box`` of the game's observation shape (the player to move's view; -1..1 for rladapt's
    TicTacToe, the 0/1 piece planes for PettingZoo's board games).

    ## Action space

    ``Discrete(game.num_actions)``; ``action_masks()`` gives the legal moves (sb3-contrib
    convention: AutoAdapt turns it into ``info["action_mask"]``).

    ## Rewards

    At the end, the result of the player who made the last move (+1 win, -1 loss, 0 draw), 0
    before. ``info["current_player"]`` is the player to move, ``info["outcome"]`` the results per
    player once the game is over.

    Example:
        >>> from pettingzoo.classic import connect_four_v3
        >>> env = GameEnv.pettingzoo(connect_four_v3.env())
        >>> obs, info = env.reset(seed=0)
        >>> obs.shape, info["current_player"]
        ((6, 7, 2), 0)

    :param game: the game (a new one is spawned; ``game`` is not moved).
    """

    metadata = {"render_modes": []}

    def __init__(self, game: TurnBasedGame) -> None:
        self.game = game.spawn()
        obs = self.game.observation()
        low, high = (-1.0, 1.0) if obs.dtype.kind == "f" else (0, 1)
        self.observation_space = spaces.Box(low, high, obs.shape, obs.dtype)
        self.action_space = spaces.Discrete(self.game.num_actions)
        self.action_names = tuple(getattr(self.game, "action_names", ()) or ())

    @classmethod
    def pettingzoo(cls, env: Any) -> "GameEnv":
        """The env over a PettingZoo AEC game (``connect_four_v3.env()``)."""
        return cls(PettingZooGame(env))

    def _info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"current_player": -1 if self.game.is_terminal() else self.game.current_player()}
        if self.game.is_terminal():
            info["outcome"] = self.game.outcome()
        return info

    def backup(self) -> Any:
        """The position and the env's RNG (the SRL name: ``AutoAdapt(...).get_state()`` uses it)."""
        return self.game.clone(), self.np_random.bit_generator.state

    def restore(self, state: Any) -> None:
        """Go back to a :meth:`backup`."""
        position, rng = state
        self.game.restore(position)
        self.np_random.bit_generator.state = rng

    def action_masks(self) -> np.ndarray:
        """The legal moves of the player to move (all True once the game is over)."""
        if self.game.is_terminal():
            return np.ones(self.game.num_actions, dtype=bool)
        return self.game.legal_actions()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.game.reset(seed)
        return self.game.observation().copy(), self._info()

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self.game.is_terminal():
            raise RuntimeError("GameEnv.step() called after the game ended; call reset() first")
        mover = self.game.current_player()
        self.game.step(int(action))
        done = self.game.is_terminal()
        reward = float(self.game.outcome()[mover]) if done else 0.0
        return self.game.observation().copy(), reward, done, False, self._info()
