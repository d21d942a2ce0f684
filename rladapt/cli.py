"""The ``rladapt`` command: train, evaluate, explain the plan, tune, plot.

::

    rladapt train CartPole-v1 --agent ppo --steps 100k --num-envs 8 --seed 0
    rladapt train ALE/Pong-v5 --agent ppo --steps 10M --wandb --video --eval-every 500k
    rladapt train CartPole-v1 --tensorboard          # event files in RUN_DIR/tensorboard
    rladapt train --resume RUN_DIR                   # continue a killed run from RUN_DIR/checkpoint.pt
    rladapt eval runs/ppo-CartPole-v1-20250101-120000 --episodes 10 --video
    rladapt eval runs/qlearning-rladapt_Grid-v0-20250101-120000/agent.pt --render ansi
    rladapt plan ALE/Breakout-v5 --agent dqn
    rladapt tune CartPole-v1 --agent ppo --trials 20 --seeds 3 --steps 50k --run-dir runs/tune-ppo
    rladapt plot runs/ppo-CartPole-v1-* runs/dqn-CartPole-v1-*

``--set key=value`` sets an agent setting (``--set lr=3e-4 --set hidden=[128,128]``) or an
AutoAdapt override (``--set frame_stack=4``). Bad arguments and adaptation errors print one clear
line and exit with status 2 (usage) or 1 (anything else); ``RLADAPT_DEBUG=1`` shows the traceback.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable, Sequence
from rladapt.spec import AgentNeeds

__all__ = ["main", "parse_steps", "parse_settings"]


class CliError(Exception):
    """A user error: printed as one line, exit status 1."""


# -------------------------------------------------------------------------------------------
# Argument parsing helpers
# -------------------------------------------------------------------------------------------

_SUFFIXES = {"k": 1_000, "m": 1_000_000, "g": 1_000_000_000}


def parse_steps(text: str) -> int:
    """``"100k"`` -> 100000, ``"1.5M"`` -> 1500000, ``"2e5"`` or ``"200_000"`` -> 200000."""
    match = re.fullmatch(r"\s*([0-9][0-9_]*\.?[0-9_]*(?:e[0-9]+)?)\s*([kKmMgG]?)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a number of steps: {text!r} (examples: 5000, 100k, 1.5M, 2e5)")
    value = float(match.group(1).replace("_", "")) * _SUFFIXES.get(match.group(2).lower(), 1)
    if value < 1 or value != int(value):
        raise argparse.ArgumentTypeError(f"steps must be a positive whole number, got {text!r}")
    return int(value)


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number no smaller than ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


_positive_int, _count = _int_at_least(1), _int_at_least(0)


def _value(text: str) -> Any:
    """A Python literal (``3e-4``, ``true``, ``None``, ``[64,64]``, ``"adam"``) or the plain string."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    return tuple(value) if isinstance(value, list) else value


