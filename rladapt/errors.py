"""Errors raised by rladapt. Each names its cause and, where it can, the fix."""

from __future__ import annotations


class AdaptError(ValueError):
    """No chain of wrappers joins the env to the agent.

    The message names the offending space path (e.g. ``observation['pixels']``), what the agent
    accepts, and how to fix it.
    """


class ActionMaskError(ValueError):
    """An invalid-action mask is malformed (wrong shape or dtype) or masks every action."""
