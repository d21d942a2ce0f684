"""AlphaZero on PettingZoo's connect_four_v3: win rate against a random player and a 2-ply lookahead
player as training goes, and wall time per self-play game with workers=1 and workers=2.

    python benchmarks/alphazero_connect4.py --minutes 9 --out benchmarks/results/alphazero_connect4

Training runs in stages of --stage-games self-play games (in --workers processes); after each
stage the agent plays --eval-games games from each seat against each opponent (search with
--eval-simulations, no noise). Then the self-play timing: the same agent plays --timing-games
games with workers=1 and with workers=2 (wall time per game; the processes are started first).
Writes ``results.json`` and ``win_rate.png`` into --out. ``--timing-only RUN/agent.pt`` measures
only the self-play speed of a trained agent: CPU seconds per game in the learner's process
(workers=0; what a busy shared machine does not distort) and wall seconds per game with workers=1
and workers=2, with the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
from pettingzoo.classic import connect_four_v3  # noqa: E402

from typing import Any  # noqa: E402

from rladapt import AutoAdapt  # noqa: E402
from rladapt.agents import AlphaZero  # noqa: E402
from rladapt.callbacks import Callback  # noqa: E402
from rladapt.search import GameEnv, MinimaxPlayer, RandomPlayer, play_match  # noqa: E402
from rladapt.search.selfplay import SelfPlayCollector  # noqa: E402


def evaluate(agent: AlphaZero, games: int, simulations: int, seed: int) -> dict[str, float]:
    board = agent.game
    out = {}
    for name, make in (("random", lambda s: RandomPlayer(s)), ("lookahead2", lambda s: MinimaxPlayer(depth=2, seed=s))):
        results = [play_match(board, agent.search_player(simulations), make(seed + seat), games, seat, seed=seed) for seat in (0, 1)]
        for seat, r in enumerate(results):
            out[f"{name}/seat{seat}_win"] = r.win_rate
            out[f"{name}/seat{seat}_loss"] = r.losses / r.games
        out[f"{name}/win"] = sum(r.wins for r in results) / sum(r.games for r in results)
        out[f"{name}/score"] = sum(r.wins + 0.5 * r.draws for r in results) / sum(r.games for r in results)
    return out


def timing(agent: AlphaZero, workers: int, games: int) -> float:
    collector = SelfPlayCollector(agent, workers)
    try:
        collector.collect(agent, workers)  # warm up: first weights read, imports
        start = time.perf_counter()
        collector.collect(agent, games)
        return (time.perf_counter() - start) / games
    finally:
        collector.close()


def timing_report(agent: AlphaZero, games: int) -> dict[str, float]:
    report = {"load_before": os.getloadavg()[0]}
    agent.game  # noqa: B018  (the game made before timing)
    cpu = time.process_time()
    for _ in range(games):
        agent.self_play_game(agent.game.spawn())
    report["cpu_s_per_game_in_process"] = (time.process_time() - cpu) / games
    for w in (1, 2):
        report[f"wall_s_per_game_workers={w}"] = timing(agent, w, games)
    report["load_after"] = os.getloadavg()[0]
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=9.0, help="training wall-clock budget")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--simulations", type=int, default=48)
    parser.add_argument("--eval-simulations", type=int, default=48)
    parser.add_argument("--stage-games", type=int, default=96)
    parser.add_argument("--eval-games", type=int, default=10, help="games per seat per opponent at each evaluation")
    parser.add_argument("--timing-games", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/alphazero_connect4")
    parser.add_argument("--timing-only", default=None, help="a trained agent's checkpoint: measure self-play speed only")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    if args.timing_only:
        import rladapt

        trained = rladapt.load(args.timing_only)
        report = timing_report(trained, args.timing_games)
        print(report, flush=True)
        (out / "timing.json").write_text(json.dumps(report, indent=1))
        return

    agent = AlphaZero(seed=args.seed, simulations=args.simulations, eval_simulations=args.eval_simulations,
                      dirichlet_alpha=1.0, temperature_moves=8, games_per_iteration=16, gradient_steps=16,
                      batch_size=256, hidden=(256, 256), replay_size=50_000)
    env = AutoAdapt(GameEnv.pettingzoo(connect_four_v3.env()), agent)
    rows = []
    start = time.perf_counter()
    cpu_start = time.process_time()
    row = {"games": 0, "positions": 0, "train_s": 0.0, **evaluate(agent_bound(agent, env), args.eval_games, args.eval_simulations, 1000)}
    rows.append(row)
    print(row, flush=True)
    stages = StagedEvaluation(args, rows)
    agent.learn(env, 10_000_000, workers=args.workers, run_dir=out / "run", progress=False, callbacks=[stages])
    times = timing_report(agent, args.timing_games)
    print(times, flush=True)
    result = {"settings": vars(args), "agent": agent.settings(resolved=True), "rows": rows, "seconds_per_game": times,
              "wall_s": time.perf_counter() - start, "learner_cpu_s": time.process_time() - cpu_start,
              "cores": os.cpu_count()}
    (out / "results.json").write_text(json.dumps(result, indent=1, default=str))
    plot(rows, out / "win_rate.png")


class StagedEvaluation(Callback):
    """Evaluate after every ``stage_games`` self-play games (time spent evaluating is not counted
    as training); stop when the training budget is spent."""

    def __init__(self, args: argparse.Namespace, rows: list[dict]) -> None:
        self.args, self.rows = args, rows
        self.trained_s, self.mark = 0.0, None
        self.next_games = args.stage_games

    def on_learn_start(self, run: Any) -> None:
        self.mark = time.perf_counter()

    def on_update(self, run: Any, metrics: dict[str, Any]) -> bool | None:
        agent = run.agent
        if agent.num_episodes < self.next_games:
            return None
        self.trained_s += time.perf_counter() - self.mark
        self.next_games += self.args.stage_games
        row = {"games": agent.num_episodes, "positions": agent.num_timesteps, "train_s": round(self.trained_s, 1),
               "policy_loss": metrics.get("train/policy_loss"), "value_loss": metrics.get("train/value_loss"),
               "selfplay_s_per_game": metrics.get("selfplay/seconds_per_game"),
               **evaluate(agent, self.args.eval_games, self.args.eval_simulations, 1000 + len(self.rows))}
        self.rows.append(row)
        print(row, flush=True)
        self.mark = time.perf_counter()
        return False if self.trained_s >= self.args.minutes * 60 else None


def agent_bound(agent: AlphaZero, env: GameEnv) -> AlphaZero:
    """The untrained agent, bound to the env (the evaluation before any training)."""
    from rladapt.spec import bind_agent

    bind_agent(agent, env.observation_space, env.action_space, "board_game", env=env)
    return agent


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    games = [r["games"] for r in rows]
    for key, label in (("random/win", "vs random"), ("lookahead2/win", "vs 2-ply lookahead"), ("lookahead2/score", "vs 2-ply (wins + draws/2)")):
        ax.plot(games, [r[key] for r in rows], marker="o", label=label)
    ax.set_xlabel("self-play games")
    ax.set_ylabel("win rate (both seats)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("AlphaZero on connect_four_v3, 2 CPU cores")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
