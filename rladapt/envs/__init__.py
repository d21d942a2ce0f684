"""Small example envs, registered with gymnasium on import.

* ``rladapt/Grid-v0`` (:class:`GridEnv`): the 4x3 grid world of Russell & Norvig.
  Observation ``Discrete(12)``, action ``Discrete(4)``; ends at the goal or pit, truncated at 100 steps.
* ``rladapt/Shower-v0`` (:class:`ShowerEnv`): keep the water in [37, 39] degrees.
  Observation ``Box(0, 100, (1,), float32)``, action ``Discrete(3)``; truncated at exactly 60 steps.
* ``rladapt/TicTacToe-v0`` (:class:`TicTacToeEnv`): X against a random or heuristic O, with
  ``action_masks()``. Observation ``Box(-1, 1, (9,), float32)``, action ``Discrete(9)``; ends with
  the game (win, loss, draw, or a move onto an occupied cell).
* ``rladapt/HybridReach-v0`` (:class:`HybridReachEnv`): reach a target on the unit square in a
  few strides. Hybrid action ``Dict(direction: Discrete(4), strength: Box(0, 1, (1,)))`` with a
  per-leaf mask (``action_masks()`` and ``info["action_mask"]``); observation ``Box(-1, 1, (4,))``;
  ends at the target, truncated at 10 strides.
* ``rladapt/Reach-v0`` (:class:`ReachEnv`): the same with a continuous heading,
  ``Dict(heading: Box(-1, 1, (2,)), strength: Box(0, 1, (1,)))``.
* ``rladapt/CartPoleNoVel-v1``, ``rladapt/PendulumNoVel-v1``: rl-zoo's classic control without
  velocities (:class:`HideVelocity`): observations ``[x, theta]`` and ``[cos theta, sin theta]``;
  a feed-forward policy cannot see how things move, a recurrent one (``PPO(recurrent="lstm")``) can.
* ``rladapt/MaskedMemory-v0`` (:class:`MaskedMemoryEnv`): a cue at the first step, then a delay
  with random legal moves, then pick the cue from two legal symbols; ``info["action_mask"]``.
  Observation ``Box(0, 1, (6,), float32)``, action ``Discrete(4)``; 6 steps.

Each env names its actions in ``env.unwrapped.action_names`` and renders ``"ansi"`` text.

>>> import gymnasium as gym
>>> import rladapt.envs
>>> env = gym.make("rladapt/Grid-v0")

Registration is idempotent: ids already in ``gymnasium.registry`` are left alone, so importing this
module again (or reloading it) is harmless.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from rladapt.envs.grid import GridEnv
from rladapt.envs.memory import MaskedMemoryEnv
from rladapt.envs.no_velocity import HideVelocity
from rladapt.envs.reach import HybridReachEnv, ReachEnv
from rladapt.envs.shower import ShowerEnv
from rladapt.envs.tictactoe import TicTacToeEnv

__all__ = ["GridEnv", "HideVelocity", "HybridReachEnv", "MaskedMemoryEnv", "ReachEnv", "ShowerEnv", "TicTacToeEnv",
           "ENV_IDS", "register_envs"]

_REGISTRATIONS: dict[str, dict[str, Any]] = {
    "rladapt/Grid-v0": {"entry_point": "rladapt.envs.grid:GridEnv", "max_episode_steps": 100},
    "rladapt/Shower-v0": {"entry_point": "rladapt.envs.shower:ShowerEnv", "max_episode_steps": 60},
    "rladapt/TicTacToe-v0": {"entry_point": "rladapt.envs.tictactoe:TicTacToeEnv"},
    "rladapt/HybridReach-v0": {"entry_point": "rladapt.envs.reach:HybridReachEnv", "max_episode_steps": 10},
    "rladapt/Reach-v0": {"entry_point": "rladapt.envs.reach:ReachEnv", "max_episode_steps": 10},
    "rladapt/CartPoleNoVel-v1": {"entry_point": "rladapt.envs.no_velocity:cartpole_no_velocity",
                                 "max_episode_steps": 500, "reward_threshold": 475.0},
    "rladapt/PendulumNoVel-v1": {"entry_point": "rladapt.envs.no_velocity:pendulum_no_velocity",
                                 "max_episode_steps": 200},
    "rladapt/MaskedMemory-v0": {"entry_point": "rladapt.envs.memory:MaskedMemoryEnv"},
}

ENV_IDS: tuple[str, ...] = tuple(_REGISTRATIONS)
"""The ids this package registers."""


def register_envs() -> None:
    """Register every env in :data:`ENV_IDS` with gymnasium, skipping ids already registered."""
    for env_id, kwargs in _REGISTRATIONS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, **kwargs)


register_envs()
