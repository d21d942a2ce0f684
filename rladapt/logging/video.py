"""Videos of evaluation episodes: the env's own frames (not the network's 84x84 input), as mp4
and optionally as an animated GIF.

The recording env is a fresh copy of the adapted chain whose base env renders ``rgb_array``
frames, with gymnasium's ``RecordVideo`` at the outside: RecordVideo records ``env.render()``,
which every wrapper forwards to the base env, so the video shows the game as people see it while
the agent still receives its adapted observations::

    RecordEpisodeVideo( <the adapted chain> ( base env, render_mode="rgb_array" ) )

Example:
    >>> agent.evaluate(env, episodes=3, video_dir="videos", gif=True)   # doctest: +SKIP
    >>> sorted(p.name for p in Path("videos").iterdir())               # doctest: +SKIP
    ['eval-episode-0.gif', 'eval-episode-0.mp4', 'eval-episode-1.gif', ...]
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import RecordVideo

__all__ = ["RecordEpisodeVideo", "recording_copy", "write_gif"]


def write_gif(frames: Sequence[np.ndarray], path: str | os.PathLike, fps: float = 30) -> Path:
    """Write RGB ``frames`` (``[H, W, 3]`` uint8) as an animated GIF that loops forever (Pillow).

    :param frames: the frames, in order.
    :param path: the file to write.
    :param fps: frames per second (GIF delays are whole milliseconds, at least 20).
    """
    from PIL import Image

    if not len(frames):
        raise ValueError("write_gif needs at least one frame")
    arrays = [np.asarray(frame, dtype=np.uint8) for frame in frames]
    # One 256-colour palette from a few frames spread over the episode, shared by every frame: several
    # times faster than a palette per frame, and no colour flicker between frames.
    sample = np.concatenate([arrays[i] for i in np.linspace(0, len(arrays) - 1, min(8, len(arrays))).astype(int)], 0)
    palette = Image.fromarray(sample).quantize(colors=256, method=Image.Quantize.FASTOCTREE)
    images = [Image.fromarray(a).quantize(palette=palette, dither=Image.Dither.NONE) for a in arrays]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    duration = max(20, round(1000 / fps))
    images[0].save(path, save_all=True, append_images=images[1:], duration=duration, loop=0)
    return path


class RecordEpisodeVideo(RecordVideo):
    """gymnasium's ``RecordVideo`` (one mp4 per recorded episode, via moviepy) that can also write
    each recording as an animated GIF. gymnasium has no GIF output; everything else is RecordVideo's.

    :param env: an env with ``render_mode="rgb_array"``.
    :param video_folder: where the files go.
    :param episodes: record the first this many episodes (None: every episode).
    :param gif: also write ``<name>.gif`` next to each ``<name>.mp4``.
    :param name_prefix: file name prefix (``<prefix>-episode-<i>.mp4``).
    :param fps: frames per second (default: the env's ``metadata["render_fps"]``, else 30).
    """

    def __init__(
        self,
        env: gym.Env,
        video_folder: str | os.PathLike,
        episodes: int | None = None,
        gif: bool = False,
        name_prefix: str = "eval",
        fps: int | None = None,
    ) -> None:
        trigger = (lambda episode: True) if episodes is None else (lambda episode: episode < episodes)
        super().__init__(env, str(video_folder), episode_trigger=trigger, name_prefix=name_prefix, fps=fps,
                         disable_logger=True)
        self.gif = gif
        #: Paths of the files written so far.
        self.files: list[Path] = []

    def finish(self) -> None:
        """Write the episode being recorded now, without closing the env."""
        if self.recording:
            self.stop_recording()

    def stop_recording(self) -> None:
        name, frames = self._video_name, self.recorded_frames
        super().stop_recording()
        if frames and name is not None:
            self.files.append(Path(self.video_folder) / f"{name}.mp4")
            if self.gif:
                self.files.append(write_gif(frames, Path(self.video_folder) / f"{name}.gif", self.frames_per_sec))


def rgb_copy(env: gym.Env) -> gym.Env:
    """A fresh copy of the adapted chain ``env`` whose base env renders ``rgb_array`` frames.

    ``gym.make(env.spec, render_mode="rgb_array")`` rebuilds the chain (every wrapper is in the
    spec); an env already rendering ``rgb_array`` without a spec is used as it is.

    :raises ValueError: when the env cannot render frames, naming the fix.
    """
    base = env.unwrapped
    modes = list(base.metadata.get("render_modes", []))
    if "rgb_array" not in modes:
        raise ValueError(
            f"{type(base).__name__} cannot render frames for a video: its render modes are {modes}, "
            f"without 'rgb_array'. Use render='ansi' (agent.play) to watch it in the terminal instead"
        )
    spec = env.spec
    if spec is not None and spec.entry_point is not None:
        return gym.make(spec, render_mode="rgb_array")
    if env.render_mode == "rgb_array":
        return env
    raise ValueError(
        f"cannot rebuild {type(base).__name__} with render_mode='rgb_array': it has no gymnasium spec. "
        f"Make it with render_mode='rgb_array' yourself, or register it with gymnasium.register(...)"
    )


def recording_copy(
    env: gym.Env,
    video_dir: str | os.PathLike,
    *,
    episodes: int | None = None,
    gif: bool = False,
    name_prefix: str = "eval",
) -> RecordEpisodeVideo:
    """A copy of the adapted ``env`` that records its episodes to ``video_dir`` (see
    :func:`rgb_copy` and :class:`RecordEpisodeVideo`). Close it to write the last video.

    :param env: the adapted env (an ``AutoAdapt`` env or a chain rebuilt from its spec).
    :param video_dir: the folder for the mp4 (and GIF) files.
    :param episodes: record the first this many episodes (None: all).
    :param gif: also write animated GIFs.
    :param name_prefix: file name prefix.
    :return: the recorder; ``recorder.owns_env`` is False when ``env`` itself is recorded (then
        ``finish()`` it rather than closing it).
    """
    copy = rgb_copy(env)
    fps: Any = copy.metadata.get("render_fps") or 30
    recorder = RecordEpisodeVideo(copy, video_dir, episodes=episodes, gif=gif, name_prefix=name_prefix, fps=int(fps))
    #: False when ``env`` itself is recorded (it already rendered frames and had no spec): the
    #: caller must not close it, only ``finish()`` the recording.
    recorder.owns_env = copy is not env
    return recorder
