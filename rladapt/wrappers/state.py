"""Save and restore the whole state of an env chain, for search (MCTS, AlphaZero, planning).

A state is two parts, both needed for the result to be right:

- the **base env's** state, saved by its own facility when it has one (:data:`FACILITIES`):
  ``backup()``/``restore(state)`` (the SRL names, for user envs), the ALE's
  ``cloneState(include_rng=True)``/``restoreState`` (sticky actions draw from the ALE's RNG),
  MuJoCo's ``mj_getState``/``mj_setState`` over ``mjSTATE_INTEGRATION`` (``qpos``, ``qvel``,
  ``act``, ``time``, the solver's warm start, the controls), or a deep copy of the env's
  attributes (pure-Python envs: rladapt's, gymnasium's toy text and classic control, PettingZoo's
  classic games). With a native facility the env's Python attributes (its ``np_random`` among
  them) are copied too;
- every **wrapper's** own attributes: a ``TimeLimit``'s elapsed steps, a frame stack's frames,
  ``AtariPreprocessing``'s lives and no-op RNG use, episode statistics' running return, the
  mask wrapper's step counter. Without them a restored chain would truncate at the wrong step,
  stack frames of another timeline or report a wrong episode return.

What is copied of an object (a wrapper, or the base env): its attributes, except the env it
wraps, spaces (they do not change while stepping), callables (bound methods the wrapper cached)
and native handles (the ALE, MuJoCo's model and data, pygame surfaces). An env held in an
attribute (a gymnasium view of a PettingZoo game holds the AEC env) is saved as layers of its
own, attribute by attribute: ``copy.deepcopy`` of a whole env that pickles by its constructor
arguments (``EzPickle``: PettingZoo's and many gymnasium envs) would build a fresh, un-reset env.
All layers are copied in one ``copy.deepcopy``, so attributes shared between layers stay shared
after a restore; a state can be restored any number of times.

Example:
    >>> env = gym.make("rladapt/Grid-v0")
    >>> _ = env.reset(seed=0)
    >>> state = get_state(env)
    >>> first = env.step(1)
    >>> set_state(env, state)
    >>> env.step(1) == first          # the same transition (the env's RNG was restored too)
    True
"""

from __future__ import annotations

import copy
import types
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

__all__ = ["FACILITIES", "EnvState", "get_state", "restore_problem", "set_state", "state_facility"]

#: The ways a base env's state is saved, by name (the plan names the one used).
FACILITIES = {
    "backup_restore": "env.backup() / env.restore(state) (SRL convention)",
    "ale": "ALE cloneState(include_rng=True) / restoreState",
    "mujoco": "MuJoCo mj_getState / mj_setState (qpos, qvel, act, time, warm start, controls)",
    "deepcopy": "copy.deepcopy of the env's attributes",
}

#: Top-level modules whose objects are native handles: never copied, the facility saves them.
_NATIVE_MODULES = frozenset({"ale_py", "mujoco", "pygame"})


@dataclass(frozen=True)
class EnvState:
    """A saved state of an env chain (opaque: pass it back to :func:`set_state`).

    :param facility: the base env's facility (a key of :data:`FACILITIES`).
    :param base: what the facility saved (None for ``"deepcopy"``: the attributes are the state).
    :param layers: the copied attributes of each object of the chain, outermost first, base last.
    """

    facility: str
    base: Any
    layers: tuple[dict[str, Any], ...]


def _chain(env: Any) -> list[Any]:
    """The objects of an env chain, outermost first, base env last (gymnasium and PettingZoo
    wrappers alike: each holds the next in ``.env``)."""
    chain = [env]
    while getattr(chain[-1], "unwrapped", chain[-1]) is not chain[-1] and hasattr(chain[-1], "env"):
        chain.append(chain[-1].env)
    return chain


def _is_env(value: Any) -> bool:
    """An env (gymnasium or PettingZoo, wrapped or not) or anything pickled by its constructor
    arguments: saved as layers, never deep-copied whole."""
    return isinstance(value, (gym.Env, gym.utils.EzPickle)) or (hasattr(value, "possible_agents") and hasattr(value, "observe"))


def _layers(env: Any) -> list[Any]:
    """Every object whose attributes make up the state: the chain of ``env``, then the chains
    of the envs held in their attributes (depth first, each once)."""
    found: list[Any] = []
    seen: set[int] = set()

    def visit(top: Any) -> None:
        for obj in _chain(top):
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            found.append(obj)
            for name, value in vars(obj).items():
                if name != "env" and _is_env(value):
                    visit(value)

    visit(env)
    return found


def _is_space(value: Any) -> bool:
    if isinstance(value, gym.Space):
        return True
    return isinstance(value, dict) and bool(value) and all(isinstance(v, gym.Space) for v in value.values())


def _skipped(name: str, value: Any) -> bool:
    if name == "env" or callable(value) or _is_env(value) or isinstance(value, types.ModuleType) or _is_space(value):
        return True
    return type(value).__module__.split(".")[0] in _NATIVE_MODULES


