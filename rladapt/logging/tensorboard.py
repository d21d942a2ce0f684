"""TensorBoard logger: every metric as a scalar on the env-step axis, the run's config as text
and as hyperparameters (the HParams tab), written with ``torch.utils.tensorboard``.

``agent.learn(env, steps, logger="tensorboard")`` writes the event files into
``<run_dir>/tensorboard/``; pass a :class:`TensorBoardLogger` for options::

    agent.learn(env, steps, logger=TensorBoardLogger("tb/ppo-pong"))
    # then: tensorboard --logdir runs/   (every run directory's tensorboard/ folder is one run)

Without a run directory (``run_dir=False``) the files go to
``runs/tensorboard/<agent>-<env>-<time>/``, the place SB3 users know as ``tensorboard_log``.
Needs the ``tensorboard`` package: ``pip install rladapt[tensorboard]``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from rladapt.logging.metadata import redact
from rladapt.logging.run_dir import default_run_dir

__all__ = ["TensorBoardLogger"]

#: Where event files go when the run has no run directory and no ``directory`` is given.
NO_RUN_DIR_ROOT = Path("runs") / "tensorboard"
#: Metrics the HParams tab shows beside each run's settings.
HPARAM_METRICS = ("rollout/return_mean", "eval/return_mean")


def _scalar(value: Any) -> float | None:
    """``value`` as a float when it is a number (numpy and 0-dim torch scalars included), else None."""
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, (int, float)):  # bool included: logged as 0 / 1
        return float(value)
    return None


def _hparam(value: Any) -> int | float | str | bool:
    """A setting as the HParams plugin takes it (numbers, strings and bools; the rest as JSON text)."""
    if isinstance(value, (bool, int, str)) or (isinstance(value, float) and math.isfinite(value)):
        return value
    return json.dumps(value)


class TensorBoardLogger:
    """Logs a training run to TensorBoard event files (a :class:`~rladapt.logging.Logger`).

    The writer opens at ``log_config`` (the first call of ``learn``), in ``directory``. Each
    ``log(metrics, step)`` row becomes one scalar per number, tagged with the metric's name
    (``rollout/return_mean``, ``train/policy_loss``, ``eval/return_mean`` ...) at env step
    ``step``: the same names and steps as ``metrics.jsonl``. Non-numeric values are left out.

    :param directory: where the event files go. None: ``<run_dir>/tensorboard``, or
        ``runs/tensorboard/<agent>-<env>-<time>`` when the run directory is off.
    :param flush_secs: seconds between writes of pending events to disk (all are written on close).
    :param log_hparams: also write the agent's settings to the HParams tab, so runs with
        different settings can be compared side by side.
    """

    def __init__(self, directory: str | os.PathLike | None = None, flush_secs: float = 10.0,
                 log_hparams: bool = True) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise ImportError(f"TensorBoardLogger needs the tensorboard package: pip install rladapt[tensorboard] ({e})") from e
        self._writer_class = SummaryWriter
        self.directory = Path(directory) if directory is not None else None
        self.flush_secs, self.log_hparams = flush_secs, log_hparams
        self.writer: Any = None

    def _open(self, config: dict[str, Any]) -> None:
        if self.directory is None:
            run_dir = config.get("run_dir")
            if run_dir:
                self.directory = Path(run_dir) / "tensorboard"
            else:
                self.directory = default_run_dir(str(config.get("agent", "run")).lower(), str(config.get("env", "env")),
                                                 root=NO_RUN_DIR_ROOT)
        self.writer = self._writer_class(log_dir=str(self.directory), flush_secs=self.flush_secs)

    def log_config(self, config: dict[str, Any]) -> None:
        """Open the writer, then write ``config`` (secrets redacted) as text under ``config``
        and its ``settings`` as hyperparameters."""
        config = redact(config)
        if self.writer is None:
            self._open(config)
        text = json.dumps(config, indent=2, default=repr)
        # TensorBoard's text tab renders markdown: indenting by four spaces keeps the JSON as code.
        self.writer.add_text("config", "\n".join("    " + line for line in text.splitlines()), global_step=0)
        settings = config.get("settings")
        if self.log_hparams and isinstance(settings, dict) and settings:
            from torch.utils.tensorboard.summary import hparams

            hparam_dict = {"agent": str(config.get("agent", "")), "env": str(config.get("env", "")),
                           **{key: _hparam(value) for key, value in settings.items()}}
            # Written into this run's own event file (SummaryWriter.add_hparams would start another run).
            for summary in hparams(hparam_dict, {name: 0.0 for name in HPARAM_METRICS}):
                self.writer.file_writer.add_summary(summary)

    def log(self, metrics: dict[str, Any], step: int) -> None:
        """Write every number in ``metrics`` as a scalar at env step ``step``."""
        if self.writer is None:
            self._open({})
        for key, value in metrics.items():
            number = _scalar(value)
            if number is not None:
                self.writer.add_scalar(key, number, global_step=step)

    def close(self) -> None:
        """Write everything pending and close the event file."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
