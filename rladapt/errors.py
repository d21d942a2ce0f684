"""Errors raised by rladapt. Each names its cause and, where it can, the fix."""

from __future__ import annotations


class AdaptError(ValueError):
    """No chain of wrappers joins the env to the agent.

    The message names the offending space path (e.g. ``observation['pixels']``), what the agent
    accepts, and how to fix it.
    """


class ActionMaskError(ValueError):
    """An invalid-action mask is malformed (wrong shape or dtype) or masks every action."""


class ObservationError(ValueError):
    """An env's observation does not fit its own declared observation space (a wrong shape, a
    missing key, a value outside the bounds). The message names the leaf and both shapes."""


class NonFiniteError(ValueError):
    """A NaN or infinite observation, reward or action in collection; the message names the
    env, the step and the value. Turn the check off with the agent setting ``check_finite=False``."""
