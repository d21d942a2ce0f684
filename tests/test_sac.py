"""SAC: continuous Pendulum, discrete CartPole, masks, images, and the network pieces (fixed seeds)."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from tensordict import TensorDict

from rladapt import AutoAdapt, load
from rladapt.agents import SAC
from rladapt.agents.nets import SquashedGaussianActor, TwinQ

from counting import CountInvalid  # tests/counting.py

torch.set_num_threads(1)


def test_sac_reaches_minus_250_on_pendulum():
    agent = SAC(seed=0)
    env = AutoAdapt("Pendulum-v1", agent)
    assert isinstance(env.action_space, gym.spaces.Box) and env.action_space.high.max() == 1.0
    agent.learn(env, 10_000, progress=False, run_dir=False)
    result = agent.evaluate(env, episodes=10)
    assert result.mean >= -250, result  # random is about -1200


def test_discrete_sac_improves_on_cartpole():
    agent = SAC(seed=0)
    env = AutoAdapt("CartPole-v1", agent)
    before = agent.evaluate(env, episodes=10).mean
    agent.learn(env, 10_000, progress=False, run_dir=False)
    assert agent.discrete
    after = agent.evaluate(env, episodes=10).mean
    assert after > max(100.0, 2 * before), (before, after)


def test_discrete_sac_never_takes_a_masked_action_on_tictactoe():
    CountInvalid.invalid.clear()
    agent = SAC(seed=0, learning_starts=200, batch_size=32)

    def make_env():
        return AutoAdapt(CountInvalid(gym.make("rladapt/TicTacToe-v0")), agent)

    env = make_env()
    assert env.metadata.get("action_mask")
    agent.learn(make_env, 2_000, progress=False, run_dir=False)
    assert agent.use_masks
    agent.evaluate(env, episodes=20, deterministic=False)
    agent.evaluate(env, episodes=5)
    assert not CountInvalid.invalid


def test_discrete_sac_on_atari_pixels_runs_and_stores_frames_once():
    agent = SAC(seed=0, learning_starts=64, batch_size=8, buffer_size=2_000, train_freq=4, gradient_steps=1)
    env = AutoAdapt("ALE/Pong-v5", agent)
    assert agent.spec.frame_stack == 4
    agent.learn(env, 300, num_envs=2, progress=False, run_dir=False)
    assert agent.obs_kind == "image" and agent.discrete
    assert agent.replay.frame_stack == 4
    assert np.isfinite(agent.log_alpha.item())
    obs, info = env.reset(seed=0)
    assert env.action_space.contains(agent.act(obs))


def test_squashed_gaussian_log_prob_matches_torch_distributions():
    torch.manual_seed(0)
    space = gym.spaces.Box(-1, 1, (5,), np.float32)
    actor = SquashedGaussianActor(space, 2, (16,))
    obs = torch.randn(64, 5)
    g = torch.Generator().manual_seed(1)
    action, log_prob = actor(obs, False, g)
    mean, log_std = actor.out(actor.body(obs)).split(2, -1)
    log_std = -5.0 + 3.5 * (torch.tanh(log_std) + 1)
    dist = torch.distributions.TransformedDistribution(
        torch.distributions.Normal(mean, log_std.exp()), [torch.distributions.TanhTransform(cache_size=1)]
    )
    u = torch.atanh(action.clamp(-1 + 1e-6, 1 - 1e-6))
    reference = dist.base_dist.log_prob(u).sum(-1) - torch.distributions.TanhTransform().log_abs_det_jacobian(u, action).sum(-1)
    torch.testing.assert_close(log_prob, reference, atol=2e-3, rtol=1e-4)
    assert action.abs().max() < 1


def test_twin_q_equals_two_separate_critics():
    torch.manual_seed(0)
    space = gym.spaces.Box(-1, 1, (3,), np.float32)
    critic = TwinQ(space, 2, True, (8, 8))
    obs, action = torch.randn(10, 3), torch.rand(10, 2) * 2 - 1
    q = critic(obs, action)
    assert q.shape == (2, 10)
    for i in range(2):
        x = torch.cat([obs, action], -1)
        for j, layer in enumerate(critic.layers):
            x = x @ layer.weight[i] + layer.bias[i]
            x = x.relu() if j < len(critic.layers) - 1 else x
        torch.testing.assert_close(q[i], x.squeeze(-1))
    discrete = TwinQ(space, 4, False, (8,))
    assert discrete(obs).shape == (2, 10, 4)


def test_actor_loss_moves_only_the_actor():
    agent = SAC(seed=0, learning_starts=10**9)
    env = AutoAdapt("Pendulum-v1", agent)
    agent.learn(env, 500, progress=False, run_dir=False)
    batch = agent.replay.sample(32, agent.generator)
    agent.params.zero_grad()
    _, actor_loss, _, _ = agent._continuous_step(
        agent.log_alpha.detach().exp(), batch["observation"], batch["action"], batch["next", "reward"],
        batch["next", "observation"], batch["next", "discount"], None, None,
    )
    actor_loss.backward()
    assert all(p.grad.abs().sum() == 0 for p in agent.critic.parameters())
    assert any(p.grad.abs().sum() > 0 for p in agent.actor.parameters())


def test_target_critics_follow_by_polyak_averaging():
    agent = SAC(seed=0, learning_starts=500, tau=0.1)
    env = AutoAdapt("Pendulum-v1", agent)
    agent.learn(env, 520, progress=False, run_dir=False)  # one iteration of 16 gradient steps
    online = torch.cat([p.detach().reshape(-1) for p in agent.critic.parameters()])
    target = torch.cat([p.reshape(-1) for p in agent.critic_target.parameters()])
    assert not torch.equal(online, target)
    assert (online - target).abs().max() < 0.1
    assert not any(p.requires_grad for p in agent.critic_target.parameters())


def test_sac_entropy_coefficient_fixed_or_tuned():
    fixed = SAC(seed=0, ent_coef=0.2, learning_starts=100)
    env = AutoAdapt("Pendulum-v1", fixed)
    fixed.learn(env, 300, progress=False, run_dir=False)
    assert fixed.log_alpha.exp().item() == pytest.approx(0.2)
    tuned = SAC(seed=0, learning_starts=100)
    tuned.learn(AutoAdapt("Pendulum-v1", tuned), 300, progress=False, run_dir=False)
    assert tuned.target_entropy == -1.0
    assert tuned.log_alpha.item() < 0  # alpha falls from 1 towards the entropy target
    with pytest.raises(ValueError, match="ent_coef"):
        SAC(ent_coef="sometimes").setup(env.observation_space, env.action_space)


def test_discrete_target_entropy_and_masked_policy():
    agent = SAC(seed=0)
    agent.setup(gym.spaces.Box(-1, 1, (4,), np.float32), gym.spaces.Discrete(6))
    assert agent.target_entropy == pytest.approx(0.89 * math.log(6))
    mask = torch.tensor([[True, False, False, True, False, False]]).expand(200, 6)
    td = TensorDict({"observation": torch.randn(200, 4), "action_mask": mask}, batch_size=[200])
    with torch.no_grad():
        actions = agent.act_batch(td).get("action")
    assert set(actions.tolist()) <= {0, 3}


def test_sac_save_and_load_round_trip(tmp_path):
    agent = SAC(seed=0, learning_starts=100)
    env = AutoAdapt("Pendulum-v1", agent)
    agent.learn(env, 300, progress=False, run_dir=False)
    loaded = load(agent.save(tmp_path / "sac.pt"))
    obs, _ = env.reset(seed=3)
    np.testing.assert_allclose(loaded.act(obs), agent.act(obs))
    assert loaded.log_alpha.item() == pytest.approx(agent.log_alpha.item())
    torch.testing.assert_close(
        torch.cat([p.reshape(-1) for p in loaded.critic_target.parameters()]),
        torch.cat([p.reshape(-1) for p in agent.critic_target.parameters()]),
    )


def test_replay_actor_critics_share_one_family_and_its_minibatches_are_disjoint_slices_of_one_sample():
    from rladapt.agents import DDPG, TD3, ReplayActorCritic, ReplayActorCriticConfig
    from rladapt.agents.off_policy import REPLAY_ACTOR_CRITIC_DEFAULTS

    for cls in (SAC, TD3, DDPG):
        assert issubclass(cls, ReplayActorCritic) and issubclass(cls.Config, ReplayActorCriticConfig)
    agent = TD3(seed=0, learning_starts=100, gradient_steps=3, batch_size=8, n_step=3)
    env = AutoAdapt("Pendulum-v1", agent)
    agent.learn(env, 200, progress=False, run_dir=False)
    assert agent.hp.lr == REPLAY_ACTOR_CRITIC_DEFAULTS["continuous"]["lr"]  # classic control: the family's row
    replay = agent.replay
    keys = ("observation", ("next", "reward"), "action_mask")
    torch.manual_seed(0)
    agent.generator.manual_seed(5)
    batches = list(agent.minibatches(replay, keys))
    agent.generator.manual_seed(5)
    whole = replay.sample(3 * 8, agent.generator)
    assert len(batches) == 3 and all(b[2] is None for b in batches)  # no masks on Pendulum: None, not an error
    assert torch.equal(torch.cat([b[0] for b in batches]), whole["observation"])
    assert torch.equal(torch.cat([b[1] for b in batches]), whole["next", "reward"])
