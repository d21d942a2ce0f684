"""TD3/DDPG and distributional DQN (QR-DQN, C51, noisy layers, Rainbow): the losses and the
projection against hand computations, the noisy layer, learning on Pendulum and CartPole, masks on
TicTacToe, images, checkpoints, settings and the CLI (fixed seeds)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from rladapt import AutoAdapt, load
from rladapt.agents import C51, DDPG, DQN, QRDQN, TD3, Rainbow
from rladapt.agents.dqn import categorical_projection, quantile_huber_loss
from rladapt.agents.nets import NoisyLinear, QNetwork
from rladapt.cli import main

from counting import CountInvalid  # tests/counting.py

torch.set_num_threads(1)


def assert_close(actual: torch.Tensor, expected: list, atol: float = 1e-6) -> None:
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=actual.dtype), atol=atol, rtol=0)


# ----------------------------------------------------------------------------------------------
# QR-DQN's loss and C51's projection, by hand
# ----------------------------------------------------------------------------------------------


def test_quantile_huber_loss_matches_a_hand_computation():
    # Two quantiles at tau = 0.25, 0.75; targets 0.5 and 3; kappa = 1.
    # theta_0 = 0: u = (0.5, 3), both >= 0 -> weight 0.25; Huber 0.125 and 2.5 -> 0.25 * 2.625 / 2 = 0.328125
    # theta_1 = 1: u = (-0.5, 2) -> weights 0.25 and 0.75; Huber 0.125 and 1.5 -> (0.03125 + 1.125) / 2 = 0.578125
    loss = quantile_huber_loss(torch.tensor([[0.0, 1.0]]), torch.tensor([[0.5, 3.0]]), kappa=1.0)
    assert loss.shape == (1,)
    assert loss.item() == pytest.approx(0.90625)
    # kappa = 2: Huber 0.125 and 4 (u = 3 > kappa: 2 * (3 - 1)) for theta_0; 0.125 and 2 (u = 2 <= kappa: 0.5 * 4)
    # for theta_1, each divided by kappa: (0.25 * 4.125 / 2 + (0.25 * 0.125 + 0.75 * 2) / 2) / 2 = 0.640625
    loss = quantile_huber_loss(torch.tensor([[0.0, 1.0]]), torch.tensor([[0.5, 3.0]]), kappa=2.0)
    assert loss.item() == pytest.approx(0.640625)


def test_quantile_huber_loss_is_zero_at_the_target_and_pulls_each_quantile_its_own_way():
    quantiles = torch.tensor([[1.0, 1.0]], requires_grad=True)
    assert quantile_huber_loss(quantiles.detach(), torch.tensor([[1.0, 1.0]])).item() == 0.0
    # Far away (the linear part of the Huber loss, slope kappa = 1): with every target above, the gradient of
    # quantile i is -tau_i (mean over the targets of -tau_i): each quantile is pulled up by its own level.
    quantile_huber_loss(quantiles, torch.tensor([[10.0, 10.0]])).sum().backward()
    assert_close(quantiles.grad, [[-0.25, -0.75]])


def test_categorical_projection_matches_hand_computations():
    support = torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0])
    uniform = torch.full((1, 5), 0.2)
    # r = 1, discount 0.5: Tz = 0, 0.5, 1, 1.5, 2 -> atom 2 gets 0.2 + 0.1, atom 3 0.1 + 0.2 + 0.1, atom 4 0.1 + 0.2.
    target = categorical_projection(uniform, torch.tensor([1.0]), torch.tensor([0.5]), support)
    assert_close(target, [[0.0, 0.0, 0.3, 0.4, 0.3]])
    # Beyond v_max: everything is clipped onto the last atom.
    target = categorical_projection(uniform, torch.tensor([5.0]), torch.tensor([0.9]), support)
    assert_close(target, [[0.0, 0.0, 0.0, 0.0, 1.0]])
    # A terminal transition (discount 0) puts all the mass at r = -0.25: 0.25 on atom -1, 0.75 on atom 0.
    peaked = torch.tensor([[0.0, 0.0, 0.0, 0.0, 1.0]])
    target = categorical_projection(peaked, torch.tensor([-0.25]), torch.tensor([0.0]), support)
    assert_close(target, [[0.0, 0.25, 0.75, 0.0, 0.0]])


class FixedOutput(nn.Module):
    """A stand-in Q network that returns the same ``[B, n, atoms]`` output for any batch."""

    def __init__(self, out: torch.Tensor) -> None:
        super().__init__()
        self.out = out

    def forward(self, obs, noise=True):
        return self.out[: obs.shape[0]]


def _bound(cls, **settings):
    agent = cls(seed=0, **settings)
    agent.setup(gym.spaces.Box(-1, 1, (2,), np.float32), gym.spaces.Discrete(3))
    return agent


def test_qr_target_bootstraps_from_the_best_valid_action_and_not_on_termination():
    agent = _bound(QRDQN, quantiles=2, double=False)
    # Next-state quantiles of actions 0, 1, 2: means 2, 15, 0. Action 1 is the best, but masked in rows 0 and 1.
    next_quantiles = torch.tensor([[1.0, 3.0], [10.0, 20.0], [0.0, 0.0]]).expand(3, 3, 2)
    agent.q_target = FixedOutput(next_quantiles)
    mask = torch.tensor([[True, False, True], [True, False, True], [True, True, True]])
    reward, discount = torch.tensor([1.0, 1.0, 0.5]), torch.tensor([0.5, 0.0, 0.5])
    target = agent.distributional_target(reward, torch.zeros(3, 2), discount, mask)
    assert_close(target, [
        [1.0 + 0.5 * 1.0, 1.0 + 0.5 * 3.0],   # best valid action 0
        [1.0, 1.0],                           # terminal: the reward alone
        [0.5 + 0.5 * 10.0, 0.5 + 0.5 * 20.0],  # action 1 valid: it is the best
    ])
    # Double DQN: the online network picks the next action (here it prefers action 2, valid everywhere), the
    # target network values it (its quantiles of action 2 are 0): the targets are the rewards.
    agent = _bound(QRDQN, quantiles=2, double=True)
    agent.q_target = FixedOutput(next_quantiles)
    agent.q = FixedOutput(torch.tensor([[0.0, 0.0], [5.0, 5.0], [9.0, 9.0]]).expand(3, 3, 2))
    target = agent.distributional_target(reward, torch.zeros(3, 2), discount, mask)
    assert_close(target, [[1.0, 1.0], [1.0, 1.0], [0.5, 0.5]])


def test_c51_target_projects_the_best_valid_action_and_masks_fall_back_on_a_final_state():
    agent = _bound(C51, atoms=5, v_min=-2.0, v_max=2.0, double=False)
    assert agent.support.tolist() == [-2.0, -1.0, 0.0, 1.0, 2.0]
    # Logits: action 0 all mass on atom 0 (-2), action 1 on atom 4 (+2: the best), action 2 on atom 2 (0).
    big = 50.0
    logits = torch.zeros(3, 5)
    logits[0, 0] = logits[1, 4] = logits[2, 2] = big
    agent.q_target = FixedOutput(logits.expand(3, 3, 5))
    mask = torch.tensor([[True, False, True], [False, False, False], [True, True, True]])
    target = agent.distributional_target(torch.tensor([0.5, 1.0, 0.0]), torch.zeros(3, 2),
                                         torch.tensor([0.5, 0.0, 0.5]), mask)
    # Row 0: best valid action 2 (mean 0): Tz = 0.5 -> half on atom 0, half on atom 1 of the support.
    assert target[0].tolist() == pytest.approx([0.0, 0.0, 0.5, 0.5, 0.0], abs=1e-6)
    # Row 1: a final observation with no valid action and discount 0: all mass at r = 1.
    assert target[1].tolist() == pytest.approx([0.0, 0.0, 0.0, 1.0, 0.0], abs=1e-6)
    # Row 2: action 1 valid (mean 2): Tz = 0 + 0.5 * 2 = 1.
    assert target[2].tolist() == pytest.approx([0.0, 0.0, 0.0, 1.0, 0.0], abs=1e-6)


# ----------------------------------------------------------------------------------------------
# Noisy layers
# ----------------------------------------------------------------------------------------------


def test_noisy_linear_resamples_its_noise_and_is_deterministic_in_eval_mode():
    torch.manual_seed(0)
    layer = NoisyLinear(4, 3, sigma0=0.5)
    x = torch.randn(8, 4)
    g = torch.Generator().manual_seed(0)
    layer.reset_noise(g)
    first = layer(x)
    assert torch.equal(first, layer(x))  # the noise holds between resets
    layer.reset_noise(g)
    second = layer(x)
    assert not torch.allclose(first, second)  # a new draw
    mean = F.linear(x, layer.weight_mu, layer.bias_mu)
    assert not torch.allclose(second, mean)
    assert torch.equal(layer(x, noise=False), mean)
    layer.eval()
    assert torch.equal(layer(x), mean)
    layer.reset_noise(g)
    assert torch.equal(layer(x), mean)  # eval mode ignores the noise
    layer.train()
    # Factorised noise: eps_w = f(eps_out) f(eps_in)^T, eps_b = f(eps_out), f(x) = sign(x) sqrt|x|.
    eps_w = torch.outer(layer.eps_out, layer.eps_in)
    expected = F.linear(x, layer.weight_mu + layer.weight_sigma * eps_w, layer.bias_mu + layer.bias_sigma * layer.eps_out)
    assert torch.allclose(layer(x), expected)
    layer(x).sum().backward()
    assert layer.weight_sigma.grad.abs().sum() > 0 and layer.bias_sigma.grad.abs().sum() > 0


def test_noisy_dueling_distributional_q_network_shapes_and_greedy_acting_is_deterministic():
    space = gym.spaces.Box(-1, 1, (4,), np.float32)
    net = QNetwork(space, 3, (16,), dueling=True, atoms=7, noisy=True)
    assert sum(isinstance(m, NoisyLinear) for m in net.modules()) == 3  # hidden layer, advantage and value heads
    obs = torch.randn(5, 4)
    net.reset_noise(torch.Generator().manual_seed(0))
    assert net(obs).shape == (5, 3, 7)
    assert torch.equal(net(obs, noise=False), net(obs, noise=False))
    agent = _bound(Rainbow)
    assert agent.q.noisy and agent.q.dueling and agent.q.atoms == 51 and agent.hp.n_step == 3
    assert agent.hp.prioritized == "proportional" and agent.epsilon == 0.0
    obs = np.array([0.3, -0.2], np.float32)
    assert len({agent.act(obs) for _ in range(10)}) == 1  # deterministic: the mean weights


# ----------------------------------------------------------------------------------------------
# Learning
# ----------------------------------------------------------------------------------------------


def test_td3_learns_pendulum():
    agent = TD3(seed=0)
    env = AutoAdapt("Pendulum-v1", agent)
    agent.learn(env, 6_000, progress=False, run_dir=False)
    assert agent.critic.layers[0].weight.shape[0] == 2 and agent.hp.hidden == (128, 128)
    result = agent.evaluate(env, episodes=10, seed=1000)
    assert result.mean > -400, result  # random is about -1200


def test_qrdqn_solves_cartpole():
    """Stopped at the first 10-episode mean >= 475 of an evaluation every 5k steps, within the
    README row's 50k (seed 0 reaches it at 30k; trajectories differ by CPU, so no fixed step)."""
    agent = QRDQN(seed=0)
    env = AutoAdapt("CartPole-v1", agent)
    evaluations = []

    def stop_when_solved(agent, metrics):
        if agent.num_timesteps < 5_000 * (len(evaluations) + 1):
            return True
        evaluations.append(agent.evaluate(env, episodes=10, seed=1000).mean)
        return evaluations[-1] < 475

    agent.learn(env, 50_000, progress=False, run_dir=False, callbacks=[stop_when_solved])
    assert agent.q.atoms == 25
    assert evaluations and evaluations[-1] >= 475, evaluations


