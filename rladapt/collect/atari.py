"""The Atari fast path: ale-py's C++ vector env with the semantics of AutoAdapt's Atari pipeline.

When an adapted env is exactly AutoAdapt's standard Atari chain (its plan's rules: space checks ->
episode statistics -> Atari preprocessing -> optional reward clipping -> optional frame stack, over a
grayscale, ``frameskip=1`` ``AtariEnv``), a collection worker can step its envs with
``ale_py.vector_env.AtariVectorEnv`` instead of a gymnasium vector env of Python wrapper chains:
preprocessing and stacking run in C++, with no Python wrapper per env step.

:class:`AtariPipelineVectorEnv` wraps it so that what the collector sees matches the Python
pipeline:

- observations: uint8 ``(stack, height, width)`` (``(height, width)`` without stacking), the same
  frames (grayscale, resized with area interpolation, max-pooled over the last two skipped
  frames). ale-py pads a fresh stack with zero frames; ``FrameStack`` (``padding_type="reset"``)
  repeats the first frame. The padding is rewritten to match, so every observation equals the
  Python pipeline's for the same emulator state (checked frame for frame in the tests).
- rewards: ale-py returns the raw score change (``reward_clipping=False``); the episode statistics
  are summed on it, then rewards are clipped to [-1, 1] when the plan clips, as ``ClipReward`` does.
- ``info["episode"]`` (``r`` raw return, ``l`` length in emulator frames, as ``EpisodeStatistics``
  innermost in the chain counts them) and the ``info["_episode"]`` mask, as gymnasium's vector
  envs report them.

What differs from the Python chain: the random streams. No-op starts (uniform in 1..noop_max) and
sticky actions come from ale-py's own generators, so the same seed gives other episodes than the
Python chain (the same distribution). With ``noop_max=0`` and no sticky actions the two are
identical step for step. Errors inside the C++ envs carry no env index.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

#: ``AtariPreprocessing`` arguments the fast path reproduces exactly.
_PREPROCESSING_DEFAULTS = {"grayscale_obs": True, "grayscale_newaxis": False, "scale_obs": False, "terminal_on_life_loss": False}
#: The plan rules that may follow the Atari preprocessing in a chain the fast path reproduces.
STANDARD_TAILS = ([], ["atari_clip_rewards"], ["atari_frame_stack"], ["atari_clip_rewards", "atari_frame_stack"])


def atari_fast_path(env: Any) -> dict[str, Any] | None:
    """The ``AtariVectorEnv`` settings equivalent to an adapted env, or None when the env is not
    exactly AutoAdapt's standard Atari pipeline (or ale-py's vector env is missing).

    What the chain is comes from the AutoAdapt plan's rule ids (``env.plan.rules``), never from
    wrapper class names; the base env's settings come from its gymnasium spec.

    :param env: the adapted env (an ``AutoAdapt`` env, whose ``plan`` lists the chain).
    :return: keyword arguments for :class:`AtariPipelineVectorEnv` (without ``num_envs``).
    """
    plan, spec = getattr(env, "plan", None), getattr(env, "spec", None)
    if plan is None or spec is None or spec.entry_point != "ale_py.env:AtariEnv" or spec.max_episode_steps is not None:
        return None
    rules = plan.rules
    if rules[:3] != ["enforce_spaces", "episode_statistics", "atari_preprocessing"] or rules[3:] not in STANDARD_TAILS:
        return None
    if len(spec.additional_wrappers) != len(rules):  # wrappers of the user's own inside the chain
        return None
    try:
        from ale_py.vector_env import AtariVectorEnv  # noqa: F401
    except ImportError:  # pragma: no cover - older ale-py
        return None
    kwargs = dict(spec.kwargs)
    if (
        kwargs.get("frameskip", 1) != 1
        or kwargs.get("obs_type", "rgb") not in ("grayscale", "rgb")
        or kwargs.get("continuous", False)
        or kwargs.get("mode") is not None
        or kwargs.get("difficulty") is not None
        or kwargs.get("render_mode") is not None
        or kwargs.get("sound_obs", False)
    ):
        return None
    prep = plan.step("atari_preprocessing").params
    if any(prep.get(k, v) != v for k, v in _PREPROCESSING_DEFAULTS.items()):
        return None
    clip = plan.step("atari_clip_rewards")
    if clip is not None and (clip.params.get("min_reward"), clip.params.get("max_reward")) != (-1.0, 1.0):
        return None
    stack = plan.step("atari_frame_stack")
    stack_params = stack.params if stack is not None else {"stack_size": 1, "padding_type": "reset"}
    if stack_params.get("padding_type", "reset") not in ("reset", "zero"):
        return None
    size = prep.get("screen_size", 84)
    width, height = (size, size) if isinstance(size, int) else size
    return {
        "game": kwargs["game"],
        "frame_skip": int(prep.get("frame_skip", 4)),
        "noop_max": int(prep.get("noop_max", 30)),
        "height": int(height),
        "width": int(width),
        "stack": int(stack_params["stack_size"]),
        "pad_with_reset": stack_params.get("padding_type", "reset") == "reset",
        "clip_rewards": clip is not None,
        "repeat_action_probability": float(kwargs.get("repeat_action_probability", 0.25)),
        "full_action_space": bool(kwargs.get("full_action_space", False)),
        "max_frames": int(kwargs.get("max_num_frames_per_episode", 108_000) or 108_000),
    }


class AtariPipelineVectorEnv(gym.vector.VectorEnv):
    """``ale_py.vector_env.AtariVectorEnv`` with AutoAdapt's Atari pipeline semantics (see the
    module docstring for exactly what matches and what differs).

    Example:
        >>> settings = atari_fast_path(AutoAdapt("ALE/Pong-v5", PPO()))   # doctest: +SKIP
        >>> envs = AtariPipelineVectorEnv(num_envs=4, **settings)         # doctest: +SKIP
        >>> envs.single_observation_space                                 # doctest: +SKIP
        Box(0, 255, (4, 84, 84), uint8)

    :param num_envs: number of envs.
    :param game: ROM name (snake case, ``"pong"``).
    :param frame_skip: frames per agent step (max-pooled over the last two).
    :param noop_max: at most this many no-ops after each reset.
    :param height: observation height.
    :param width: observation width.
    :param stack: frames stacked (1: no stacking, observations ``(height, width)``).
    :param pad_with_reset: fill a fresh stack with copies of the first frame (``FrameStack``'s
        ``"reset"`` padding) instead of zeros.
    :param clip_rewards: clip rewards to [-1, 1] (after the episode statistics).
    :param repeat_action_probability: sticky actions.
    :param full_action_space: use all 18 actions.
    :param max_frames: emulator frames after which an episode is truncated.
    :param num_threads: C++ threads stepping the envs (1: one core, the worker's own).
    """

    def __init__(
        self,
        num_envs: int,
        *,
        game: str,
        frame_skip: int = 4,
        noop_max: int = 30,
        height: int = 84,
        width: int = 84,
        stack: int = 4,
        pad_with_reset: bool = True,
        clip_rewards: bool = True,
        repeat_action_probability: float = 0.25,
        full_action_space: bool = False,
        max_frames: int = 108_000,
        num_threads: int = 1,
    ) -> None:
        from ale_py.vector_env import AtariVectorEnv

        self.ale = AtariVectorEnv(
            game, num_envs, num_threads=num_threads, frameskip=frame_skip, stack_num=stack, img_height=height,
            img_width=width, grayscale=True, maxpool=True, noop_max=noop_max, episodic_life=False,
            reward_clipping=False, use_fire_reset=False, repeat_action_probability=repeat_action_probability,
            full_action_space=full_action_space, max_num_frames_per_episode=max_frames,
            autoreset_mode=AutoresetMode.NEXT_STEP,
        )
        self.num_envs = num_envs
        self.stack, self.flat = stack, stack == 1
        shape = (height, width) if self.flat else (stack, height, width)
        self.single_observation_space = gym.spaces.Box(0, 255, shape, np.uint8)
        self.single_action_space = self.ale.single_action_space
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self.metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}
        self.pad_with_reset, self.clip_rewards = pad_with_reset and stack > 1, clip_rewards
        self._returns = np.zeros(num_envs, dtype=np.float64)
        self._since_reset = np.zeros(num_envs, dtype=np.int64)  # agent steps since each env's reset
        self._autoreset = np.zeros(num_envs, dtype=bool)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.ale.reset(seed=seed, options=options)
        self._returns[:] = 0.0
        self._since_reset[:] = 0
        self._autoreset[:] = False
        return self._observation(obs), {}

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        actions = np.asarray(actions)
        if actions.dtype != np.int64 and actions.dtype != np.int32:
            actions = actions.astype(np.int64)
        obs, reward, terminated, truncated, info = self.ale.step(actions.reshape(self.num_envs))
        reward = reward.astype(np.float32)
        reset_rows = self._autoreset  # this step returned their reset observation (NEXT_STEP)
        self._since_reset += 1
        self._since_reset[reset_rows] = 0
        self._returns[reset_rows] = 0.0
        self._returns += reward
        done = terminated | truncated
        out: dict[str, Any] = {}
        if done.any():
            out["episode"] = {
                "r": np.where(done, self._returns, 0.0),
                "l": np.where(done, info["episode_frame_number"], 0).astype(np.int64),
            }
            out["_episode"] = done.copy()
        self._autoreset = done
        if self.clip_rewards:
            np.clip(reward, -1.0, 1.0, out=reward)
        return self._observation(obs), reward, terminated, truncated, out

    def _observation(self, obs: np.ndarray) -> np.ndarray:
        """Rewrite ale-py's zero padding of young stacks as ``FrameStack``'s reset padding."""
        if self.flat:
            return obs[:, 0]
        if self.pad_with_reset:
            young = np.flatnonzero(self._since_reset < self.stack - 1)
            for i in young:
                first = self.stack - 1 - int(self._since_reset[i])  # the first real frame
                obs[i, :first] = obs[i, first]
        return obs

    def close_extras(self, **kwargs: Any) -> None:
        self.ale.close() if hasattr(self.ale, "close") else None
