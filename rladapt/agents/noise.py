"""Temporally correlated exploration noise for continuous actions.

White (independent) Gaussian noise averages out over a few steps: a car that must rock back and
forth to climb a hill (MountainCarContinuous) never builds up momentum and learns to stand still.
Colored noise keeps the noise's per-step distribution (a unit Gaussian) but correlates it in time,
with power spectrum ``1 / f**beta``: ``beta = 0`` is white noise, ``beta = 1`` pink, ``beta = 2``
red (Brownian-like). Pink noise is a good default across tasks (Eberhard et al. 2023, "Pink Noise
Is All You Need: Colored Noise Exploration in Deep Reinforcement Learning", ICLR).

Each env gets its own sequence, generated ``length`` steps at a time with the spectral method
(Timmer & Koenig 1995) and restarted at every episode start, so the noise stays a function of the
env's own episode.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from tensordict import TensorDictBase

if TYPE_CHECKING:  # the agents import this module
    from rladapt.agents.base import Agent

__all__ = ["ColoredNoise", "colored_noise", "exploration_noise"]


def colored_noise(beta: float, shape: tuple[int, ...], length: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian sequences ``[*shape, length]`` with power spectrum ``1 / f**beta`` and unit variance.

    :param beta: the spectrum's exponent (0: white, 1: pink, 2: red).
    :param shape: how many sequences (leading dims).
    :param length: steps per sequence.
    :param rng: numpy generator.
    """
    if beta == 0 or length < 2:
        return rng.standard_normal(shape + (length,)).astype(np.float32)
    f = np.fft.rfftfreq(length)
    f[0] = f[1]  # no infinite power at frequency 0: the lowest frequency's instead
    scale = f ** (-beta / 2.0)
    real = rng.standard_normal(shape + (f.size,)) * scale
    imag = rng.standard_normal(shape + (f.size,)) * scale
    imag[..., 0] = 0.0  # the mean (and, for an even length, the Nyquist term) is real
    if length % 2 == 0:
        imag[..., -1] = 0.0
    series = np.fft.irfft(real + 1j * imag, n=length, axis=-1)
    # The variance the spectrum implies, so every step is a unit Gaussian whatever beta.
    weights = np.full(f.size, 4.0)  # a pair of conjugate terms: 2 Re(X e^{i w t}), variance 4 s^2
    weights[0] = 1.0
    if length % 2 == 0:
        weights[-1] = 1.0
    variance = np.sum(weights * scale**2) / length**2
    return (series / np.sqrt(variance)).astype(np.float32)


class ColoredNoise:
    """Colored Gaussian noise for a batch of envs: one sequence per env and action dimension,
    restarted where an episode starts.

    Example:
        >>> noise = ColoredNoise(beta=1.0, dim=2, seed=0)
        >>> noise(np.array([True, True])).shape      # the first step of two envs' episodes
        (2, 2)

    :param beta: the spectrum's exponent (0: white, 1: pink, 2: red).
    :param dim: action dimensions.
    :param length: steps generated at a time (longer than most episodes: the correlation reaches
        across them).
    :param seed: seed of the noise's own generator.
    """

    def __init__(self, beta: float, dim: int, length: int = 1000, seed: int | None = None) -> None:
        self.beta, self.dim, self.length = float(beta), int(dim), int(length)
        self.rng = np.random.default_rng(seed)
        self._sequences: np.ndarray | None = None  # [envs, dim, length]
        self._position = np.zeros(0, dtype=np.int64)

    def __call__(self, episode_start: np.ndarray) -> np.ndarray:
        """The next noise ``[envs, dim]``; envs whose ``episode_start`` is True start a new sequence."""
        start = np.asarray(episode_start, dtype=bool).reshape(-1)
        n = start.size
        if self._sequences is None or self._sequences.shape[0] != n:
            self._sequences = np.empty((n, self.dim, self.length), dtype=np.float32)
            self._position = np.full(n, self.length, dtype=np.int64)
        fresh = start | (self._position >= self.length)
        if fresh.any():
            rows = np.flatnonzero(fresh)
            self._sequences[rows] = colored_noise(self.beta, (rows.size, self.dim), self.length, self.rng)
            self._position[rows] = 0
        out = self._sequences[np.arange(n), :, self._position]
        self._position += 1
        return out


def exploration_noise(agent: Agent, td: TensorDictBase, beta: float, dim: int) -> torch.Tensor:
    """The next colored noise ``[B, dim]`` for the batch an agent explores on, restarted where
    ``td["is_init"]`` marks an episode start. The noise's state is acting state of this copy of
    the agent (each worker process has its own), seeded from the agent's generator, not saved."""
    noise = getattr(agent, "_exploration_noise", None)
    if noise is None or noise.beta != beta or noise.dim != dim:
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=agent.generator))
        noise = agent._exploration_noise = ColoredNoise(beta, dim, seed=seed)
    starts = td.get("is_init", None)
    starts = starts.cpu().numpy() if starts is not None else np.zeros(td.shape[0], dtype=bool)
    return torch.from_numpy(noise(starts)).to(agent.device)
