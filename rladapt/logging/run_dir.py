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
    """``runs/<agent>-<env>-<YYYYmmdd-HHMMSS>`` (a suffix is added if it exists), created here:
    claiming it with one ``mkdir`` keeps two runs started in the same second (the groups of
    ``learn_groups``, in threads; two processes) out of each other's directory."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{agent}-{env}-{time.strftime('%Y%m%d-%H%M%S')}")
    Path(root).mkdir(parents=True, exist_ok=True)
    path, i = Path(root) / name, 1
    while True:
        try:
            path.mkdir()
            return path
        except FileExistsError:
            i += 1
            path = Path(root) / f"{name}-{i}"


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


class JsonlAppender:
    """Appends one JSON line per :meth:`write`, each as a single ``os.write`` on an ``O_APPEND``
    file descriptor: a process killed at any moment (SIGKILL included) leaves whole lines only,
    and every line written is in the file at once (nothing waits in a Python buffer).

    :param path: the ``.jsonl`` file (created if missing).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, row: dict[str, Any]) -> None:
        """Append ``row`` as one line."""
        if self._fd is None:
            raise ValueError(f"{self.path} is closed")
        data = (json.dumps(_jsonable(row)) + "\n").encode("utf-8")
        while data:  # a regular file takes the whole line at once; the loop guards against short writes
            data = data[os.write(self._fd, data):]

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @property
    def closed(self) -> bool:
        return self._fd is None


def truncate_jsonl(path: str | os.PathLike, after_step: int) -> int:
    """Drop the rows of a ``.jsonl`` file whose ``step`` is beyond ``after_step``, and a torn last
    line (no newline, or not JSON): what a run resumed from its checkpoint at ``after_step``
    writes again. The file is rewritten atomically; a missing file is left missing.

    :param path: the file (``metrics.jsonl``, ``episodes.jsonl``).
    :param after_step: the env step of the checkpoint the run resumes from.
    :return: the number of lines dropped.
    """
    path = Path(path)
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_bytes().splitlines(keepends=True):
        try:
            row = json.loads(line) if line.endswith(b"\n") else None
        except ValueError:
            row = None
        if isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] <= after_step:
            kept.append(line)
        else:
            dropped += 1
    if dropped:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(b"".join(kept))
        os.replace(tmp, path)
    return dropped


class RunDirLogger:
    """Writes ``config.json`` once and one JSON line per ``log`` call to ``metrics.jsonl``.

    Each line is one ``os.write`` (:class:`JsonlAppender`): a killed run leaves no torn line, and
    the lines up to its last checkpoint are there to resume from.

    :param path: the run directory (created if missing).
    :param resume_step: the run resumes from its checkpoint at this env step: rows beyond it
        (and a torn last line) are first dropped from ``metrics.jsonl`` and ``episodes.jsonl``,
        since the resumed run writes them again. None: append to what is there.
    """

    def __init__(self, path: str | os.PathLike, resume_step: int | None = None) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        if resume_step is not None:
            for name in ("metrics.jsonl", "episodes.jsonl"):
                truncate_jsonl(self.path / name, resume_step)
        self._file = JsonlAppender(self.path / "metrics.jsonl")

    def log_config(self, config: dict[str, Any]) -> None:
        tmp = self.path / "config.json.tmp"
        tmp.write_text(json.dumps(_jsonable(config), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.path / "config.json")

    def log(self, metrics: dict[str, Any], step: int) -> None:
        self._file.write({"step": step, **metrics})

    def close(self) -> None:
        self._file.close()