def test_rainbow_never_takes_an_invalid_move_on_tictactoe():
    CountInvalid.invalid.clear()
    agent = Rainbow(seed=0, learning_starts=200, batch_size=32, gradient_steps=2)

    def make_env():
        return AutoAdapt(CountInvalid(gym.make("rladapt/TicTacToe-v0")), agent)

    env = make_env()
    assert env.metadata.get("action_mask")
    agent.learn(make_env, 2_000, progress=False, run_dir=False)
    assert agent.use_masks and agent.replay.prioritized == "proportional"
    agent.evaluate(env, episodes=20, deterministic=False)
    agent.evaluate(env, episodes=5)
    assert not CountInvalid.invalid


def test_td3_on_image_observations_runs():
    agent = TD3(seed=0, learning_starts=64, batch_size=8, buffer_size=1_000, train_freq=4, gradient_steps=1)
    env = AutoAdapt(gym.wrappers.AddRenderObservation(gym.make("Pendulum-v1", render_mode="rgb_array"), render_only=True), agent)
    agent.learn(env, 160, num_envs=2, progress=False, run_dir=False)
    assert agent.obs_kind == "image" and agent.hp.hidden == (256, 256)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (3, 84, 84) and env.action_space.contains(agent.act(obs))


# ----------------------------------------------------------------------------------------------
# DDPG, checkpoints, settings, CLI
# ----------------------------------------------------------------------------------------------


