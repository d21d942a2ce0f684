"""Collection in worker processes (``learn(..., workers=N)``): learning, faults, clean shutdown.

Every test here ends with no child process left (checked by the autouse fixture: the test
process's children in /proc, after stopping Python's own multiprocessing helpers, the forkserver
and the resource tracker, which Python starts once per process and keeps for later use) and no new
shared-memory file.
"""

from __future__ import annotations

import contextlib
import functools
import json
import multiprocessing
import multiprocessing.forkserver
import multiprocessing.resource_tracker
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from rladapt import AutoAdapt
from rladapt.agents import DQN, PPO
from rladapt.callbacks import Callback
from rladapt.collect import WorkerError, Workers

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parent.parent


def children(pid: int) -> list[tuple[int, str]]:
    """``(pid, command line)`` of the live child processes of ``pid`` (read from /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            state = stat[stat.rindex(")") + 2]
            if ppid == pid and state != "Z":
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    out.append((int(entry), f.read().replace(b"\0", b" ").decode(errors="replace")))
        except (OSError, ValueError):
            continue
    return out


def shm_files() -> set[str]:
    return set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()


@pytest.fixture(autouse=True)
def no_leftovers():
    before_shm = shm_files()
    yield
    multiprocessing.forkserver._forkserver._stop()  # Python's helpers, started once per process
    multiprocessing.resource_tracker._resource_tracker._stop()  # (by forkserver and spawn)
    assert multiprocessing.active_children() == []
    assert children(os.getpid()) == []
    leaked = {f for f in shm_files() - before_shm if f.startswith("torch")}
    assert not leaked, leaked


class RaisingEnv(gym.Env):
    """CartPole-like counter env whose ``step`` raises after ``fail_at`` steps."""

    observation_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = spaces.Discrete(2)

    def __init__(self, fail_at: int = 20) -> None:
        self.fail_at, self.t = fail_at, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.t += 1
        if self.t >= self.fail_at:
            raise ValueError(f"boom at step {self.t}")
        return np.zeros(2, np.float32), 1.0, False, self.t % 10 == 0, {}


def worker_pids() -> list[int]:
    return [p.pid for p in multiprocessing.active_children() if p.name.startswith("rladapt-worker")]


def test_ppo_with_two_workers_solves_cartpole():
    agent = PPO(seed=0)
    env = AutoAdapt(gym.make("CartPole-v1"), agent)
    agent.learn(env, 100_000, workers=2, progress=False, run_dir=False)
    assert agent.num_timesteps <= 100_096  # whole iterations of 256 steps, as in-process
    result = agent.evaluate(env, episodes=20)
    assert result.mean >= 475, result


def test_dqn_with_two_workers_learns_and_logs_policy_lag():
    agent = DQN(seed=0)
    env = AutoAdapt("CartPole-v1", agent)
    rows = []
    agent.learn(env, 30_000, workers=2, progress=False, run_dir=False, callbacks=[lambda a, m: rows.append(m)])
    lags = [m["collect/policy_lag"] for m in rows if "collect/policy_lag" in m]
    assert lags and max(lags) <= 2 * Workers(2).chunk_slots  # bounded by the chunk slots
    result = agent.evaluate(env, episodes=20)
    assert result.mean >= 100, result  # random: ~22; 190 to 496 over seeds 0-2 in 30k steps


class CountSteps(Callback):
    """Counts the env steps ``on_step`` saw and the rewards of the valid ones."""

    def __init__(self) -> None:
        self.env_steps, self.valid_steps, self.reward = 0, 0, 0.0

    def on_step(self, run, step):
        valid = step.get("valid")
        self.env_steps += step.batch_size[0]
        self.valid_steps += int(valid.sum())
        self.reward += float(step.get(("next", "reward"))[valid].sum())


def test_on_step_sees_every_rollout_step_with_workers():
    agent = PPO(seed=0, n_steps=32)
    counter = CountSteps()
    agent.learn(AutoAdapt("CartPole-v1", agent), 1024, num_envs=4, workers=2, progress=False,
                run_dir=False, callbacks=[counter])
    assert counter.env_steps == agent.num_timesteps == 1024
    # CartPole pays 1 per real step; only NEXT_STEP autoreset rows are invalid (one per episode).
    assert counter.reward == counter.valid_steps > 1024 - agent.num_episodes - 4


def test_on_step_sees_every_streamed_transition_with_workers():
    agent = DQN(seed=0, learning_starts=200)
    counter = CountSteps()
    agent.learn(AutoAdapt("CartPole-v1", agent), 1024, num_envs=4, workers=2, progress=False,
                run_dir=False, callbacks=[counter])
    assert counter.reward == counter.valid_steps == len(agent.replay)
    assert agent.num_timesteps - agent.num_episodes - 4 <= counter.valid_steps <= agent.num_timesteps


def test_killed_worker_is_restarted_and_the_run_completes():
    agent = PPO(seed=0, n_steps=64)
    env = AutoAdapt("CartPole-v1", agent)
    killed, rows = [], []

    def kill_once(agent, metrics):
        rows.append(metrics)
        if agent.num_updates == 3 and not killed:
            pid = worker_pids()[1]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    start = time.monotonic()
    with pytest.warns(RuntimeWarning, match="killed by SIGKILL; restarting it"):
        agent.learn(env, 8192, workers=2, progress=False, run_dir=False, callbacks=[kill_once])
    assert killed and agent.num_timesteps >= 8192
    assert rows[-1]["collect/worker_restarts"] == 1
    assert time.monotonic() - start < 120


def test_killed_streaming_worker_is_restarted_and_the_run_completes():
    # One-step replay, so each stored next observation is the env's own: within every stream a
    # transition that is not done must be followed by one that starts from its next observation,
    # across the restart too (the killed worker's streams end as truncations).
    agent = DQN(seed=0, learning_starts=500, n_step=1)
    env = AutoAdapt("CartPole-v1", agent)
    killed = []

    def kill_once(agent, metrics):
        if agent.num_timesteps >= 1000 and not killed:
            pid = worker_pids()[0]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    with pytest.warns(RuntimeWarning, match="restarting it"):
        agent.learn(env, 3000, workers=2, progress=False, run_dir=False, callbacks=[kill_once])
    assert killed and agent.num_timesteps >= 3000
    replay = agent.replay
    index = replay.indices()
    stored = replay.get(index)
    position = {(int(i % replay.num_envs), int(i // replay.num_envs)): row for row, i in enumerate(index)}
    followed = 0
    for (env_index, t), row in position.items():
        after = position.get((env_index, t + 1))
        if after is not None and not stored["next", "done"][row]:
            assert torch.equal(stored["next", "observation"][row], stored["observation"][after]), (env_index, t)
            followed += 1
    assert followed > 2500


def test_env_exception_in_a_worker_raises_with_env_index_and_traceback():
    agent = PPO(seed=0, num_envs=4, n_steps=16)
    start = time.monotonic()
    with pytest.warns(RuntimeWarning, match="restarting it"):
        with pytest.raises(WorkerError) as info:
            agent.learn(functools.partial(RaisingEnv, fail_at=40), 10_000, workers=Workers(2, max_restarts=1),
                        progress=False, run_dir=False)
    error = info.value
    assert time.monotonic() - start < 90
    assert error.env_index in range(4) and error.worker == error.env_index // 2
    message = str(error)
    assert f"env {error.env_index} (in worker {error.worker}) raised ValueError: boom at step 40 in step()" in message
    assert "failed 2 times (max_restarts=1)" in message
    assert "in step\n    raise ValueError" in message  # the original traceback, from the worker


def test_hung_worker_is_detected(tmp_path):
    agent = PPO(seed=0, num_envs=2, n_steps=16)
    hang = functools.partial(HangingEnv, str(tmp_path / "hung"))
    with pytest.warns(RuntimeWarning, match="made no env step for 3 s"):
        agent.learn(hang, 2048, workers=Workers(2, stall_timeout=3), progress=False, run_dir=False)
    assert agent.num_timesteps >= 2048


class HangingEnv(RaisingEnv):
    """Hangs once (in the first process that steps it 30 times), then behaves."""

    def __init__(self, marker: str) -> None:
        super().__init__(fail_at=10**9)
        self.marker = marker

    def step(self, action):
        if self.t == 30 and not os.path.exists(self.marker):
            Path(self.marker).touch()
            time.sleep(3600)
        return super().step(action)


class SlowEnv(RaisingEnv):
    """Takes ``seconds`` per step, as a heavy simulator does."""

    def __init__(self, seconds: float) -> None:
        super().__init__(fail_at=10**9)
        self.seconds = seconds

    def step(self, action):
        time.sleep(self.seconds)
        return super().step(action)


class SlowUpdate(Callback):
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_update(self, run, metrics):
        time.sleep(self.seconds)


def test_idle_workers_are_not_taken_as_hung_after_a_learner_update_longer_than_the_stall_timeout(recwarn):
    # The workers idle through a 2.5 s update; their first step of the next rollout takes longer
    # than one poll (1.2 s): their stall clocks must start when they get work, not at their last step.
    agent = PPO(seed=0, num_envs=2, n_steps=2, batch_size=4, n_epochs=1)
    agent.learn(functools.partial(SlowEnv, 1.2), 8, workers=Workers(2, stall_timeout=2.0), progress=False,
                run_dir=False, callbacks=[SlowUpdate(2.5)])
    assert agent.num_timesteps == 8
    assert [str(w.message) for w in recwarn if "made no env step" in str(w.message)] == []


def test_workers_need_at_least_one_env_each():
    with pytest.raises(ValueError, match="num_envs=2 is less than workers=3"):
        PPO(seed=0).learn("CartPole-v1", 64, num_envs=2, workers=3, progress=False, run_dir=False)


SCRIPT = """
import json, os, signal, sys, time
import multiprocessing
from rladapt.agents import PPO

