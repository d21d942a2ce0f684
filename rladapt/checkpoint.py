"""Checkpoints: tensors plus JSON metadata, nothing unpickled (DESIGN.md principle 7).

A checkpoint is a ``torch.save`` file holding only a dict of tensors, numbers, strings, lists and
dicts::

    {"format": "rladapt-checkpoint", "version": 1,
     "metadata": "<JSON: agent class, settings, spaces, counters>",
     "model": state_dict, "optimizers": {name: state_dict}, "rng": {"torch": ByteTensor},
     "replay": ReplayBuffer.state_dict()}          # training-state checkpoints only

The metadata also holds the numpy RNG state, the agent's :meth:`~rladapt.agents.base.Agent.resume_state`
and the schedule position (the run's first step and planned steps); a training-state checkpoint
(``agent.save(path, training_state=True)``, what ``checkpoint_every`` writes) adds the replay buffer
and the run directory, so that a run killed at any moment continues from its last checkpoint.

It is loaded with ``torch.load(weights_only=True)``, which refuses any pickled code, and written
atomically (a temporary file in the same directory, then ``os.replace``).
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, TextIO

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from rladapt.errors import AdaptError
from rladapt.opponents import AgentOpponent
from rladapt.spec import bind_agent
from rladapt.registry import class_path, find_agent, get_agent
from rladapt.protocols import LearningAgent

FORMAT = "rladapt-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """The file is not an rladapt checkpoint, or it carries something other than tensors."""


# -------------------------------------------------------------------------------------------
# Spaces <-> JSON
# -------------------------------------------------------------------------------------------


def _array(a: np.ndarray) -> Any:
    """A scalar when every entry is equal (image bounds), else a nested list."""
    a = np.asarray(a)
    flat = a.reshape(-1)
    if flat.size and np.all(flat == flat[0]):
        return flat[0].item()
    return a.tolist()


def space_to_json(space: gym.Space) -> dict[str, Any]:
    """A JSON description of an adapted env's space (Box, Discrete, MultiDiscrete, MultiBinary,
    Dict, Tuple)."""
    if isinstance(space, spaces.Box):
        return {"type": "Box", "shape": list(space.shape), "dtype": str(space.dtype),
                "low": _array(space.low), "high": _array(space.high)}
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": space.nvec.tolist(), "start": np.asarray(space.start).tolist(),
                "dtype": str(space.dtype)}
    if isinstance(space, spaces.MultiBinary):
        return {"type": "MultiBinary", "n": list(space.shape)}
    if isinstance(space, spaces.Dict):
        return {"type": "Dict", "spaces": {k: space_to_json(s) for k, s in space.spaces.items()}}
    if isinstance(space, spaces.Tuple):
        return {"type": "Tuple", "spaces": [space_to_json(s) for s in space.spaces]}
    raise CheckpointError(f"cannot describe space {space} in a checkpoint")


def space_from_json(d: dict[str, Any]) -> gym.Space:
    """The space described by :func:`space_to_json`."""
    kind = d["type"]
    if kind == "Box":
        shape, dtype = tuple(d["shape"]), np.dtype(d["dtype"])
        low = np.broadcast_to(np.asarray(d["low"], dtype=np.float64), shape).astype(dtype)
        high = np.broadcast_to(np.asarray(d["high"], dtype=np.float64), shape).astype(dtype)
        return spaces.Box(low, high, shape, dtype)
    if kind == "Discrete":
        return spaces.Discrete(d["n"], start=d["start"])
    if kind == "MultiDiscrete":
        return spaces.MultiDiscrete(np.asarray(d["nvec"]), dtype=np.dtype(d["dtype"]), start=np.asarray(d["start"]))
    if kind == "MultiBinary":
        n = d["n"]
        return spaces.MultiBinary(n if len(n) > 1 else n[0])
    if kind == "Dict":
        return spaces.Dict({k: space_from_json(s) for k, s in d["spaces"].items()})
    if kind == "Tuple":
        return spaces.Tuple([space_from_json(s) for s in d["spaces"]])
    raise CheckpointError(f"unknown space type {kind!r} in checkpoint")


# -------------------------------------------------------------------------------------------
# Save and load
# -------------------------------------------------------------------------------------------


def save_agent(agent: LearningAgent, path: str | os.PathLike, training_state: bool = False) -> Path:
    """Write ``agent`` to ``path`` atomically. See the module docstring for the format.

    :param agent: the agent to save.
    :param path: the file to write.
    :param training_state: also write the replay buffer and the run directory (for resuming a run).
    """
    if agent.observation_space is None:
        raise RuntimeError(f"{type(agent).__name__} has no networks yet: train it (or call setup) before saving")
    path = Path(path)
    metadata = {
        "agent": type(agent).__name__,
        "agent_class": class_path(type(agent)),
        "settings": agent.settings(),
        "custom_settings": [k for k, v in agent.settings().items() if isinstance(v, str) and v.startswith("<")],
        "observation_space": space_to_json(agent.observation_space),
        "action_space": space_to_json(agent.action_space),
        "env_family": agent.env_family,
        "counters": {"num_timesteps": agent.num_timesteps, "num_updates": agent.num_updates,
                     "num_episodes": agent.num_episodes},
        "schedule": {"run_start": int(agent.run_start), "run_steps": int(agent.run_steps),
                     "progress": float(agent.progress)},
        "numpy_rng": agent.np_random.bit_generator.state,  # JSON: a dict of (big) ints and names
        "resume_state": agent.resume_state(),
    }
    # a replay buffer is the off-policy family's (OffPolicyAgent.replay), not the contract's
    replay = getattr(agent, "replay", None) if training_state else None
    if training_state:
        metadata["training_state"] = {"run_dir": None if agent.run_dir is None else str(agent.run_dir)}
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "metadata": json.dumps(metadata),
        "model": {k: v.detach().cpu() for k, v in agent.state_dict().items()},
        "optimizers": {name: opt.state_dict() for name, opt in agent.optimizers().items()},
        "rng": {"torch": agent.generator.get_state().cpu()},
    }
    if replay is not None:
        payload["replay"] = replay.state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(metadata, payload)`` of a checkpoint, refusing anything that is not one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"refusing to load {path}: it is not an rladapt checkpoint and holds pickled objects other than "
            f"tensors (possibly code); rladapt never unpickles code. Details: {str(e).splitlines()[0]}"
        ) from None
    except Exception as e:  # not a torch file at all (text, truncated, another format)
        raise CheckpointError(f"{path} is not an rladapt checkpoint (cannot be read as one: {type(e).__name__}: {e})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an rladapt checkpoint (no '{FORMAT}' marker)")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path} is an rladapt checkpoint of version {payload.get('version')}; this rladapt reads version {VERSION}")
    try:
        metadata = json.loads(payload["metadata"])
    except (KeyError, TypeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path} has corrupt metadata: {e}") from None
    return metadata, payload


def load(path: str | os.PathLike, **overrides: Any) -> Any:
    """Load an agent saved with ``agent.save(path)``: weights, optimizer state, normalisation
    statistics, step counters, RNG states, schedule position and settings, and from a
    training-state checkpoint (``checkpoint_every``) the replay buffer too. ``learn`` then
    continues where it stopped: ``agent.learn(env, remaining)``, with ``remaining`` the steps left
    of the run the checkpoint was written in, continues its schedules, its step axis and its run
    directory (the envs restart their episodes).

    The agent's class is the one the checkpoint records (``module:qualname``): defined in this
    process, or registered by an installed package under the entry point group
    ``rladapt.agents`` (:mod:`rladapt.registry`); otherwise the error names the module to
    import. Nothing the file names is imported or run.

    :param path: the checkpoint file.
    :param overrides: settings to replace, e.g. ``device="cuda"``, or ``network=...`` when the
        agent was trained with your own network module (modules are not stored as code).
    :raises CheckpointError: the file is not an rladapt checkpoint or contains pickled code.
    """
    metadata, payload = read_checkpoint(path)
    try:
        if "agent_class" in metadata:
            cls = find_agent(metadata["agent_class"], metadata.get("agent"))
        else:  # written before checkpoints recorded the class path: rladapt's own agents, by name
            cls = get_agent(metadata["agent"])
    except ValueError as error:
        raise CheckpointError(f"{path}: {error}") from None
    settings = {k: v for k, v in metadata["settings"].items() if k not in metadata.get("custom_settings", [])}
    missing = [k for k in metadata.get("custom_settings", []) if k not in overrides]
    if missing:
        raise CheckpointError(
            f"{path} was trained with custom object settings {missing}; pass them again: "
            f"rladapt.load(path, {missing[0]}=...)"
        )
    valid = {f for f in cls.Config.__dataclass_fields__}
    settings = {k: (tuple(v) if isinstance(v, list) else v) for k, v in settings.items() if k in valid}
    settings.update(overrides)
    agent = cls(**settings)
    bind_agent(agent, space_from_json(metadata["observation_space"]), space_from_json(metadata["action_space"]),
               metadata.get("env_family"))
    agent.load_state_dict(payload["model"])
    for name, opt in agent.optimizers().items():
        if name in payload.get("optimizers", {}):
            opt.load_state_dict(payload["optimizers"][name])
    if "torch" in payload.get("rng", {}):
        agent.generator.set_state(payload["rng"]["torch"])
    counters = metadata.get("counters", {})
    agent.num_timesteps = int(counters.get("num_timesteps", 0))
    agent.num_updates = int(counters.get("num_updates", 0))
    agent.num_episodes = int(counters.get("num_episodes", 0))
    if "numpy_rng" in metadata:
        agent.np_random.bit_generator.state = metadata["numpy_rng"]
    agent.load_resume_state(metadata.get("resume_state", {}))
    if "replay" in payload:
        _restore_replay(agent, payload["replay"])
    schedule = metadata.get("schedule", {})
    agent.run_start, agent.run_steps = int(schedule.get("run_start", 0)), int(schedule.get("run_steps", 0))
    agent.progress = float(schedule.get("progress", 0.0))
    if agent.num_timesteps < agent.run_start + agent.run_steps:  # saved mid-run: learn may continue it
        run_dir = metadata.get("training_state", {}).get("run_dir")
        agent.unfinished_run = (agent.run_start, agent.run_steps, None if run_dir is None else Path(run_dir))
    return agent


class CheckpointOpponent(AgentOpponent):
    """The agent saved at a checkpoint path, at the other seats of a game; each process (the
    learner's, every worker's) loads it itself on first use, so only the path travels to workers.
    ``opponent=path`` (a run directory or an ``agent.pt`` file) builds one.

    :param path: a run directory (its ``agent.pt``) or a checkpoint file.
    :param deterministic: play its most likely move (False: sample).
    :param name: what evaluations call it (default: the file or directory name).
    :param output: where to print the board and its view of every move it plays; None: silently.
    :raises AdaptError: nothing exists at ``path``.
    """

    def __init__(self, path: str | os.PathLike, deterministic: bool = True, name: str | None = None,
                 output: TextIO | None = None) -> None:
        given = Path(path)
        self.path = given / "agent.pt" if given.is_dir() else given
        if not self.path.exists():
            raise AdaptError(f"opponent checkpoint {self.path} does not exist")
        self.set_player(None, deterministic, name or given.name, output)

    def acting_agent(self, seats: gym.Env) -> Any:
        if self.agent is None:
            with torch.inference_mode(False):  # collectors step envs under inference mode
                self.agent = load(self.path)
        return super().acting_agent(seats)

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "agent": None}  # each process loads the checkpoint itself


def _restore_replay(agent: LearningAgent, state: dict[str, Any]) -> None:
    """Rebuild the agent's replay buffer for the saved number of envs and fill it (the next
    ``learn`` with as many envs keeps it)."""
    num_envs = int(state["config"][3])
    if not hasattr(agent, "build_replay") or num_envs < 1:
        return
    replay = agent.build_replay(num_envs)
    if replay is None:
        return
    replay.load_state_dict(state)
    agent.replay = replay
