"""Per-kind defaults: the env families they may depend on, the colored exploration noise of
continuous control, and the defaults surviving a checkpoint."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import rladapt
from rladapt.spec import bind_agent
from rladapt import AutoAdapt
from rladapt.adapt import env_family
from rladapt.agents import A2C, PPO, SAC
from rladapt.agents.noise import ColoredNoise, colored_noise

torch.set_num_threads(1)


@pytest.mark.parametrize("env_id, family", [
    ("CartPole-v1", "classic_control"), ("Pendulum-v1", "classic_control"), ("LunarLander-v3", "box2d"),
    ("Hopper-v5", "mujoco"), ("ALE/Pong-v5", "atari"), ("Taxi-v4", "toy_text"),
    ("rladapt/TicTacToe-v0", "board_game"), ("tests/NestedDict-v0", "other"),
])
def test_env_families_come_from_the_base_env_class(env_id, family):
    env = gym.make(env_id)
    assert env_family(env) == family
    assert AutoAdapt(env, PPO()).family == family


def test_ppo_and_a2c_defaults_follow_the_family_not_the_env_id():
    def hp(agent_class, env_id):
        agent = agent_class(seed=0)
        env = AutoAdapt(env_id, agent)
        bind_agent(agent, env.observation_space, env.action_space, env.family)
        return agent.hp

    cartpole, acrobot, lander = hp(PPO, "CartPole-v1"), hp(PPO, "Acrobot-v1"), hp(PPO, "LunarLander-v3")
    assert (cartpole.gamma, cartpole.n_steps) == (acrobot.gamma, acrobot.n_steps) == (0.98, 32)  # classic control
    assert (lander.gamma, lander.n_steps, lander.num_envs, lander.ent_coef) == (0.999, 1024, 16, 0.01)  # Box2D
    assert hp(PPO, "Pendulum-v1").gamma == 0.99 and hp(PPO, "Hopper-v5").batch_size == 64
    assert hp(PPO, "Hopper-v5").log_std_init == -1.0 and not hp(PPO, "Pendulum-v1").log_std_init  # MuJoCo only
    assert hp(PPO, "rladapt/TicTacToe-v0").n_steps == 128 and hp(PPO, "rladapt/TicTacToe-v0").gamma == 0.98  # board games
    assert hp(A2C, "rladapt/TicTacToe-v0").n_steps == hp(A2C, "CartPole-v1").n_steps  # A2C has no board-game row
    assert hp(A2C, "LunarLander-v3").gamma == 0.995 and hp(A2C, "LunarLander-v3").anneal_lr
    assert hp(A2C, "CartPole-v1").gamma == 0.99 and not hp(A2C, "CartPole-v1").anneal_lr
    assert PPO(seed=0, gamma=0.9).learn("LunarLander-v3", 64, num_envs=2, progress=False, run_dir=False).hp.gamma == 0.9


def test_a_checkpoint_keeps_the_family_and_so_the_defaults(tmp_path):
    agent = PPO(seed=0, n_steps=4, num_envs=2)
    agent.learn("LunarLander-v3", 8, progress=False, run_dir=False)
    loaded = rladapt.load(agent.save(tmp_path / "lander.pt"))
    assert loaded.env_family == "box2d" and loaded.hp == agent.hp


@pytest.mark.parametrize("beta", [0.0, 1.0, 2.0])
def test_colored_noise_is_unit_gaussian_per_step_and_correlated_by_its_color(beta):
    x = colored_noise(beta, (300,), 1000, np.random.default_rng(0))
    assert x.std() == pytest.approx(1.0, abs=0.05) and abs(x.mean()) < 0.05
    lag1 = np.mean([np.corrcoef(s[:-1], s[1:])[0, 1] for s in x])
    assert {0.0: lag1 < 0.05, 1.0: 0.5 < lag1 < 0.95, 2.0: lag1 > 0.95}[beta], lag1


def test_colored_noise_restarts_where_an_episode_starts():
    def run(restart_env0_at_10: bool) -> np.ndarray:
        noise = ColoredNoise(1.0, dim=1, length=50, seed=0)
        return np.stack([noise(np.array([t == 0 or (restart_env0_at_10 and t == 10), t == 0])) for t in range(12)])

    plain, restarted = run(False), run(True)
    assert np.array_equal(plain[:10], restarted[:10])
    assert restarted[10, 0, 0] != plain[10, 0, 0]  # env 0: a new sequence from its episode start
    assert np.array_equal(plain[:, 1], restarted[:, 1])  # env 1: unbroken


class ActionLog(rladapt.callbacks.Callback):
    def __init__(self) -> None:
        self.actions: list[float] = []

    def on_step(self, run, step):
        self.actions.append(float(step["action"][0, 0]))


def test_sac_explores_with_noise_correlated_in_time():
    correlation = {}
    for beta in (1.0, 0.0):
        agent, log = SAC(seed=0, learning_starts=0, noise_beta=beta), ActionLog()
        agent.learn(AutoAdapt("MountainCarContinuous-v0", agent), 400, num_envs=1, progress=False, run_dir=False,
                    callbacks=[log])
        correlation[beta] = np.corrcoef(log.actions[:-1], log.actions[1:])[0, 1]
    assert correlation[1.0] > correlation[0.0] + 0.3, correlation


def test_a_user_agent_with_the_two_argument_setup_still_trains_on_any_family():
    """``setup(observation_space, action_space)`` is the public hook; the family arrives beside it."""
    seen = {}

    class TwoArgumentSetup(PPO):
        def setup(self, observation_space, action_space):
            seen["family"] = self.env_family
            super().setup(observation_space, action_space)

    agent = TwoArgumentSetup(seed=0, n_steps=4, num_envs=2)
    agent.learn("LunarLander-v3", 8, progress=False, run_dir=False)
    assert seen["family"] == "box2d" and agent.hp.gamma == 0.999


def test_log_std_init_sets_the_initial_std_of_the_gaussian_policy():
    for agent_class in (PPO, A2C):
        agent = agent_class(seed=0, log_std_init=-1.5, n_steps=4, num_envs=2)
        agent.learn("Pendulum-v1", 8, progress=False, run_dir=False)
        assert agent.hp.log_std_init == -1.5
        fresh = agent_class(seed=0, log_std_init=-1.5)
        env = AutoAdapt("Pendulum-v1", fresh)
        bind_agent(fresh, env.observation_space, env.action_space, env.family)
        assert torch.allclose(fresh.policy.head.log_std, torch.full_like(fresh.policy.head.log_std, -1.5))
    with pytest.raises(ValueError, match="log_std_init"):
        PPO(log_std_init=5.0)