# As when started from a terminal: a background job of a non-interactive shell (how CI may run
# pytest) inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler.
signal.signal(signal.SIGINT, signal.default_int_handler)

def record(agent, metrics):
    pids = [p.pid for p in multiprocessing.active_children() if p.name.startswith("rladapt-worker")]
    with open(sys.argv[1] + ".tmp", "w") as f:  # written whole, then renamed: the test never reads half a file
        json.dump(pids, f)
    os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    time.sleep(0.05)

if __name__ == "__main__":
    PPO(seed=0).learn("CartPole-v1", 10_000_000, workers=2, progress=False, run_dir=False, callbacks=[record])
"""


def test_ctrl_c_stops_every_worker(tmp_path):
    script, pids_file = tmp_path / "train.py", tmp_path / "pids.json"
    script.write_text(textwrap.dedent(SCRIPT))
    process = subprocess.Popen([sys.executable, str(script), str(pids_file)], cwd=ROOT, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not pids_file.exists() or not pids_file.read_text():
            assert process.poll() is None, process.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.2)
        time.sleep(0.5)
        pids = json.loads(pids_file.read_text())
        assert len(pids) == 2
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C in a terminal: the whole process group
        try:
            _, stderr = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:  # say who is still there and what the learner printed
            alive = subprocess.run(["ps", "-o", "pid,ppid,stat,etime,args", "-g", str(process.pid)],
                                   capture_output=True, text=True).stdout
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            _, stderr = process.communicate()
            pytest.fail(f"the run did not end within 60 s of Ctrl-C (workers {pids});\n"
                        f"processes of its group:\n{alive}\nits stderr:\n{stderr[-4000:]}")
    finally:
        process.kill()
        process.wait()
    assert "KeyboardInterrupt" in stderr
    assert stderr.count("Traceback") == 1  # the learner's only: workers ignore Ctrl-C
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or open(f"/proc/{pid}/stat").read().split()[2] == "Z", pid


# -------------------------------------------------------------------------------------------
# The Atari fast path: ale-py's C++ vector env with the Python pipeline's semantics
# -------------------------------------------------------------------------------------------


def _python_and_cpp(game: str):
    from rladapt import AgentSpec
    from rladapt.collect.atari import AtariPipelineVectorEnv, atari_fast_path

    spec = AgentSpec(observations={"image"}, actions={"discrete"}, frame_stack=4)
    # No no-op starts and no sticky actions: both sides are then deterministic given the actions.
    env = AutoAdapt(game, spec, noop_max=0, env_kwargs={"repeat_action_probability": 0.0})
    settings = atari_fast_path(env)
    assert settings is not None
    return env, AtariPipelineVectorEnv(1, **settings)


@pytest.mark.parametrize("game", ["ALE/Pong-v5", "ALE/SpaceInvaders-v5"])
def test_atari_fast_path_equals_the_python_pipeline_step_for_step(game):
    pytest.importorskip("ale_py")
    env, fast = _python_and_cpp(game)
    assert fast.single_observation_space == env.observation_space  # uint8 (4, 84, 84)
    assert fast.single_action_space == env.action_space
    obs, _ = env.reset(seed=3)
    fast_obs, _ = fast.reset(seed=3)
    assert fast_obs.dtype == np.uint8 and np.array_equal(obs, fast_obs[0])
    rng = np.random.default_rng(0)
    episodes = 0
    for t in range(4000):
        action = int(rng.integers(env.action_space.n))
        obs, reward, terminated, truncated, info = env.step(action)
        fast_obs, fast_reward, fast_term, fast_trunc, fast_info = fast.step(np.array([action]))
        assert np.array_equal(obs, fast_obs[0]), t
        assert (reward, terminated, truncated) == (fast_reward[0], fast_term[0], fast_trunc[0]), t
        if terminated or truncated:
            # Episode statistics: the raw score (not the clipped rewards) and the length in frames.
            assert fast_info["_episode"][0]
            assert fast_info["episode"]["r"][0] == info["episode"]["r"]
            assert fast_info["episode"]["l"][0] == info["episode"]["l"]
            episodes += 1
            obs, _ = env.reset()
            fast_obs = fast.step(np.array([0]))[0]  # NEXT_STEP autoreset: the reset observation
            assert np.array_equal(obs, fast_obs[0])
            break
    assert episodes == 1
    if game == "ALE/SpaceInvaders-v5":
        assert info["episode"]["r"] > 50  # raw points (5 to 30 per alien): clipping did not touch them


def test_atari_fast_path_only_for_the_standard_pipeline():
    pytest.importorskip("ale_py")
    from rladapt.collect.atari import atari_fast_path

    assert atari_fast_path(AutoAdapt("ALE/Pong-v5", PPO())) == {
        "game": "pong", "frame_skip": 4, "noop_max": 30, "height": 84, "width": 84, "stack": 4,
        "pad_with_reset": True, "clip_rewards": True, "repeat_action_probability": 0.25,
        "full_action_space": False, "max_frames": 108_000,
    }
    assert atari_fast_path(AutoAdapt("ALE/Pong-v5", PPO(), terminal_on_life_loss=True)) is None
    assert atari_fast_path(AutoAdapt("ALE/Pong-v5", PPO(), grayscale=False)) is None
    assert atari_fast_path(AutoAdapt("CartPole-v1", PPO())) is None


def test_ppo_collects_atari_in_workers_with_the_fast_path():
    pytest.importorskip("ale_py")
    agent = PPO(seed=0, num_envs=4, n_steps=32, batch_size=64, n_epochs=1)
    env = AutoAdapt("ALE/Pong-v5", agent)
    agent.learn(env, 256, workers=2, progress=False, run_dir=False)
    data = agent.rollout.data
    assert data["observation"].dtype == torch.uint8 and data["observation"].shape == (32, 4, 4, 84, 84)
    assert bool((data["observation"][-1].flatten(1).float().std(1) > 0).all())  # every env's frames arrived
    assert bool(data["valid"].all())  # no episode ended within 64 steps


UNGUARDED_SCRIPTS = {
    "top_level_call": """
        from rladapt.agents import PPO
        PPO(seed=0).learn("CartPole-v1", 256, workers=2, progress=False, run_dir=False)
    """,
    "main_called_without_guard": """
        from rladapt.agents import PPO

        def main():
            PPO(seed=0).learn("CartPole-v1", 256, workers=2, progress=False, run_dir=False)

        main()
    """,
}


@pytest.mark.parametrize("name", sorted(UNGUARDED_SCRIPTS))
def test_a_script_starting_workers_without_a_main_guard_gets_one_error_naming_the_fix_before_any_process(tmp_path, name):
    script = tmp_path / f"{name}.py"
    script.write_text(textwrap.dedent(UNGUARDED_SCRIPTS[name]))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("rladapt.collect.guard.MainGuardError: learn(..., workers=2) starts worker processes")
    assert str(script) in last and 'if __name__ == "__main__":' in last
    assert "WorkerError" not in done.stderr and "restart" not in done.stderr  # no worker was started


def test_a_guarded_script_starts_its_workers(tmp_path):
    script = tmp_path / "guarded.py"
    script.write_text(textwrap.dedent("""
        from rladapt.agents import PPO

        def main():
            agent = PPO(seed=0).learn("CartPole-v1", 256, workers=2, progress=False, run_dir=False)
            print("trained", agent.num_timesteps)

        if __name__ == "__main__":
            main()
    """))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("trained")


def test_a_script_piped_on_stdin_starts_its_workers(tmp_path):
    """``python - < script`` names its main "<stdin>", a file no child can import: the children skip
    it (an env class defined in the script reaches them by value) instead of failing to start."""
    script = textwrap.dedent("""
        import gymnasium as gym
        from rladapt.agents import PPO

        class Corridor(gym.Env):
            observation_space = gym.spaces.Box(-1.0, 1.0, (2,))
            action_space = gym.spaces.Discrete(2)

            def reset(self, *, seed=None, options=None):
                super().reset(seed=seed)
                self.t = 0
                return self.observation_space.sample(), {}

            def step(self, action):
                self.t += 1
                return self.observation_space.sample(), float(action), False, self.t >= 20, {}

        agent = PPO(seed=0, n_steps=16).learn(Corridor, 256, workers=2, progress=False, run_dir=False)
        print("trained", agent.num_timesteps)
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-"], input=script, capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("trained") and "FileNotFoundError" not in done.stderr
