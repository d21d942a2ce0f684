"""Every bad input is a clear error that names its cause, raised where it enters: settings at
construction, env spaces at adaptation, values per batch in the collector, arguments at the call.
And nothing is left half written (run directories, checkpoints)."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import rladapt
from rladapt import AutoAdapt
from rladapt.agents import A2C, DQN, PPO, SAC, QLearning
from rladapt.cli import main
from rladapt.collect import EnvError, Workers
from rladapt.errors import ActionMaskError, AdaptError, NonFiniteError, ObservationError

QUIET = dict(progress=False, run_dir=False)


# -------------------------------------------------------------------------------------------
# Small envs that break one promise each
# -------------------------------------------------------------------------------------------


class Line(gym.Env):
    """A valid env: 2 float observations, 3 actions; the subclasses break it in one place."""

    observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
    action_space = gym.spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.observe(), self.info()

    def step(self, action):
        self.t += 1
        return self.observe(), self.reward(), False, self.t >= 20, self.info()

    def observe(self):
        return np.zeros(2, np.float32)

    def reward(self):
        return 0.0

    def info(self):
        return {}


class WrongShape(Line):
    def observe(self):
        return np.zeros(3 if self.t else 2, np.float32)


class OutOfBounds(Line):
    def observe(self):
        return np.full(2, 5.0, np.float32)


class NaNObservation(Line):
    def observe(self):
        return np.array([0.0, np.nan if self.t == 5 else 0.0], np.float32)


class NaNInNestedObservation(Line):
    """A Dict observation that AutoAdapt flattens for an MLP: the NaN must be named by its key."""

    observation_space = gym.spaces.Dict({
        "pos": gym.spaces.Box(-1, 1, (2,), np.float32),
        "mode": gym.spaces.Discrete(3),
        "vel": gym.spaces.Box(-np.inf, np.inf, (2, 3), np.float32),
    })

    def observe(self):
        vel = np.zeros((2, 3), np.float32)
        if self.t == 4:
            vel[1, 2] = np.inf
        return {"pos": np.zeros(2, np.float32), "mode": 1, "vel": vel}


class NaNReward(Line):
    def reward(self):
        return float("nan") if self.t == 3 else 0.0


class InfReward(Line):
    def reward(self):
        return float("inf") if self.t == 4 else 0.0


class RaisesAtStep7(Line):
    def step(self, action):
        if self.t == 6:
            raise RuntimeError("the simulator crashed")
        return super().step(action)


class RaisesAtReset(Line):
    def reset(self, *, seed=None, options=None):
        raise OSError("no license for the simulator")


class RaisesAtTheSecondEpisode(Line):
    resets = 0

    def reset(self, *, seed=None, options=None):
        self.resets += 1
        if self.resets == 3:  # AutoAdapt's probe, the vector env's reset, then the autoreset
            raise OSError("no license for the simulator")
        return super().reset(seed=seed, options=options)


class MaskOfWrongSize(Line):
    def info(self):
        return {"action_mask": np.ones(2, bool)}


class EveryActionMasked(Line):
    def info(self):
        return {"action_mask": np.array([True, True, True]) if self.t == 0 else np.zeros(3, bool)}


class MissingKey(gym.Env):
    observation_space = gym.spaces.Dict({"position": gym.spaces.Box(-1, 1, (2,), np.float32),
                                         "goal": gym.spaces.Box(-1, 1, (2,), np.float32)})
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        return {"position": np.zeros(2, np.float32), "goal": np.zeros(2, np.float32)}, {}

    def step(self, action):
        return {"position": np.zeros(2, np.float32)}, 0.0, False, False, {}


class FractionalState(gym.Env):
    """Declares Discrete states but returns a float after the first step."""

    observation_space = gym.spaces.Discrete(4)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        return 0, {}

    def step(self, action):
        return 1.5, 0.0, False, False, {}


class NoObservationSpace(gym.Env):
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        return np.zeros(2), {}


class Float64Observations(Line):
    def observe(self):
        return np.zeros(2, np.float64)


def trained_ppo() -> PPO:
    agent = PPO(seed=0, n_steps=8, num_envs=2)
    return agent.learn("CartPole-v1", 16, **QUIET)


def learn_on(env_class, agent=None, **kwargs):
    agent = agent or PPO(seed=0, n_steps=8, num_envs=2)
    return agent.learn(lambda: env_class(), 64, **QUIET, **kwargs)


# -------------------------------------------------------------------------------------------
# The table: (what, call, error type, words the message must contain)
# -------------------------------------------------------------------------------------------

CASES = [
    # settings, checked at construction
    ("gamma above 1", lambda: PPO(gamma=2.0), ValueError, ["gamma", "[0, 1]"]),
    ("negative lr", lambda: DQN(lr=-1e-3), ValueError, ["lr", "> 0"]),
    ("NaN lr", lambda: SAC(lr=float("nan")), ValueError, ["lr"]),
    ("lr as text", lambda: PPO(lr="fast"), TypeError, ["lr", "number"]),
    ("fractional n_steps", lambda: A2C(n_steps=2.5), TypeError, ["n_steps", "integer"]),
    ("zero batch size", lambda: PPO(batch_size=0), ValueError, ["batch_size", ">= 1"]),
    ("zero buffer", lambda: DQN(buffer_size=0), ValueError, ["buffer_size"]),
    ("tau 0", lambda: SAC(tau=0.0), ValueError, ["tau", "(0, 1]"]),
    ("epsilon above 1", lambda: DQN(exploration_final_eps=1.5), ValueError, ["exploration_final_eps"]),
    ("ent_coef word", lambda: SAC(ent_coef="sometimes"), ValueError, ["ent_coef", "'auto'"]),
    ("a switch as 1", lambda: PPO(normalize_rewards=1), TypeError, ["normalize_rewards", "True or False"]),
    ("negative seed", lambda: PPO(seed=-1), ValueError, ["seed", ">= 0"]),
    ("layer of size 0", lambda: PPO(hidden=(64, 0)), ValueError, ["hidden", "positive"]),
    ("unknown setting", lambda: PPO(gama=0.9), TypeError, ["gama", "valid settings", "gamma"]),
    ("CUDA on a CPU torch", lambda: PPO(device="cuda"), ValueError, ["cuda", "no CUDA device", "cpu"]),
    ("not a device", lambda: PPO(device="banana"), ValueError, ["banana", "not a torch device"]),
    # learn's and evaluate's arguments
    ("steps as text", lambda: PPO(seed=0).learn("CartPole-v1", "100", **QUIET), TypeError, ["steps", "'100'"]),
    ("zero steps", lambda: PPO(seed=0).learn("CartPole-v1", 0, **QUIET), ValueError, ["steps", "positive"]),
    ("zero envs", lambda: PPO(seed=0).learn("CartPole-v1", 64, num_envs=0, **QUIET), ValueError, ["num_envs"]),
    ("fractional workers", lambda: PPO(seed=0).learn("CartPole-v1", 64, workers=1.5, **QUIET), ValueError, ["workers", "1.5"]),
    ("negative workers", lambda: PPO(seed=0).learn("CartPole-v1", 64, workers=-1, **QUIET), ValueError, ["workers", "-1"]),
    ("unknown vectorization", lambda: PPO(seed=0).learn("CartPole-v1", 64, vectorization="threads", **QUIET),
     ValueError, ["vectorization", "'threads'"]),
    ("unknown logger", lambda: PPO(seed=0).learn("CartPole-v1", 64, logger="tb", **QUIET), ValueError, ["logger", "'tb'"]),
    ("a number as callback", lambda: PPO(seed=0).learn("CartPole-v1", 64, callbacks=[5], **QUIET), TypeError, ["callback", "int"]),
    ("zero log_every", lambda: PPO(seed=0).learn("CartPole-v1", 64, log_every=0, **QUIET), ValueError, ["log_every"]),
    ("zero evaluation episodes", lambda: trained_ppo().evaluate("CartPole-v1", episodes=0), ValueError, ["episodes"]),
    ("a number as env", lambda: PPO(seed=0).learn(5, 64, **QUIET), TypeError, ["env", "int"]),
    ("a misspelt env id", lambda: PPO(seed=0).learn("CartPol-v1", 64, **QUIET), AdaptError, ["CartPol-v1", "CartPole"]),
    ("another env's spaces", lambda: trained_ppo().learn("Acrobot-v1", 64, **QUIET), ValueError, ["built for", "this env has"]),
    # envs, checked at adaptation and per step or per batch
    ("no observation space", lambda: AutoAdapt(NoObservationSpace(), PPO()), AdaptError, ["observation_space", "NoObservationSpace"]),
    ("an agent that cannot take the observations", lambda: QLearning(seed=0).learn("Pendulum-v1", 64, **QUIET),
     AdaptError, ["QLearning", "observation_bins"]),
    ("observation of the wrong shape", lambda: learn_on(WrongShape), EnvError,
     ["env 0", "ObservationError", "shape (3,)", "shape (2,)", "step()"]),
    ("observation outside the bounds", lambda: learn_on(OutOfBounds), EnvError, ["env 0", "observation[0]", "outside", "[-1.0, 1.0]"]),
    ("a Discrete state that is not an integer", lambda: learn_on(FractionalState, DQN(seed=0, num_envs=2)), EnvError,
     ["ObservationError", "observation is 1.5", "Discrete(4)"]),
    ("missing key of a nested observation", lambda: learn_on(MissingKey), EnvError, ["observation['goal']", "missing"]),
    ("NaN observation", lambda: learn_on(NaNObservation), NonFiniteError, ["env 0", "observation[1] = nan", "step 5", "check_finite=False"]),
    ("inf in a nested observation, flattened for the agent", lambda: learn_on(NaNInNestedObservation), NonFiniteError,
     ["env 0", "returned observation['vel'][1, 2] = inf", "step 4"]),
    ("inf in a nested observation, in a worker", lambda: learn_on(NaNInNestedObservation, workers=Workers(1, max_restarts=0)),
     rladapt.collect.WorkerError, ["NonFiniteError", "observation['vel'][1, 2] = inf"]),
    ("NaN reward", lambda: learn_on(NaNReward, DQN(seed=0, learning_starts=0, num_envs=2)), NonFiniteError, ["reward = nan", "step 3"]),
    ("infinite reward", lambda: learn_on(InfReward), NonFiniteError, ["reward = inf", "step 4"]),
    ("env raising in step", lambda: learn_on(RaisesAtStep7), EnvError,
     ["env", "RuntimeError: the simulator crashed", "step()", "step 7 of its episode"]),
    ("env raising in step, async", lambda: learn_on(RaisesAtStep7, vectorization="async"), EnvError,
     ["RuntimeError: the simulator crashed", "step 7 of its episode"]),
    ("env raising at its first reset", lambda: AutoAdapt(RaisesAtReset(), PPO()), AdaptError,
     ["RaisesAtReset.reset()", "OSError", "no license"]),
    ("env raising at a later reset", lambda: learn_on(RaisesAtTheSecondEpisode), EnvError,
     ["OSError: no license for the simulator in reset()"]),
    ("NaN reward in a worker", lambda: learn_on(NaNReward, workers=Workers(2, max_restarts=0)), rladapt.collect.WorkerError,
     ["worker", "NonFiniteError", "returned reward = nan at its step 3"]),
    # masks
    ("mask of the wrong size", lambda: learn_on(MaskOfWrongSize), EnvError, ["action_mask", "(2,)", "(3,)"]),
    ("every action masked", lambda: learn_on(EveryActionMasked, DQN(seed=0, learning_starts=0, num_envs=2)), EnvError,
     ["every action is masked"]),
    ("act with a mask of the wrong size", lambda: trained_ppo().act(np.zeros(4, np.float32), mask=np.ones(3, bool)),
     ActionMaskError, ["shape (3,)", "(2,)"]),
    # act
    ("act before learning", lambda: PPO().act(np.zeros(4)), RuntimeError, ["no networks yet", "learn"]),
    ("act on the wrong shape", lambda: trained_ppo().act(np.zeros(3, np.float32)), ObservationError, ["shape (3,)", "shape (4,)"]),
    ("act on a batch", lambda: trained_ppo().act(np.zeros((5, 4), np.float32)), ObservationError, ["shape (5, 4)", "not a batch"]),
    # checkpoints
    ("load a missing file", lambda: rladapt.load("/nonexistent/agent.pt"), FileNotFoundError, ["no checkpoint", "agent.pt"]),
    ("load with a bad setting", lambda: rladapt.load(trained_ppo().save(Path.cwd() / "a.pt"), gamma=3.0),
     ValueError, ["gamma", "[0, 1]"]),
]


@pytest.mark.parametrize(("what", "call", "error", "words"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_a_clear_error(what, call, error, words, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # whatever a case writes stays in its own directory
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    for word in words:
        assert word in message, f"{what}: {word!r} not in {message!r}"


def test_the_table_has_thirty_cases_or_more():
    assert len(CASES) >= 30


def test_a_junk_checkpoint_is_refused_and_named(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    with pytest.raises(rladapt.checkpoint.CheckpointError, match="junk.pt"):
        rladapt.load(junk)


@pytest.mark.parametrize(("argv", "words"), [
    (["train", "CartPole-v1", "--agent", "ppx", "--steps", "10"], ["unknown agent 'ppx'", "ppo"]),
    (["train", "CartPole-v1", "--steps", "10", "--set", "gamma"], ["--set takes key=value", "'gamma'"]),
    (["train", "CartPole-v1", "--steps", "10", "--set", "gamma=2"], ["gamma", "[0, 1]"]),
])
def test_the_cli_reports_bad_input_in_one_line(argv, words, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) != 0
    err = capsys.readouterr().err
    for word in words:
        assert word in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "runs").exists()  # nothing written for a run that never started


def test_the_cli_refuses_negative_steps(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "CartPole-v1", "--steps", "-5"])
    assert info.value.code == 2 and "not a number of steps: '-5'" in capsys.readouterr().err


def test_nothing_is_written_half(tmp_path, monkeypatch):
    # A run that fails before it starts leaves no run directory.
    run_dir = tmp_path / "run"
    with pytest.raises(ValueError, match="logger"):
        PPO(seed=0).learn("CartPole-v1", 64, logger="tb", progress=False, run_dir=run_dir)
    assert not run_dir.exists()
    with pytest.raises(ValueError, match="gamma"):
        PPO(gamma=7).learn("CartPole-v1", 64, progress=False, run_dir=run_dir)
    assert not run_dir.exists()
    # A save that fails half way (the disk fills up) leaves the previous checkpoint whole and no temporary file.
    agent = trained_ppo()
    path = agent.save(tmp_path / "agent.pt")
    before = path.read_bytes()

    def disk_full(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(rladapt.checkpoint.torch, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        agent.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agent.pt"]
    assert rladapt.load(path).num_timesteps == agent.num_timesteps


def test_the_finite_check_is_a_setting():
    agent = PPO(seed=0, n_steps=8, num_envs=2, check_finite=False)
    learn_on(NaNReward, agent)  # trains on: the user turned the check off
    assert agent.num_timesteps >= 64


def test_adapted_envs_keep_gymnasium_promises():
    """Rewards are Python floats (BipedalWalker returns numpy.float32), observations come in the
    declared dtype, and the adapted env passes gymnasium's env checker."""
    env = AutoAdapt("BipedalWalker-v3", SAC())
    env.reset(seed=0)
    _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
    assert type(reward) is float and type(terminated) is bool and type(truncated) is bool
    cast = AutoAdapt(Float64Observations(), PPO())
    obs, _ = cast.reset(seed=0)
    assert obs.dtype == np.float32 and cast.step(0)[0].dtype == np.float32
    check_env(cast, skip_render_check=True)