def test_ddpg_is_td3_with_one_critic_no_smoothing_no_delay_and_round_trips_a_checkpoint(tmp_path):
    agent = DDPG(seed=0)
    assert (agent.config.critics, agent.config.policy_delay, agent.config.target_policy_noise) == (1, 1, 0.0)
    env = AutoAdapt("Pendulum-v1", agent)
    agent.learn(env, 1_200, progress=False, run_dir=False)
    assert agent.critic.layers[0].weight.shape[0] == 1
    assert agent.gradient_steps_done > 0
    path = agent.save(tmp_path / "ddpg.pt")
    loaded = load(path)
    assert type(loaded) is DDPG and loaded.gradient_steps_done == agent.gradient_steps_done
    for name in ("actor_optimizer", "critic_optimizer"):
        a, b = agent.optimizers()[name].state_dict(), loaded.optimizers()[name].state_dict()
        assert torch.equal(a["state"][0]["exp_avg"], b["state"][0]["exp_avg"])
    assert torch.equal(agent.actor_target_flat, loaded.actor_target_flat)
    obs, _ = env.reset(seed=3)
    assert np.array_equal(agent.act(obs), loaded.act(obs))


def test_rainbow_checkpoint_round_trip(tmp_path):
    agent = Rainbow(seed=0, learning_starts=100)
    env = AutoAdapt("CartPole-v1", agent)
    agent.learn(env, 300, progress=False, run_dir=False)
    loaded = load(agent.save(tmp_path / "rainbow.pt"))
    assert type(loaded) is Rainbow and loaded.hp.distributional == "c51" and loaded.q.noisy
    assert torch.equal(loaded.support, agent.support)
    obs, _ = env.reset(seed=0)
    assert loaded.act(obs) == agent.act(obs)
    assert loaded.action_values(obs).values == pytest.approx(agent.action_values(obs).values)