def parse_settings(pairs: Sequence[str], agent_cls: type, adapt_fields: Sequence[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``key=value`` pairs -> ``(agent settings, AutoAdapt overrides)``.

    :raises CliError: for a pair without ``=`` or a key that is neither.
    """
    agent_fields = {f.name for f in dataclasses.fields(agent_cls.Config)}
    settings, overrides = {}, {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise CliError(f"--set takes key=value, got {pair!r}")
        if key in agent_fields:
            settings[key] = _value(text)
        elif key in adapt_fields:
            overrides[key] = _value(text)
        else:
            raise CliError(
                f"unknown setting {key!r} for {agent_cls.__name__}; agent settings: {', '.join(sorted(agent_fields))}; "
                f"AutoAdapt overrides: {', '.join(adapt_fields)}"
            )
    return settings, overrides


def _agent_choices() -> str:
    """The agents ``--agent`` takes by name, read from the registry (rladapt's and the entry
    points'), as the CLI spells them."""
    from rladapt.registry import agent_names

    return ", ".join(CLI_NAMES.get(name, name) for name in agent_names())


def _tunable_agents() -> str:
    from rladapt.tune import SEARCH_SPACES

    return ", ".join(CLI_NAMES.get(name, name) for name in sorted(SEARCH_SPACES))


#: Registry names the command line spells otherwise (``--agent random``).
CLI_NAMES = {"randomagent": "random"}


def _agent_class(name: str) -> type:
    """The agent class a command line names: rladapt's (``ppo``), an entry point of the group
    ``rladapt.agents``, or ``module:Class`` (the module is imported: the user named it)."""
    import importlib

    import rladapt.agents  # noqa: F401  (registers rladapt's own agents)
    from rladapt.registry import get_agent

    aliases = {cli: name for name, cli in CLI_NAMES.items()}
    if ":" in name:
        module, _, qualname = name.partition(":")
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise CliError(f"--agent {name}: cannot import module {module!r} ({error})") from None
    try:
        return get_agent(aliases.get(name.lower(), name))
    except ValueError:
        raise CliError(f"unknown agent {name!r}; choose one of: {_agent_choices()}, or module:Class") from None


def _register_env_packages(env_id: str) -> None:
    """Import the packages that register well-known env families (ale-py for ``ALE/...``)."""
    if env_id.startswith("ALE/") or "NoFrameskip" in env_id:
        try:
            import ale_py
            import gymnasium as gym

            gym.register_envs(ale_py)
        except ImportError:
            raise CliError(f"{env_id} needs ale-py: pip install 'rladapt[atari]'") from None


def _adapt(env_id: str, agent: AgentNeeds, overrides: dict[str, Any], env_kwargs: dict[str, Any] | None = None) -> Any:
    from rladapt import AutoAdapt

    _register_env_packages(env_id)
    if env_kwargs:
        overrides = {**overrides, "env_kwargs": {**env_kwargs, **overrides.get("env_kwargs", {})}}
    return AutoAdapt(env_id, agent, **overrides)


def _adapt_fields() -> list[str]:
    from rladapt.adapt import PARALLEL_OPTIONS, AdaptOptions

    return [f.name for f in dataclasses.fields(AdaptOptions)] + list(PARALLEL_OPTIONS)


# -------------------------------------------------------------------------------------------
# Commands
# -------------------------------------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> int:
    from rladapt.callbacks import CheckpointCallback, EvalCallback, StopOnReward

    if args.resume:
        agent, env, run_dir, steps, num_envs, checkpoint_every, log_every = _resume(args)
    else:
        if args.env is None:
            raise CliError("which env? pass ENV (e.g. CartPole-v1), or --resume RUN_DIR to continue a run")
        cls = _agent_class(args.agent)
        settings, overrides = parse_settings(args.set, cls, _adapt_fields())
        overrides.update(_game_overrides(args))
        if args.seed is not None:
            settings["seed"] = args.seed
        try:
            agent = cls(**settings)
        except TypeError as e:
            raise CliError(str(e)) from None
        env = _adapt(args.env, agent, overrides)
        print(f"{cls.__name__} on {args.env}; AutoAdapt plan:\n{env.plan}\n")
        # without --run-dir, learn claims runs/<agent>-<env>-<time> itself, and removes it again if the run fails to start
        run_dir = Path(args.run_dir) if args.run_dir else None
        steps = args.steps if args.steps is not None else parse_steps("100k")
        num_envs, checkpoint_every, log_every = args.num_envs, args.checkpoint_every, None
    callbacks: list[Any] = []
    if args.eval_every or args.video:
        callbacks.append(EvalCallback(
            every=args.eval_every or steps, episodes=args.eval_episodes, video=args.video, gif=args.gif,
        ))
    if args.checkpoint_every:  # small snapshots to evaluate; RUN_DIR/checkpoint.pt holds the state to resume from
        callbacks.append(CheckpointCallback(args.checkpoint_every, training_state=False))
    if args.stop_at_reward is not None:
        callbacks.append(StopOnReward(args.stop_at_reward, source="eval" if args.eval_every else "episodes"))
    logger: list[Any] = []
    if args.wandb:
        from rladapt.logging.wandb import WandbLogger

        logger.append(WandbLogger(project=args.project, name=args.name, tags=args.tags or (), log_checkpoint=True))
    if args.tensorboard:
        logger.append("tensorboard")
    try:
        agent.learn(env, steps, num_envs=num_envs, workers=args.workers, logger=logger, callbacks=callbacks,
                    progress=not args.no_progress, run_dir=run_dir, checkpoint_every=checkpoint_every, log_every=log_every)
    except KeyboardInterrupt:
        if agent.observation_space is not None and agent.run_dir is not None:
            agent.save(agent.run_dir / "agent.pt")
            print(f"\ninterrupted after {agent.num_timesteps:,} steps; saved {agent.run_dir / 'agent.pt'}", file=sys.stderr)
        return 130
    finally:
        env.close()
    evals = next((c.results for c in callbacks if isinstance(c, EvalCallback)), [])
    if evals:
        step, result = evals[-1]
        print(f"evaluation at {step:,} steps: return {result.mean:.2f} +- {result.std:.2f} over {len(result.returns)} episodes")
    print(f"trained {agent.num_timesteps:,} steps; run directory {agent.run_dir} (agent.pt, config.json, metrics.jsonl)")
    return 0


def _resume(args: argparse.Namespace) -> tuple[Any, Any, Path, int, int | None, int | None, int | None]:
    """``(agent, env, run_dir, remaining steps, num_envs, checkpoint_every, log_every)`` to continue
    the run in ``args.resume`` from its ``checkpoint.pt``, with the env and settings of its ``config.json``."""
    import rladapt
    from rladapt.checkpoint import CheckpointError

    run_dir = Path(args.resume)
    config_path, checkpoint = run_dir / "config.json", run_dir / "checkpoint.pt"
    if not config_path.is_file():
        raise CliError(f"--resume {run_dir}: no config.json there; is it a run directory?")
    if not checkpoint.is_file():
        raise CliError(f"--resume {run_dir}: no checkpoint.pt there (the run was trained without --checkpoint-every, "
                       f"or stopped before its first checkpoint); start it again")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    given = [flag for flag, value in (("ENV", args.env), ("--set", args.set), ("--seed", args.seed), ("--steps", args.steps),
                                      ("--num-envs", args.num_envs), ("--run-dir", args.run_dir)) if value]
    if given:
        raise CliError(f"--resume continues the run as it was configured; drop {', '.join(given)}")
    try:
        agent = rladapt.load(checkpoint)
    except CheckpointError as e:
        raise CliError(str(e)) from None
    if agent.unfinished_run is None:
        raise CliError(f"--resume {run_dir}: the run is complete ({agent.num_timesteps:,} steps); nothing to resume")
    total = agent.run_start + agent.run_steps
    remaining = total - agent.num_timesteps
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in (config.get("adapt") or {}).items()}
    env = _adapt(config["env"], agent, overrides, config.get("env_kwargs"))
    print(f"resuming {type(agent).__name__} on {config['env']} in {run_dir} from checkpoint.pt at step "
          f"{agent.num_timesteps:,} of {total:,}: {remaining:,} steps to go (schedules, replay and metrics go on; "
          f"the envs restart their episodes)\n")
    checkpoint_every = args.checkpoint_every or config.get("checkpoint_every")
    return agent, env, run_dir, remaining, config.get("num_envs"), checkpoint_every, config.get("log_every")


def cmd_tune(args: argparse.Namespace) -> int:
    from rladapt.tune import require_optuna, tune

    if args.resume and not args.run_dir:
        raise CliError("--resume continues the study in --run-dir RUN_DIR; pass it")
    _register_env_packages(args.env)
    pruner = require_optuna().pruners.NopPruner() if args.pruner == "none" else None
    result = tune(args.env, agent=_agent_class(args.agent), trials=args.trials, seeds=args.seeds, steps=args.steps,
                  run_dir=args.run_dir, eval_episodes=args.eval_episodes, evaluations=args.evaluations,
                  resume=args.resume, seed=args.seed, pruner=pruner, logger="tensorboard" if args.tensorboard else None)
    print(f"study {result.study_name} in {result.study_path}: {result.completed} trials completed, {result.pruned} pruned")
    if result.best_settings is None:
        print("no trial completed: every one was pruned; nothing to recommend")
        return 0
    print(f"best trial {result.best_trial}: mean evaluation return {result.best_value:.2f} over {args.seeds} seeds")
    print("\n".join(result.set_options()))
    print(f"saved to {result.best_path}")
    return 0


def _resolve_checkpoint(path: Path) -> tuple[Path, dict[str, Any]]:
    """``(checkpoint file, config.json of its run or {})`` for a checkpoint file or run directory."""
    if not path.exists():
        raise CliError(f"{path} does not exist")
    if path.is_dir():
        candidates = [path / "agent.pt", path / "checkpoint.pt", *sorted((path / "checkpoints").glob("*.pt"))[-1:]]
        found = next((c for c in candidates if c.exists()), None)
        if found is None:
            raise CliError(f"{path} holds no checkpoint (agent.pt, checkpoint.pt or checkpoints/*.pt)")
        path = found
    for folder in (path.parent, path.parent.parent):
        config = folder / "config.json"
        if config.exists():
            return path, json.loads(config.read_text(encoding="utf-8"))
    return path, {}


def cmd_eval(args: argparse.Namespace) -> int:
    import rladapt
    from rladapt.checkpoint import CheckpointError

    checkpoint, config = _resolve_checkpoint(Path(args.checkpoint))
    env_id = args.env or config.get("env")
    if not env_id:
        raise CliError(f"which env? {checkpoint} is not inside a run directory with config.json; pass --env ENV_ID")
    try:
        agent = rladapt.load(checkpoint)
    except CheckpointError as e:
        raise CliError(str(e)) from None
    overrides = dict(config.get("adapt") or {}) if not args.env or args.env == config.get("env") else {}
    env_kwargs = config.get("env_kwargs") if env_id == config.get("env") else None
    env = _adapt(env_id, agent, {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}, env_kwargs)
    try:
        if args.render:
            result = agent.play(env, episodes=args.episodes, render=args.render, deterministic=not args.stochastic,
                                seed=args.seed, delay=args.delay, max_steps=args.max_episode_steps)
        elif args.opponent is not None:
            result = agent.evaluate(env, episodes=args.episodes, deterministic=not args.stochastic, seed=args.seed,
                                    opponent=args.opponent, max_episode_steps=args.max_episode_steps)
        else:
            video_dir = None
            if args.video or args.gif:
                video_dir = Path(args.video_dir) if args.video_dir else checkpoint.parent / "videos" / f"eval-{checkpoint.stem}"
            result = agent.evaluate(env, episodes=args.episodes, deterministic=not args.stochastic, seed=args.seed,
                                    video_dir=video_dir, gif=args.gif, max_episode_steps=args.max_episode_steps)
            if video_dir is not None:
                print(f"videos in {video_dir}")
    finally:
        env.close()
    print(f"{type(agent).__name__} on {env_id}: return {result.mean:.2f} +- {result.std:.2f} over {len(result.returns)} "
          f"episodes (mean length {result.lengths.mean():.1f})")
    if result.outcomes is not None:
        print(_game_rates(result))
    return 0


def _game_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """AutoAdapt's ``opponent``/``seat`` from ``--opponent``/``--seat`` (turn-based games)."""
    out: dict[str, Any] = {}
    if getattr(args, "opponent", None) is not None:
        out["opponent"] = args.opponent
    if getattr(args, "seat", None) is not None:
        out["seat"] = args.seat
    return out


def _game_rates(result: Any) -> str:
    """Win/draw/loss rates of a turn-based evaluation, overall and per seat, one line each."""
    lines = []
    for seat, rates in [(None, {**result.rates(), "games": len(result.outcomes)}), *result.by_seat().items()]:
        where = "all seats" if seat is None else f"seat {seat}"
        lines.append(f"  vs {result.opponent}, {where}: win {rates['win']:.1%}  draw {rates['draw']:.1%}  "
                     f"loss {rates['loss']:.1%}  ({rates['games']} games)")
    return "\n".join(lines)


def cmd_play(args: argparse.Namespace) -> int:
    import rladapt
    from rladapt.checkpoint import CheckpointError

    checkpoint, config = _resolve_checkpoint(Path(args.agent))
    try:
        agent = rladapt.load(checkpoint)
    except CheckpointError as e:
        raise CliError(str(e)) from None
    if args.human and args.opponent is not None:
        raise CliError(f"--opponent {args.opponent} does not apply with --human: you take one seat (--seat) and the agent "
                       f"plays all the others; drop --opponent")
    overrides: dict[str, Any] = {}
    if args.opponent is not None:
        overrides["opponent"] = args.opponent
    if args.seat is not None and not args.human:
        overrides["seat"] = args.seat
    # With --human the env is the agent's own (seats or not: search agents move for every player);
    # play seats you and the agent in it.
    env = _adapt(args.env, agent, overrides)
    try:
        human_seat = (args.seat if args.seat is not None else 0) if args.human else None
        result = agent.play(env, episodes=args.episodes, render="ansi", deterministic=not args.stochastic, seed=args.seed,
                            delay=args.delay, human_seat=human_seat)
    finally:
        env.close()
    if result.outcomes is not None:
        print(_game_rates(result))
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    cls = _agent_class(args.agent)
    _, overrides = parse_settings(args.set, cls, _adapt_fields())
    env = _adapt(args.env, cls, overrides)
    try:
        print(f"{args.env} for {cls.__name__}:")
        print(env.plan)
        print(f"\nobservation: {env.observation_space}\naction: {env.action_space}")
        if env.metadata.get("action_mask"):
            print("invalid-action mask: info['action_mask']")
    finally:
        env.close()
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from rladapt.logging.plot import plot_runs

    size = re.fullmatch(r"(\d+)x(\d+)", args.size)
    if not size:
        raise CliError(f"--size takes WIDTHxHEIGHT, e.g. 1000x600; got {args.size!r}")
    out = args.out
    if out is None:
        out = Path(args.runs[0]) / "returns.png" if len(args.runs) == 1 and (Path(args.runs[0]) / "metrics.jsonl").exists() else Path("returns.png")
    try:
        path = plot_runs(args.runs, out, width=int(size.group(1)), height=int(size.group(2)), title=args.title,
                         smooth=args.smooth)
    except FileNotFoundError as e:
        raise CliError(str(e)) from None
    print(f"wrote {path}")
    return 0


# -------------------------------------------------------------------------------------------
# The parser
# -------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``rladapt`` argument parser (one sub-command per action)."""
    parser = argparse.ArgumentParser(
        prog="rladapt",
        description="Train any gymnasium env with any RL agent: rladapt adapts the env to the agent.",
        epilog="Run 'rladapt COMMAND --help' for a command's options.",
    )
    from rladapt import __version__

    parser.add_argument("--version", action="version", version=f"rladapt {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    setting = dict(action="append", default=[], metavar="KEY=VALUE",
                   help="an agent setting (lr=3e-4, hidden=[128,128]) or an AutoAdapt override (frame_stack=4); repeatable")

    train = commands.add_parser("train", help="train an agent on an env", description=(
        "Train an agent; the run directory gets config.json, metrics.jsonl, episodes.jsonl, agent.pt and videos."))
    train.add_argument("env", metavar="ENV", nargs="?", default=None,
                       help="gymnasium env id, e.g. CartPole-v1, ALE/Pong-v5, rladapt/Grid-v0 (not with --resume)")
    train.add_argument("--agent", default="ppo", help=f"{_agent_choices()}, or module:Class (default: ppo)")
    train.add_argument("--steps", type=parse_steps, default=None, help="env steps: 5000, 100k, 1.5M (default: 100k; not with --resume)")
    train.add_argument("--num-envs", type=_positive_int, default=None, help="envs stepped in parallel (default: the agent's)")
    train.add_argument("--workers", type=_count, default=0, help="run the envs in this many worker processes (default: 0, in-process)")
    train.add_argument("--seed", type=int, default=None, help="seed for torch, numpy and the envs")
    train.add_argument("--set", **setting)
    train.add_argument("--run-dir", default=None, help="run directory (default: runs/<agent>-<env>-<time>)")
    train.add_argument("--eval-every", type=parse_steps, default=None, help="evaluate every this many env steps")
    train.add_argument("--eval-episodes", type=_positive_int, default=5, help="episodes per evaluation (default: 5)")
    train.add_argument("--video", action="store_true", help="record evaluation episodes (mp4) of the env's own frames")
    train.add_argument("--gif", action="store_true", help="also write the evaluation videos as animated GIFs")
    train.add_argument("--checkpoint-every", type=parse_steps, default=None, help=(
        "every this many steps save RUN_DIR/checkpoint.pt (the whole training state, replay included, to --resume "
        "from) and checkpoints/step-N.pt (the agent, to evaluate)"))
    train.add_argument("--resume", metavar="RUN_DIR", default=None, help=(
        "continue a run killed or stopped before its end from RUN_DIR/checkpoint.pt, with its config.json, to its "
        "planned steps, in the same run directory; the envs restart their episodes"))
    train.add_argument("--stop-at-reward", type=float, default=None, help="stop when the recent mean return reaches this")
    train.add_argument("--wandb", action="store_true", help="also log to Weights & Biases (offline without an API key)")
    train.add_argument("--tensorboard", action="store_true", help="also write TensorBoard event files (RUN_DIR/tensorboard)")
    train.add_argument("--project", default="rladapt", help="W&B project (default: rladapt)")
    train.add_argument("--name", default=None, help="W&B run name (default: the run directory's name)")
    train.add_argument("--tags", nargs="+", default=None, help="W&B run tags")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("--opponent", default=None, help=(
        "turn-based games: who plays the other seats: random (default), self, pool (snapshots of the learner) or a checkpoint path"))
    train.add_argument("--seat", type=int, default=None, help="turn-based games: the learner's seat (default: alternate between episodes)")
    train.set_defaults(func=cmd_train)

    evaluate = commands.add_parser("eval", help="evaluate a saved agent", description=(
        "Evaluate a checkpoint (a .pt file or a run directory); the env comes from the run's config.json or --env."))
    evaluate.add_argument("checkpoint", metavar="CHECKPOINT", help="agent.pt, a checkpoint file, or a run directory")
    evaluate.add_argument("--env", default=None, help="env id (default: the one in the run's config.json)")
    evaluate.add_argument("--episodes", type=_positive_int, default=10, help="episodes (default: 10)")
    evaluate.add_argument("--max-episode-steps", type=_positive_int, default=None, metavar="N",
                          help="end an episode after N steps (default: the env's own limit, at most 100,000)")
    evaluate.add_argument("--seed", type=int, default=None, help="seed of the first reset")
    evaluate.add_argument("--stochastic", action="store_true", help="sample actions instead of taking the most likely")
    evaluate.add_argument("--video", action="store_true", help="record the episodes as mp4 files")
    evaluate.add_argument("--gif", action="store_true", help="record the episodes as animated GIFs (and mp4)")
    evaluate.add_argument("--video-dir", default=None, help="where videos go (default: next to the checkpoint, videos/)")
    evaluate.add_argument("--render", choices=["ansi", "human"], default=None,
                          help="play in the terminal (ansi: the env's text and the agent's action values) or a window")
    evaluate.add_argument("--delay", type=float, default=0.0, help="seconds between steps with --render")
    evaluate.add_argument("--opponent", default=None, help=(
        "turn-based games: play against this opponent (random, self, pool or a checkpoint path) and print win/draw/loss rates per seat"))
    evaluate.set_defaults(func=cmd_eval)

    play = commands.add_parser("play", help="watch a saved agent play, or play against it", description=(
        "Play ENV in the terminal with a saved agent: its view of every move at each step. In a turn-based game, "
        "--human lets you play a seat against it (moves by number or name, read from standard input)."))
    play.add_argument("env", metavar="ENV", help="env id, e.g. rladapt/TicTacToe-v0 or pettingzoo.classic.tictactoe_v3")
    play.add_argument("--agent", required=True, metavar="CKPT", help="agent.pt, a checkpoint file, or a run directory")
    play.add_argument("--human", action="store_true", help=(
        "turn-based games: you play one seat (--seat) and the agent every other one, any agent, any number of seats"))
    play.add_argument("--seat", type=int, default=None, help="with --human your seat (default 0: you move first); else the agent's")
    play.add_argument("--opponent", default=None, help=(
        "turn-based games without --human: the agent's opponent (default: random; search agents: itself at every seat)"))
    play.add_argument("--episodes", type=_positive_int, default=1, help="episodes (games) to play (default: 1)")
    play.add_argument("--seed", type=int, default=None, help="seed of the first reset")
    play.add_argument("--stochastic", action="store_true", help="the agent samples its moves instead of taking the most likely")
    play.add_argument("--delay", type=float, default=0.0, help="seconds between steps")
    play.set_defaults(func=cmd_play)

    plan = commands.add_parser("plan", help="show how AutoAdapt joins an env to an agent", description=(
        "Print the wrappers AutoAdapt inserts between ENV and the agent, in order, and why."))
    plan.add_argument("env", metavar="ENV", help="gymnasium env id")
    plan.add_argument("--agent", default="ppo", help=f"{_agent_choices()}, or module:Class (default: ppo)")
    plan.add_argument("--set", **setting)
    plan.set_defaults(func=cmd_plan)

    tune = commands.add_parser("tune", help="tune an agent's settings with Optuna", description=(
        "Search an agent's settings with Optuna (pip install 'rladapt[tune]'): each trial trains --seeds agents and "
        "scores the mean of their final deterministic evaluations; trials that fall behind are pruned at the "
        "evaluations on the way. The study is stored in RUN_DIR/study.db: running again with the same --run-dir "
        "continues it. The best settings are printed as --set options for 'rladapt train' and saved to RUN_DIR/best.json."))
    tune.add_argument("env", metavar="ENV", help="gymnasium env id")
    tune.add_argument("--agent", default="ppo", help=f"an agent with a search space: {_tunable_agents()} (default: ppo)")
    tune.add_argument("--trials", type=_positive_int, default=20, help="trials the study should hold, finished ones included (default: 20)")
    tune.add_argument("--seeds", type=_positive_int, default=3, help="training runs per trial, each its own seed (default: 3)")
    tune.add_argument("--steps", type=parse_steps, default=parse_steps("100k"), help="env steps of each training run (default: 100k)")
    tune.add_argument("--run-dir", default=None, help="tuning run directory (default: runs/tune-<agent>-<env>-<time>)")
    tune.add_argument("--eval-episodes", type=_positive_int, default=10, help="episodes per evaluation (default: 10)")
    tune.add_argument("--evaluations", type=_positive_int, default=4,
                      help="evaluations per training run, the last at its end (default: 4)")
    tune.add_argument("--pruner", choices=["median", "none"], default="median",
                      help="median: stop trials below the median of earlier ones at the same step (default); none: never")
    tune.add_argument("--seed", type=int, default=0, help="seed of trial 0's first run; trial n's start at SEED + n * SEEDS (default: 0)")
    tune.add_argument("--resume", action="store_true", help="continue the study in --run-dir (an error if there is none)")
    tune.add_argument("--tensorboard", action="store_true", help="also write TensorBoard event files in each training run's directory")
    tune.set_defaults(func=cmd_tune)

    plot = commands.add_parser("plot", help="plot return vs env steps of runs", description=(
        "Draw a PNG of episode return against env steps; runs differing only in seed are averaged, "
        "their spread (min to max) shaded."))
    plot.add_argument("runs", metavar="RUN_DIR", nargs="+", help="run directories, or folders of them (e.g. runs/)")
    plot.add_argument("--out", default=None, help="PNG file (default: RUN_DIR/returns.png for one run, else ./returns.png)")
    plot.add_argument("--title", default=None, help="plot title")
    plot.add_argument("--size", default="1000x600", help="WIDTHxHEIGHT in pixels (default: 1000x600)")
    plot.add_argument("--smooth", type=_positive_int, default=None, help="episodes averaged per point (default: automatic)")
    plot.set_defaults(func=cmd_plot)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``rladapt`` command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "render", None) != "human":
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # frames for videos need no window
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into head & co., which stopped reading
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as error:  # noqa: BLE001 - user errors become one line; RLADAPT_DEBUG shows the traceback
        if os.environ.get("RLADAPT_DEBUG"):
            raise
        from rladapt.errors import AdaptError

        expected = (CliError, AdaptError, ValueError, TypeError, FileNotFoundError, ImportError, RuntimeError)
        if not isinstance(error, expected):
            raise
        plain = isinstance(error, (CliError, AdaptError))
        kind = "" if plain else f"{type(error).__name__}: "
        hint = "" if plain else " (RLADAPT_DEBUG=1 shows the traceback)"
        print(f"rladapt {args.command}: error: {kind}{error}{hint}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
