"""Every Agent subclass registers itself here when its class is defined: by ``module:qualname``
(what checkpoints record, so ``rladapt.load`` finds the class again) and by lowercase name (what
the CLI and AutoAdapt's error messages use).

A checkpoint of an agent whose class is not defined in the loading process is found through the
entry point group ``rladapt.agents`` of the installed packages, and otherwise refused with an error
naming the module to import: rladapt never imports a module because a file names it. The one
exception is rladapt's own agents: a class path under ``rladapt.agents.`` imports the package
``rladapt.agents`` (rladapt's code, not the file's), so a process that loads a checkpoint without
having imported the agents (a worker loading an opponent) still finds them.

Register an agent of your package (``pyproject.toml``)::

    [project.entry-points."rladapt.agents"]
    expected_sarsa = "my_package.agents:ExpectedSarsa"
"""

from __future__ import annotations

import importlib
from importlib import metadata
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rladapt.agents.base import Agent

__all__ = ["ENTRY_POINT_GROUP", "agent_names", "agents_accepting", "class_path", "find_agent", "get_agent", "register"]

#: The entry point group packages register their agents under.
ENTRY_POINT_GROUP = "rladapt.agents"
#: Modules whose classes are families (frameworks for agents), not agents.
FRAMEWORK_MODULES = frozenset({"rladapt.agents.base", "rladapt.agents.on_policy", "rladapt.agents.off_policy"})

#: The package of rladapt's own agents (imported on a lookup, see the module docstring).
BUILTIN_PACKAGE = "rladapt.agents"

_AGENTS: dict[str, type["Agent"]] = {}
_BY_PATH: dict[str, type["Agent"]] = {}


def class_path(cls: type) -> str:
    """``"module:qualname"`` of a class (``"rladapt.agents.ppo:PPO"``)."""
    return f"{cls.__module__}:{cls.__qualname__}"


def register(cls: type["Agent"]) -> None:
    """Record an agent class under its ``module:qualname`` and, when the name is free, under its
    lowercase name (``PPO`` -> ``"ppo"``). The families (``OnPolicyAgent``, ...) stay out."""
    if cls.__module__ in FRAMEWORK_MODULES:
        return
    _BY_PATH[class_path(cls)] = cls
    _AGENTS.setdefault(cls.__name__.lower(), cls)


def _import_builtin_agents() -> None:
    # By name, not by an import statement: the registry sits below the agents (they register here
    # when their classes are defined), and importing the package defines them all.
    importlib.import_module(BUILTIN_PACKAGE)


def _entry_points() -> list[metadata.EntryPoint]:
    return list(metadata.entry_points(group=ENTRY_POINT_GROUP))


def find_agent(path: str, name: str | None = None) -> type["Agent"]:
    """The agent class saved as ``path`` (``module:qualname``): one defined in this process, or one
    an installed package registers under the entry point group ``rladapt.agents``.

    :param path: the class's ``module:qualname``.
    :param name: what to call it in the error (default: the qualname).
    :raises ValueError: neither is found; the message names the module to import.
    """
    cls = _BY_PATH.get(path)
    if cls is not None:
        return cls
    module, _, qualname = path.partition(":")
    if module.startswith(BUILTIN_PACKAGE + "."):
        _import_builtin_agents()
        cls = _BY_PATH.get(path)
        if cls is not None:
            return cls
    for ep in _entry_points():
        if ep.value.replace(" ", "") == path or ep.value.split(":")[0] == module or ep.name.lower() == qualname.lower():
            loaded = ep.load()
            if isinstance(loaded, type) and class_path(loaded) == path:
                return loaded
    cls = _BY_PATH.get(path)  # an entry point's module may have defined it on import
    if cls is not None:
        return cls
    what = name or qualname
    if module == "__main__":
        fix = f"define (or import) the class {qualname} in the program that loads it, before rladapt.load"
    else:
        fix = (f"import it first (import {module}) and load again, or register it in its package's "
               f"pyproject.toml: [project.entry-points.\"{ENTRY_POINT_GROUP}\"] {qualname.lower()} = \"{path}\"")
    raise ValueError(
        f"the agent class {what} ({path}) is not defined in this process and no installed package registers it "
        f"under the entry point group '{ENTRY_POINT_GROUP}'; {fix}. rladapt never imports a module because a file names it"
    )


def get_agent(name: str) -> type["Agent"]:
    """The agent class registered as ``name`` (case-insensitive), or ``module:qualname``, or the
    name of an entry point of the group ``rladapt.agents``."""
    if ":" in name:
        return find_agent(name)
    _import_builtin_agents()
    cls = _AGENTS.get(name.lower())
    if cls is not None:
        return cls
    for ep in _entry_points():
        if ep.name.lower() == name.lower():
            loaded = ep.load()
            if isinstance(loaded, type):
                return loaded
    raise ValueError(f"unknown agent {name!r}; known agents: {sorted(_AGENTS)}")


def agent_names() -> list[str]:
    """Every name :func:`get_agent` resolves without a module path: rladapt's own agents and the
    entry points of the group ``rladapt.agents`` (lowercase, sorted)."""
    _import_builtin_agents()
    return sorted(set(_AGENTS) | {ep.name.lower() for ep in _entry_points()})


def agents_accepting(*, observation: str | None = None, action: str | None = None) -> list[str]:
    """Names of rladapt's own agents whose spec accepts the given observation and action kind."""
    _import_builtin_agents()
    return sorted(
        cls.__name__
        for cls in _AGENTS.values()
        if cls.__module__.startswith("rladapt.agents.")
        and (observation is None or observation in cls.spec.observations)
        and (action is None or action in cls.spec.actions)
        and cls.__name__ != "RandomAgent"
        and not cls.spec.needs_env_state  # search agents play games only: never the general suggestion
    )
