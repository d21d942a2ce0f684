"""Episode statistics on the env's own rewards."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
from gymnasium.wrappers import RecordEpisodeStatistics


class EpisodeStatistics(RecordEpisodeStatistics):
    """gymnasium's ``RecordEpisodeStatistics`` without the wall-clock ``t`` entry: at an episode's
    end ``info["episode"]`` holds the return ``r`` and length ``l`` only. The elapsed time differs
    between two runs of the same seed, which breaks ``check_env``'s determinism check and makes
    logged infos irreproducible; the training loop measures time itself.

    Example:
        >>> import gymnasium as gym
        >>> env = EpisodeStatistics(gym.make("Blackjack-v1"))
        >>> _ = env.reset(seed=1)
        >>> env.step(0)[4]
        {'episode': {'r': 1.0, 'l': 1}}

    :param env: the env to wrap.
    :param buffer_length: how many recent episodes ``return_queue``/``length_queue`` keep.
    :param stats_key: the info key of the statistics.
    """

    def __init__(self, env: gym.Env, buffer_length: int = 100, stats_key: str = "episode") -> None:
        super().__init__(env, buffer_length=buffer_length, stats_key=stats_key)

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = super().step(action)
        if terminated or truncated:
            info[self._stats_key].pop("t", None)
        return obs, reward, terminated, truncated, info