class _SampledEnv(gym.Env):
    """A real gymnasium env over given spaces: observations sampled (seeded), actions checked."""

    def __init__(self, observation_space, action_space):
        self.observation_space, self.action_space = observation_space, action_space
        self.actions = []

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.observation_space.seed(seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        assert self.action_space.contains(action), action
        self.actions.append(action)
        return self.observation_space.sample(), 0.0, False, False, {}


def test_multidiscrete_observations_with_start_are_inside_their_bounds():
    from gymnasium import spaces

    from rladapt.spaces import out_of_bounds

    space = spaces.MultiDiscrete([3, 3], start=[5, -2])
    assert out_of_bounds(space, np.array([7, 0])) is None
    assert "is not a value of" in out_of_bounds(space, np.array([4, 0]))
    env = AutoAdapt(_SampledEnv(space, spaces.Discrete(2)), PPO())
    env.reset(seed=0)
    for _ in range(20):
        env.step(env.action_space.sample())  # EnforceSpaces no longer calls start-shifted values out of bounds


def test_an_integer_box_action_gets_a_float_unit_box_and_integer_actions():
    from gymnasium import spaces

    from rladapt.agents import SAC

    raw = _SampledEnv(spaces.Box(-1, 1, (3,)), spaces.Box(0, 5, (2,), dtype=np.int64))
    env = AutoAdapt(raw, SAC())
    assert env.action_space == spaces.Box(-1.0, 1.0, (2,), np.float32)
    env.reset(seed=0)
    for unit in ([-1.0, 1.0], [0.0, 0.3], [2.0, -3.0]):
        env.step(np.array(unit, dtype=np.float32))
    assert [a.tolist() for a in raw.actions] == [[0, 5], [2, 3], [5, 0]]  # rounded into [0, 5]
    assert all(a.dtype == np.int64 for a in raw.actions)


def test_an_unbounded_box_action_is_refused_for_continuous_agents_naming_the_dimensions():
    from gymnasium import spaces

    space = spaces.Box(np.array([-1.0, -np.inf]), np.array([1.0, np.inf]), dtype=np.float32)
    with pytest.raises(AdaptError, match=r"infinite bounds in dimension\(s\) \[1\]"):
        AutoAdapt(_SampledEnv(spaces.Box(-1, 1, (3,)), space), PPO())


def test_random_agent_acts_on_a_zero_dimensional_box_and_refuses_to_learn():
    from gymnasium import spaces

    from rladapt.agents import RandomAgent

    agent = RandomAgent(seed=0)
    agent.setup(spaces.Box(-1, 1, (3,)), spaces.Box(-1.0, 1.0, shape=()))
    action = agent.act(np.zeros(3, np.float32))
    assert action.shape == () and agent.action_space.contains(action)
    with pytest.raises(TypeError, match="nothing to learn"):
        agent.learn("CartPole-v1", 10)


def test_frame_skip_with_action_masks_is_refused_naming_both():
    with pytest.raises(AdaptError, match=r"frame_skip=2 with action masks .*Taxi"):
        AutoAdapt("Taxi-v4", DQN(), frame_skip=2)
    assert "RepeatAction" in AutoAdapt("Taxi-v4", DQN(), frame_skip=2, mask=False).plan.wrappers


def test_a_discrete_observation_with_a_start_is_renumbered_from_zero_for_tabular_agents():
    # Found by tests/test_fuzz_spaces.py: Discrete(1, start=1) reached examples/custom_agent.py's
    # ExpectedSarsa unchanged, whose Q-table lookup q[obs] then indexed row 1 of a 1-row table.
    class StartedStates(gym.Env):
        observation_space = gym.spaces.Discrete(3, start=5)
        action_space = gym.spaces.Discrete(2)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            return 5, {}

        def step(self, action):
            return 7, 0.0, True, False, {}

    env = AutoAdapt(StartedStates(), QLearning())  # the adapted space is every tabular agent's
    assert env.observation_space == gym.spaces.Discrete(3)
    assert env.reset(seed=0)[0] == 0 and env.step(0)[0] == 2
