"""What a run directory's ``config.json`` records besides the settings: library versions, the
AutoAdapt plan and overrides, and how to rebuild the env. Nothing from the environment variables
is recorded, and keys that look like secrets are redacted (:func:`redact`)."""

from __future__ import annotations

import dataclasses
import functools
import json
import platform
import re
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

__all__ = ["library_versions", "redact", "run_metadata"]

#: Config keys whose values are never written to config.json or sent to W&B.
SECRET_KEY = re.compile(r"(api[_-]?key|token|secret|password|passwd|credential)", re.IGNORECASE)

_LIBRARIES = ("rladapt", "gymnasium", "torch", "numpy", "tensordict", "ale-py", "mujoco", "wandb")


def library_versions() -> dict[str, str]:
    """Versions of Python and of the libraries a run depends on (those installed)."""
    return dict(_installed_versions())


@functools.cache  # reading the installed metadata takes ~10 ms, at every learn() call otherwise
def _installed_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return versions


def redact(config: Any) -> Any:
    """``config`` with the values of secret-looking keys (api_key, token, password ...) replaced
    by ``"<redacted>"``, recursively."""
    if isinstance(config, dict):
        return {k: "<redacted>" if isinstance(k, str) and SECRET_KEY.search(k) else redact(v) for k, v in config.items()}
    if isinstance(config, (list, tuple)):
        return [redact(v) for v in config]
    return config


def _json_only(values: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in values.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue
        out[key] = value
    return out


def adapt_overrides(env: Any) -> dict[str, Any]:
    """The AutoAdapt overrides of an adapted env that differ from the defaults (JSON values)."""
    options = getattr(env, "options", None)
    if options is None or not dataclasses.is_dataclass(options):
        return {}
    changed = {
        f.name: getattr(options, f.name)
        for f in dataclasses.fields(options)
        if getattr(options, f.name) != f.default and f.name != "env_kwargs"
    }
    return _json_only({k: list(v) if isinstance(v, tuple) else v for k, v in changed.items()})


def run_metadata(env: Any, run_dir: str | Path | None) -> dict[str, Any]:
    """The run-level entries of ``config.json``.

    :param env: the adapted env (an ``AutoAdapt`` env carries ``plan`` and ``options``).
    :param run_dir: the run directory (None when it is off).
    :return: ``run_dir``, ``versions``, ``plan`` (one line per step), ``adapt`` (overrides) and
        ``env_kwargs`` (the base env's ``gym.make`` arguments) where known.
    """
    out: dict[str, Any] = {"run_dir": str(run_dir) if run_dir is not None else None, "versions": library_versions()}
    family = getattr(env, "family", None)
    if family is not None:
        out["env_family"] = family
    plan = getattr(env, "plan", None)
    if plan is not None:
        out["plan"] = [str(step) for step in plan]
        out["adapt"] = adapt_overrides(env)
    spec = getattr(env, "spec", None)
    kwargs = getattr(spec, "kwargs", None) or getattr(getattr(env, "options", None), "env_kwargs", None)
    if kwargs:
        out["env_kwargs"] = redact(_json_only({k: v for k, v in kwargs.items() if k != "render_mode"}))
    return out