@pytest.mark.parametrize("cls, settings, error", [
    (DQN, dict(distributional="iqn"), ValueError),
    (DQN, dict(distributional=1), TypeError),
    (DQN, dict(noisy="yes"), TypeError),
    (DQN, dict(quantiles=0), ValueError),
    (DQN, dict(atoms=1), ValueError),
    (DQN, dict(kappa=0.0), ValueError),
    (DQN, dict(noisy_std=-0.1), ValueError),
    (DQN, dict(v_min=float("nan")), ValueError),
    (TD3, dict(policy_delay=0), ValueError),
    (TD3, dict(critics=0), ValueError),
    (TD3, dict(action_noise=-0.1), ValueError),
    (TD3, dict(target_policy_noise=-1.0), ValueError),
    (TD3, dict(target_noise_clip="wide"), TypeError),
])
def test_bad_settings_are_refused_naming_the_setting(cls, settings, error):
    name = next(iter(settings))
    with pytest.raises(error, match=name):
        cls(**settings)


def test_c51_support_must_be_ordered():
    with pytest.raises(ValueError, match="v_min"):
        _bound(C51, v_min=5.0, v_max=-5.0)


@pytest.mark.parametrize("agent", ["td3", "ddpg", "rainbow", "qrdqn", "c51"])
def test_cli_plans_the_new_agents(agent, capsys):
    env = "Pendulum-v1" if agent in ("td3", "ddpg") else "CartPole-v1"
    assert main(["plan", env, "--agent", agent]) == 0
    assert agent.upper() in capsys.readouterr().out.upper()


def test_cli_trains_td3_with_a_setting(tmp_path, capsys):
    code = main(["train", "Pendulum-v1", "--agent", "td3", "--steps", "300", "--seed", "0", "--set", "learning_starts=200",
                 "--set", "policy_delay=3", "--run-dir", str(tmp_path / "run"), "--no-progress"])
    assert code == 0
    agent = load(tmp_path / "run" / "agent.pt")
    assert type(agent) is TD3 and agent.hp.policy_delay == 3