def _attributes(obj: Any) -> dict[str, Any]:
    return {name: value for name, value in vars(obj).items() if not _skipped(name, value)}


def _facility_of(base: Any) -> str | None:
    if callable(getattr(base, "backup", None)) and callable(getattr(base, "restore", None)):
        return "backup_restore"
    if hasattr(getattr(base, "ale", None), "cloneState"):
        return "ale"
    if type(getattr(base, "data", None)).__module__.startswith("mujoco") and hasattr(base, "model"):
        return "mujoco"
    return "deepcopy"


def restore_problem(env: Any) -> str | None:
    """Why the state of ``env`` cannot be saved and restored, or None when it can: an attribute
    of the env or of a wrapper that cannot be deep-copied (a lock, a generator, a socket ...),
    named with its layer, with the fix."""
    base = _chain(env)[-1]
    owned = {id(obj) for obj in _layers(base)} if _facility_of(base) == "backup_restore" else set()
    for obj in _layers(env):
        if id(obj) in owned:  # the env's backup() saves what it holds
            continue
        for name, value in _attributes(obj).items():
            try:
                copy.deepcopy(value)
            except Exception as error:  # deepcopy raises TypeError, PicklingError, RecursionError ...
                layer = type(obj).__name__
                return (
                    f"{layer}.{name} ({type(value).__name__}) cannot be copied ({type(error).__name__}: {error}), so the "
                    f"state of {type(getattr(env, 'unwrapped', env)).__name__} cannot be saved for search. Fix: give the env "
                    f"backup() -> state and restore(state) methods (the SRL names), or keep only copyable values in "
                    f"its attributes"
                )
    return None


def state_facility(env: Any) -> str | None:
    """How the base env of ``env`` saves its state (a key of :data:`FACILITIES`), or None when
    the chain cannot be restored (:func:`restore_problem` says why)."""
    if restore_problem(env) is not None:
        return None
    return _facility_of(_chain(env)[-1])


def _mujoco_spec() -> Any:
    import mujoco

    return mujoco.mjtState.mjSTATE_INTEGRATION


def get_state(env: Any) -> EnvState:
    """Save the state of ``env`` and of every wrapper around it.

    Example:
        >>> env = gym.make("CartPole-v1")
        >>> _ = env.reset(seed=0)
        >>> saved_position = env.unwrapped.state.copy()
        >>> state = get_state(env)
        >>> for _ in range(3):
        ...     _ = env.step(1)
        >>> set_state(env, state)
        >>> bool((env.unwrapped.state == saved_position).all())
        True
        >>> env.get_wrapper_attr("_elapsed_steps")   # TimeLimit's step count is restored too
        0

    :param env: an env (gymnasium or PettingZoo), wrapped or not.
    :return: the state, for :func:`set_state` (restorable any number of times).
    :raises TypeError: the chain cannot be restored (the message names the attribute and the fix).
    """
    problem = restore_problem(env)
    if problem is not None:
        raise TypeError(problem)
    chain = _layers(env)
    base = _chain(env)[-1]
    facility = _facility_of(base)
    native: Any = None
    if facility == "backup_restore":
        native = base.backup()
    elif facility == "ale":
        native = base.ale.cloneState(include_rng=True)
    elif facility == "mujoco":
        import mujoco

        spec = _mujoco_spec()
        native = np.empty(mujoco.mj_stateSize(base.model, spec), dtype=np.float64)
        mujoco.mj_getState(base.model, base.data, native, spec)
    # With backup/restore the env's own backup is its whole state (and what it holds).
    owned = {id(obj) for obj in _layers(base)} if facility == "backup_restore" else set()
    layers = [{} if id(obj) in owned else _attributes(obj) for obj in chain]
    return EnvState(facility, native, tuple(copy.deepcopy(layers)))


def set_state(env: Any, state: EnvState) -> None:
    """Restore a state saved by :func:`get_state` from the same chain (or one built the same way).

    :param env: the env chain the state was saved from.
    :param state: what :func:`get_state` returned.
    :raises TypeError: ``state`` is not an :class:`EnvState`.
    :raises ValueError: the chain has another number of layers than the saved one.
    """
    if not isinstance(state, EnvState):
        raise TypeError(f"set_state needs a state from get_state(env), got {type(state).__name__}")
    chain = _layers(env)
    if len(chain) != len(state.layers):
        raise ValueError(f"the state was saved from a chain of {len(state.layers)} layers; this env has {len(chain)}: "
                         f"{' -> '.join(type(obj).__name__ for obj in chain)}")
    base = _chain(env)[-1]
    if state.facility == "backup_restore":
        base.restore(state.base)
    elif state.facility == "ale":
        base.ale.restoreState(state.base)
    elif state.facility == "mujoco":
        import mujoco

        mujoco.mj_setState(base.model, base.data, state.base, _mujoco_spec())
        mujoco.mj_forward(base.model, base.data)  # positions of bodies, sensors: what observations read
    for obj, attributes in zip(chain, copy.deepcopy(state.layers)):
        vars(obj).update(attributes)
