"""Where training metrics go: the run directory always, plus an optional logger.

A logger is any object with three methods (see :class:`Logger`), so a W&B or TensorBoard logger
only implements those::

    log_config(config: dict) -> None       # once, before training
    log(metrics: dict, step: int) -> None  # after each update
    close() -> None

and optionally ``log_video(path, step, key)`` (evaluation videos) and ``log_checkpoint(path)``
(the final checkpoint).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from rladapt.logging.progress import ProgressBar
from rladapt.logging.run_dir import RunDirLogger, default_run_dir

__all__ = ["Logger", "RunDirLogger", "MultiLogger", "ProgressBar", "default_run_dir", "make_logger"]


@runtime_checkable
class Logger(Protocol):
    """The logger interface the training loop talks to."""

    def log_config(self, config: dict[str, Any]) -> None: ...

    def log(self, metrics: dict[str, Any], step: int) -> None: ...

    def close(self) -> None: ...


class MultiLogger:
    """Sends everything to several loggers, in order."""

    def __init__(self, loggers: list[Logger]) -> None:
        self.loggers = loggers

    def log_config(self, config: dict[str, Any]) -> None:
        for logger in self.loggers:
            logger.log_config(config)

    def log(self, metrics: dict[str, Any], step: int) -> None:
        for logger in self.loggers:
            logger.log(metrics, step)

    def log_video(self, path: Path, step: int, key: str = "eval/video") -> None:
        """Hand a video file to the loggers that take videos (``log_video(path, step, key)``)."""
        for logger in self.loggers:
            if callable(getattr(logger, "log_video", None)):
                logger.log_video(path, step, key)

    def log_checkpoint(self, path: Path) -> None:
        """Hand the final checkpoint to the loggers that store them (``log_checkpoint(path)``)."""
        for logger in self.loggers:
            if callable(getattr(logger, "log_checkpoint", None)):
                logger.log_checkpoint(path)

    def close(self) -> None:
        for logger in self.loggers:
            logger.close()


#: The loggers ``learn(logger=...)`` takes by name: the module and class of each.
LOGGER_NAMES: dict[str, tuple[str, str]] = {
    "wandb": ("rladapt.logging.wandb", "WandbLogger"),
    "tensorboard": ("rladapt.logging.tensorboard", "TensorBoardLogger"),
}


def _named_logger(name: str) -> Logger:
    """A logger with its defaults, by name (the module is imported only when named)."""
    import importlib

    if name not in LOGGER_NAMES:
        raise ValueError(f"unknown logger {name!r}; logger must be None, one of {', '.join(map(repr, LOGGER_NAMES))}, "
                         f"a logger object (log_config, log, close) or a list of those")
    module, cls = LOGGER_NAMES[name]
    return getattr(importlib.import_module(module), cls)()


def make_logger(logger: Any, run_dir: RunDirLogger | None) -> Logger:
    """The loop's logger: the run directory (when there is one) plus ``logger``.

    :param logger: None (run directory only), ``"wandb"``, ``"tensorboard"``, an object
        implementing :class:`Logger`, or a list or tuple of those (each gets everything).
    :param run_dir: the run directory logger, or None when the run directory is turned off.
    :raises ValueError: an unknown logger name (the message lists the names).
    :raises ImportError: a named logger whose package is missing (the message names the extra to install).
    """
    loggers: list[Logger] = [run_dir] if run_dir is not None else []
    for item in logger if isinstance(logger, (list, tuple)) else [logger]:
        if item is None:
            continue
        if isinstance(item, str):
            loggers.append(_named_logger(item))
        elif all(callable(getattr(item, m, None)) for m in ("log_config", "log", "close")):
            loggers.append(item)
        else:
            raise TypeError(f"a logger needs log_config(dict), log(dict, step) and close(); got {type(item).__name__}")
    return MultiLogger(loggers)
