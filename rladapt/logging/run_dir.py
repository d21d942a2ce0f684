"""The run directory: ``runs/<agent>-<env>-<time>/`` with ``config.json`` and ``metrics.jsonl``."""

from __future__ import annotations

import json
import math
import os
import re
import time
from pathlib import Path
from typing import Any


def default_run_dir(agent: str, env: str, root: str | os.PathLike = "runs") -> Path:
    """``runs/<agent>-<env>-<YYYYmmdd-HHMMSS>`` (a suffix is added if it exists)."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{agent}-{env}-{time.strftime('%Y%m%d-%H%M%S')}")
    path, i = Path(root) / name, 1
    while path.exists():
        i += 1
        path = Path(root) / f"{name}-{i}"
    return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return _jsonable(value.item())
    return repr(value)


class RunDirLogger:
    """Writes ``config.json`` once and one JSON line per ``log`` call to ``metrics.jsonl``.

    :param path: the run directory (created if missing).
    :param flush_every: seconds between flushes of ``metrics.jsonl`` (it is flushed on close too).
    """

    def __init__(self, path: str | os.PathLike, flush_every: float = 5.0) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path / "metrics.jsonl", "a", encoding="utf-8")
        self._flush_every, self._last_flush = flush_every, time.monotonic()

    def log_config(self, config: dict[str, Any]) -> None:
        tmp = self.path / "config.json.tmp"
        tmp.write_text(json.dumps(_jsonable(config), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.path / "config.json")

    def log(self, metrics: dict[str, Any], step: int) -> None:
        self._file.write(json.dumps(_jsonable({"step": step, **metrics})) + "\n")
        now = time.monotonic()
        if now - self._last_flush > self._flush_every:
            self._file.flush()
            self._last_flush = now

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
