"""Learning curves from run directories: episode return against env steps, as a PNG.

Runs that differ only in their seed (same agent, env and settings) form one curve: the mean
across seeds, with the spread (min to max across seeds) shaded. Several such groups are overlaid.
Drawn with OpenCV and numpy (no plotting library needed)::

    rladapt plot runs/ppo-CartPole-v1-* runs/dqn-CartPole-v1-*

    >>> from rladapt.logging.plot import plot_runs
    >>> plot_runs(["runs/a", "runs/b"], "returns.png")    # doctest: +SKIP

The returns come from ``episodes.jsonl`` (one line per training episode) when present, else from
``rollout/return_mean`` in ``metrics.jsonl``; both are raw returns (before reward clipping or scaling).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

__all__ = ["Curve", "find_runs", "load_curve", "plot_runs"]

#: Line colours (BGR), the tab10 palette.
COLORS = [(180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148), (75, 86, 140),
          (194, 119, 227), (127, 127, 127), (34, 189, 188), (207, 190, 23)]
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_INK = (40, 40, 40)
_GRID = (225, 225, 225)


@dataclass
class Curve:
    """One run's learning curve.

    :param run_dir: the run directory.
    :param steps: env steps of the points, increasing.
    :param returns: the return at each point (smoothed by :func:`load_curve`).
    :param group: what the run is grouped by (agent, env, settings without the seed).
    :param label: a short name for the group.
    """

    run_dir: Path
    steps: np.ndarray
    returns: np.ndarray
    group: str
    label: str
    settings: dict[str, Any]


def find_runs(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Run directories in ``paths``: each path is a run directory (it holds ``metrics.jsonl``) or
    a folder of run directories (e.g. ``runs/``).

    :raises FileNotFoundError: when a path does not exist or holds no run.
    """
    runs: list[Path] = []
    for path in map(Path, paths):
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist")
        if (path / "metrics.jsonl").exists():
            runs.append(path)
            continue
        inside = sorted(p.parent for p in path.glob("*/metrics.jsonl"))
        if not inside:
            raise FileNotFoundError(f"{path} is not a run directory (no metrics.jsonl in it or in its subfolders)")
        runs.extend(inside)
    return runs


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut short by an interrupted run
    return rows


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average (shorter at the start)."""
    if window <= 1 or len(values) < 2:
        return values
    cumsum = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    start = np.maximum(0, idx - window)
    return (cumsum[idx] - cumsum[start]) / (idx - start)


def load_curve(run_dir: str | os.PathLike, smooth: int | None = None) -> Curve:
    """The learning curve of one run directory.

    :param run_dir: the run directory.
    :param smooth: episodes averaged per point (None: about a twentieth of the episodes, 1 to 100).
    :raises ValueError: when the run has no returns yet.
    """
    run_dir = Path(run_dir)
    config_path = run_dir / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.exists() else {}
    episodes = _read_jsonl(run_dir / "episodes.jsonl") if (run_dir / "episodes.jsonl").exists() else []
    points = [(row["step"], row["return"]) for row in episodes if row.get("return") is not None]
    episodic = bool(points)
    if not points:
        metrics = _read_jsonl(run_dir / "metrics.jsonl") if (run_dir / "metrics.jsonl").exists() else []
        points = [(row["step"], row["rollout/return_mean"]) for row in metrics if row.get("rollout/return_mean") is not None]
    if not points:
        raise ValueError(f"{run_dir} has no episode returns yet (no finished episode)")
    steps, returns = (np.asarray(v, dtype=np.float64) for v in zip(*points))
    order = np.argsort(steps, kind="stable")
    steps, returns = steps[order], returns[order]
    if episodic:
        window = smooth if smooth is not None else int(np.clip(len(returns) // 20, 1, 100))
        returns = _smooth(returns, window)
    settings = {k: v for k, v in (config.get("settings") or {}).items() if k != "seed"}
    agent, env = config.get("agent", "?"), config.get("env", run_dir.name)
    group = json.dumps([agent, env, settings], sort_keys=True, default=str)
    return Curve(run_dir, steps, returns, group, f"{agent} {env}", settings)


def _labels(groups: dict[str, list[Curve]]) -> dict[str, str]:
    """Group labels: ``agent env``, plus the settings that tell apart groups sharing that name."""
    labels = {}
    by_name: dict[str, list[str]] = {}
    for key, curves in groups.items():
        by_name.setdefault(curves[0].label, []).append(key)
    for name, keys in by_name.items():
        if len(keys) == 1:
            labels[keys[0]] = name
            continue
        settings = [groups[k][0].settings for k in keys]
        differing = sorted({s for st in settings for s in st if len({json.dumps(x.get(s), default=str) for x in settings}) > 1})
        for key, st in zip(keys, settings):
            extra = " ".join(f"{s}={st.get(s)}" for s in differing[:3])
            labels[key] = f"{name} {extra}".strip()
    return labels


def _nice_ticks(low: float, high: float, count: int = 6) -> np.ndarray:
    """Round tick values covering [low, high]."""
    if not math.isfinite(low) or not math.isfinite(high) or high <= low:
        high = low + 1.0
    raw = (high - low) / max(1, count - 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return np.arange(math.floor(low / step) * step, high + step * 0.5, step)


def _format_number(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1e6:
        return f"{value / 1e6:g}M"
    if abs(value) >= 1e3:
        return f"{value / 1e3:g}k"
    return f"{value:.4g}"


def _text(image: np.ndarray, text: str, origin: tuple[int, int], scale: float = 0.45, color: tuple[int, int, int] = _INK,
          align: str = "left", thickness: int = 1) -> None:
    (width, height), _ = cv2.getTextSize(text, _FONT, scale, thickness)
    x, y = origin
    if align == "center":
        x -= width // 2
    elif align == "right":
        x -= width
    cv2.putText(image, text, (int(x), int(y + height // 2)), _FONT, scale, color, thickness, cv2.LINE_AA)


def plot_runs(
    run_dirs: Sequence[str | os.PathLike],
    out: str | os.PathLike = "returns.png",
    *,
    width: int = 1000,
    height: int = 600,
    title: str | None = None,
    smooth: int | None = None,
    points: int = 200,
) -> Path:
    """Draw return against env steps for the runs, grouped across seeds, and save a PNG.

    :param run_dirs: run directories, or folders of run directories.
    :param out: the PNG file to write.
    :param width: image width in pixels.
    :param height: image height in pixels.
    :param title: the title (default: "episode return").
    :param smooth: episodes averaged per point (None: automatic).
    :param points: points per curve on the common step grid of a group.
    :return: the path written.
    :raises FileNotFoundError: when a path holds no run. :raises ValueError: when no run has returns.
    """
    if width < 300 or height < 200:
        raise ValueError(f"the plot needs at least 300x200 pixels, got {width}x{height}")
    curves = []
    for run in find_runs(run_dirs):
        try:
            curves.append(load_curve(run, smooth))
        except ValueError:
            continue
    if not curves:
        raise ValueError("none of the runs has finished an episode yet: nothing to plot")
    groups: dict[str, list[Curve]] = {}
    for curve in curves:
        groups.setdefault(curve.group, []).append(curve)
    labels = _labels(groups)

    # Each group on a common grid where all its runs have data: mean and spread across seeds.
    series = []
    for key, members in groups.items():
        lo = max(c.steps[0] for c in members)
        hi = min(c.steps[-1] for c in members)
        if hi <= lo:  # runs that do not overlap: the union, each run held at its ends
            lo, hi = min(c.steps[0] for c in members), max(c.steps[-1] for c in members)
        grid = np.linspace(lo, hi, points) if hi > lo else np.array([lo])
        values = np.stack([np.interp(grid, c.steps, c.returns) for c in members])
        series.append((labels[key], len(members), grid, values.mean(0), values.min(0), values.max(0)))

    x_max = max(float(s[2][-1]) for s in series)
    y_lo = min(float(s[4].min()) for s in series)
    y_hi = max(float(s[5].max()) for s in series)
    pad = 0.05 * (y_hi - y_lo) if y_hi > y_lo else max(1.0, abs(y_hi) * 0.1)
    x_ticks = _nice_ticks(0.0, x_max if x_max > 0 else 1.0)
    y_ticks = _nice_ticks(0.0 if y_lo >= 0 > y_lo - pad else y_lo - pad, y_hi + pad)  # no negative axis for positive returns
    x0, x1, y0, y1 = 0.0, float(x_ticks[-1]), float(y_ticks[0]), float(y_ticks[-1])

    image = np.full((height, width, 3), 255, dtype=np.uint8)
    left, right, top, bottom = 80, width - 20, 50, height - 60

    def px(x: np.ndarray | float) -> np.ndarray:
        return left + (np.asarray(x) - x0) / (x1 - x0) * (right - left)

    def py(y: np.ndarray | float) -> np.ndarray:
        return bottom - (np.asarray(y) - y0) / (y1 - y0) * (bottom - top)

    for tick in x_ticks:
        x = int(round(float(px(tick))))
        cv2.line(image, (x, top), (x, bottom), _GRID, 1)
        _text(image, _format_number(float(tick)), (x, bottom + 14), align="center")
    for tick in y_ticks:
        y = int(round(float(py(tick))))
        cv2.line(image, (left, y), (right, y), _GRID, 1)
        _text(image, _format_number(float(tick)), (left - 8, y), align="right")
    cv2.rectangle(image, (left, top), (right, bottom), _INK, 1)
    _text(image, "env steps", ((left + right) // 2, height - 22), scale=0.5, align="center")
    _text(image, title or "episode return", ((left + right) // 2, 22), scale=0.6, align="center", thickness=1)
    y_label = np.full((30, 160, 3), 255, dtype=np.uint8)
    _text(y_label, "return", (80, 12), scale=0.5, align="center")
    y_label = cv2.rotate(y_label, cv2.ROTATE_90_COUNTERCLOCKWISE)
    ly = (top + bottom) // 2 - y_label.shape[0] // 2
    image[ly : ly + y_label.shape[0], 4 : 4 + y_label.shape[1]] = np.minimum(image[ly : ly + y_label.shape[0], 4 : 4 + y_label.shape[1]], y_label)

    for i, (label, count, grid, mean, low, high) in enumerate(series):  # spreads first, lines over them
        if count > 1:
            xs = px(grid)
            band = np.concatenate([np.stack([xs, py(high)], 1), np.stack([xs[::-1], py(low)[::-1]], 1)])
            overlay = image.copy()
            cv2.fillPoly(overlay, [np.round(band).astype(np.int32)], COLORS[i % len(COLORS)], cv2.LINE_AA)
            image[:] = cv2.addWeighted(overlay, 0.2, image, 0.8, 0)
    for i, (label, count, grid, mean, low, high) in enumerate(series):
        color = COLORS[i % len(COLORS)]
        line = np.round(np.stack([px(grid), py(mean)], 1)).astype(np.int32)
        if len(line) == 1:
            cv2.circle(image, (int(line[0][0]), int(line[0][1])), 3, color, -1, cv2.LINE_AA)
        cv2.polylines(image, [line], False, color, 2, cv2.LINE_AA)

    # Legend, top left inside the axes.
    entries = [f"{label} ({count} seed{'s' if count > 1 else ''})" for label, count, *_ in series]
    text_width = max(cv2.getTextSize(e, _FONT, 0.45, 1)[0][0] for e in entries)
    box = (left + 10, top + 10, left + 10 + text_width + 44, top + 10 + 20 * len(entries) + 8)
    cv2.rectangle(image, box[:2], box[2:], (255, 255, 255), -1)
    cv2.rectangle(image, box[:2], box[2:], _GRID, 1)
    for i, entry in enumerate(entries):
        y = top + 24 + 20 * i
        cv2.line(image, (left + 18, y), (left + 42, y), COLORS[i % len(COLORS)], 2, cv2.LINE_AA)
        _text(image, entry, (left + 48, y))

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), image):
        raise ValueError(f"could not write {out} (the file name must end in .png)")
    return out
