"""Every Agent subclass registers itself here, so errors can name the agents that would work."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rladapt.agents.base import Agent

_AGENTS: dict[str, type["Agent"]] = {}


def register(cls: type["Agent"]) -> None:
    """Record an agent class under its lowercase name (``PPO`` -> ``"ppo"``). The base classes of
    ``rladapt.agents.base`` (``OnPolicyAgent``, ...) are frameworks, not agents: they stay out."""
    if cls.__module__ != "rladapt.agents.base":
        _AGENTS[cls.__name__.lower()] = cls


def get_agent(name: str) -> type["Agent"]:
    """The agent class registered as ``name`` (case-insensitive)."""
    import rladapt.agents  # noqa: F401  (registers the built-in agents)

    try:
        return _AGENTS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown agent {name!r}; known agents: {sorted(_AGENTS)}") from None


def agents_accepting(*, observation: str | None = None, action: str | None = None) -> list[str]:
    """Names of the registered agents whose spec accepts the given observation and action kind."""
    import rladapt.agents  # noqa: F401

    return sorted(
        cls.__name__
        for cls in _AGENTS.values()
        if (observation is None or observation in cls.spec.observations)
        and (action is None or action in cls.spec.actions)
        and cls.__name__ != "RandomAgent"
    )
