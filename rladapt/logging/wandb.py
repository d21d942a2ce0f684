"""Weights & Biases logger: the run's config (with the AutoAdapt plan), metrics on the env-step
axis, evaluation videos as ``wandb.Video``, and the final checkpoint as an artifact on request.

``agent.learn(env, steps, logger="wandb")`` uses the defaults below; pass a :class:`WandbLogger`
for options::

    agent.learn(env, steps, logger=WandbLogger(project="pong", tags=["ppo"], log_checkpoint=True))

No account is needed: without an API key (``WANDB_API_KEY`` or ``wandb login``) the run is logged
offline, inside the run directory, and can be uploaded later with ``wandb sync``. ``WANDB_MODE``,
when set, is obeyed. The W&B files live in ``<run_dir>/wandb/``. Nothing secret is sent: config
keys that look like secrets are redacted, console output and system metrics are not captured.
"""

from __future__ import annotations

import netrc
import os
import re
from pathlib import Path
from typing import Any, Sequence

from rladapt.logging.metadata import redact

__all__ = ["WandbLogger", "has_wandb_credentials"]


def has_wandb_credentials() -> bool:
    """Whether an API key is configured (``WANDB_API_KEY`` or a ``wandb login`` netrc entry),
    without contacting W&B."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        host = re.sub(r"^https?://", "", os.environ.get("WANDB_BASE_URL", "api.wandb.ai")).rstrip("/")
        return netrc.netrc().authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


class WandbLogger:
    """Logs a training run to Weights & Biases (a :class:`~rladapt.logging.Logger`).

    The W&B run starts at ``log_config`` (the first call of ``learn``), named like the run
    directory unless ``name`` is given.

    :param project: W&B project.
    :param name: run name (default: the run directory's name, e.g. ``ppo-CartPole-v1-20250101-120000``).
    :param tags: run tags.
    :param group: run group (e.g. one per experiment, seeds inside).
    :param entity: W&B team or user (default: yours).
    :param mode: ``"online"``, ``"offline"`` or ``"disabled"``. None: ``WANDB_MODE`` if set, else
        online with an API key and offline without one.
    :param directory: where W&B writes its files (default: the run directory).
    :param log_checkpoint: upload the final checkpoint (``agent.pt``) as a ``model`` artifact.
    :param init_kwargs: further keyword arguments for ``wandb.init``.
    """

    def __init__(
        self,
        project: str = "rladapt",
        name: str | None = None,
        tags: Sequence[str] = (),
        group: str | None = None,
        entity: str | None = None,
        mode: str | None = None,
        directory: str | os.PathLike | None = None,
        log_checkpoint: bool = False,
        **init_kwargs: Any,
    ) -> None:
        try:
            import wandb
        except ImportError as e:  # pragma: no cover - wandb is a dependency
            raise ImportError("WandbLogger needs the wandb package: pip install wandb") from e
        self._wandb = wandb
        self.project, self.name, self.tags, self.group, self.entity = project, name, list(tags), group, entity
        self.mode = mode
        self.directory = directory
        self.log_checkpoint_enabled = log_checkpoint
        self.init_kwargs = init_kwargs
        self.run: Any = None

    def _mode(self) -> str:
        if self.mode is not None:
            return self.mode
        if os.environ.get("WANDB_MODE"):
            return os.environ["WANDB_MODE"]
        return "online" if has_wandb_credentials() else "offline"

    def log_config(self, config: dict[str, Any]) -> None:
        """Start the W&B run with ``config`` (secrets redacted), or update the running one's config."""
        config = redact(config)
        if self.run is not None:
            self.run.config.update(config, allow_val_change=True)
            return
        run_dir = config.get("run_dir")
        directory = self.directory if self.directory is not None else run_dir
        if directory is not None:  # absolute: a shared wandb-core service resolves paths from its own cwd
            directory = Path(directory).resolve()
            directory.mkdir(parents=True, exist_ok=True)
        name = self.name or (Path(run_dir).name if run_dir else None)
        settings = self._wandb.Settings(console="off", x_disable_stats=True, save_code=False)
        self.run = self._wandb.init(
            project=self.project, name=name, tags=self.tags or None, group=self.group, entity=self.entity,
            mode=self._mode(), dir=str(directory) if directory is not None else None, config=config,
            settings=settings, **self.init_kwargs,
        )

    def log(self, metrics: dict[str, Any], step: int) -> None:
        """Log ``metrics`` at env step ``step`` (W&B's step axis is env steps)."""
        if self.run is None:
            self.log_config({})
        self.run.log(metrics, step=step)

    def log_video(self, path: str | os.PathLike, step: int, key: str = "eval/video") -> None:
        """Log a video file (mp4 or GIF) as ``wandb.Video`` under ``key`` at env step ``step``."""
        if self.run is None:
            self.log_config({})
        path = Path(path)
        self.run.log({key: self._wandb.Video(str(path), format=path.suffix.lstrip(".") or "mp4")}, step=step)

    def log_checkpoint(self, path: str | os.PathLike) -> None:
        """Upload ``path`` as a ``model`` artifact when ``log_checkpoint`` is on."""
        if not self.log_checkpoint_enabled or self.run is None:
            return
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{self.run.name or self.run.id}-model")
        artifact = self._wandb.Artifact(name, type="model", metadata={"file": Path(path).name})
        artifact.add_file(str(path))
        self.run.log_artifact(artifact)

    def close(self) -> None:
        """Finish the W&B run (writes everything; offline runs can then be synced)."""
        if self.run is not None:
            self.run.finish()
            self.run = None
