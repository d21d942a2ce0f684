"""Learning tests for PPO and A2C (fixed seeds). Budgets are small; longer runs are marked slow."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from rladapt import AutoAdapt
from rladapt.agents import A2C, PPO, RandomAgent

torch.set_num_threads(1)


def stop_at(threshold: float):
    """A callback stopping training once the recent mean training return reaches ``threshold``."""
    return lambda agent, metrics: metrics.get("rollout/return_mean", -np.inf) < threshold


def test_ppo_solves_cartpole_within_100k_steps():
    agent = PPO(seed=0)
    env = AutoAdapt(gym.make("CartPole-v1"), agent)
    agent.learn(env, 100_000, progress=False, run_dir=False)
    assert agent.num_timesteps <= 100_096  # whole iterations of 256 steps
    result = agent.evaluate(env, episodes=20)
    assert result.mean >= 475, result


def test_masks_make_taxi_learn_faster():
    means = {}
    for mask in (None, False):  # None: AutoAdapt finds Taxi's info['action_mask']
        agent = PPO(seed=0)
        env = AutoAdapt("Taxi-v4", agent, mask=mask)
        agent.learn(env, 30_000, progress=False, run_dir=False)
        assert agent.use_masks == (mask is None)
        means[mask] = agent.evaluate(env, episodes=20).mean
    assert means[None] > means[False] + 50, means


def test_ppo_pendulum_continuous_beats_random_by_far():
    agent = PPO(seed=0)
    env = AutoAdapt("Pendulum-v1", agent)
    agent.learn(env, 60_000, progress=False, run_dir=False)
    assert agent.hp.normalize_observations and agent.hp.normalize_rewards  # continuous defaults
    result = agent.evaluate(env, episodes=10)
    assert result.mean > -600, result  # random is about -1200


def test_a2c_learns_cartpole():
    agent = A2C(seed=0)
    env = AutoAdapt("CartPole-v1", agent)
    agent.learn(env, 200_000, progress=False, run_dir=False, callbacks=[stop_at(300)])
    result = agent.evaluate(env, episodes=20)
    assert result.mean >= 200, (agent.num_timesteps, result)


def _value_loss(agent: PPO) -> float:
    data = agent.rollout.data.reshape(-1)
    with torch.no_grad():
        value = agent.policy.get_value(data["observation"])
    return float(((value - data["value_target"]) ** 2)[data["valid"]].mean())


def test_ppo_trains_on_atari_pixels_and_its_loss_decreases():
    pytest.importorskip("ale_py")
    agent = PPO(seed=0, num_envs=2, n_steps=32, batch_size=64, n_epochs=2, num_threads=1)
    env = AutoAdapt("ALE/Pong-v5", agent)
    assert env.observation_space.shape == (4, 84, 84) and env.observation_space.dtype == np.uint8
    agent.learn(env, 64, progress=False, run_dir=False)
    assert agent.rollout.data["observation"].dtype == torch.uint8  # images stay uint8 in storage
    before = _value_loss(agent)
    agent.hp.n_epochs = 8
    agent.update(agent.rollout, 0.0)  # more epochs on the same rollout
    assert _value_loss(agent) < before


def test_ppo_trains_on_nested_dict_env_with_multidiscrete_masks():
    agent = PPO(seed=0, num_envs=4, n_steps=32, batch_size=64, num_threads=1)
    env = AutoAdapt("tests/NestedDict-v0", agent)
    assert isinstance(env.observation_space, gym.spaces.Dict) and agent.spec.masks
    random = RandomAgent(seed=0).evaluate(AutoAdapt("tests/NestedDict-v0", RandomAgent()), episodes=10).mean
    agent.learn(env, 4_096, progress=False, run_dir=False)
    assert agent.use_masks and agent.rollout.data["action_mask"].shape[-1] == 7
    result = agent.evaluate(env, episodes=10)
    assert result.mean > random + 2, (random, result)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_ppo_solves_cartpole_other_seeds(seed):
    agent = PPO(seed=seed)
    env = AutoAdapt("CartPole-v1", agent)
    agent.learn(env, 100_000, progress=False, run_dir=False)
    assert agent.evaluate(env, episodes=20).mean >= 475


@pytest.mark.slow
def test_ppo_pendulum_longer_run():
    agent = PPO(seed=1)
    env = AutoAdapt("Pendulum-v1", agent)
    agent.learn(env, 150_000, progress=False, run_dir=False)
    assert agent.evaluate(env, episodes=10).mean > -300


def _small_rollout(env_id: str, **settings) -> tuple[PPO, object]:
    agent = PPO(seed=0, num_threads=1, **settings)
    agent.learn(AutoAdapt(env_id, agent), 512, progress=False, run_dir=False)
    keys = ["observation", "action", "log_prob", "value", "advantage", "value_target"]
    return agent, agent.rollout.transitions(keys + (["action_mask"] if agent.use_masks else []))


@pytest.mark.parametrize("env_id, settings", [("CartPole-v1", {}), ("Taxi-v4", {}), ("Acrobot-v1", {"hidden": (32, 48, 16)}),
                                              ("CartPole-v1", {"hidden": (64,)})])
def test_hand_written_ppo_gradient_equals_autograd(env_id, settings):
    from rladapt.agents.on_policy import normalize

    agent, b = _small_rollout(env_id, **settings)
    assert agent.fast_path.gradient is not None and agent.use_masks == (env_id == "Taxi-v4")
    adv, mask = normalize(b["advantage"]), b.get("action_mask", None)
    old = b["log_prob"] + 0.3 * torch.randn(b.shape[0], generator=torch.Generator().manual_seed(0))  # some ratios clipped
    clip, vf_coef, ent_coef = 0.2, 0.5, 0.05
    agent.params.zero_grad()
    stats = agent.fast_path.gradient.loss_and_grad(b["observation"], b["action"], old, adv, b["value_target"], mask, clip, vf_coef, ent_coef, True)
    fast = agent.params.grad.clone()
    agent.params.zero_grad()
    log_prob, entropy, value = agent.policy.evaluate_actions(b["observation"], b["action"], mask)
    ratio = (log_prob - old).exp()
    policy_loss = -torch.min(ratio * adv, ratio.clamp(1 - clip, 1 + clip) * adv).mean()
    value_loss = 0.5 * ((value - b["value_target"]) ** 2).mean()
    (policy_loss + vf_coef * value_loss - ent_coef * entropy.mean()).backward()
    torch.testing.assert_close(fast, agent.params.grad, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(stats[:3], torch.stack([policy_loss, value_loss, entropy.mean()]).detach(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Taxi-v4"])
def test_numpy_acting_equals_the_torch_policy(env_id):
    agent, _ = _small_rollout(env_id)
    assert agent.fast_path.acting is not None
    td = agent.rollout.data.reshape(-1)[:8].clone()
    with torch.inference_mode():
        for deterministic in (True, False):
            out = agent.fast_path.acting(td.clone(), deterministic, torch.Generator().manual_seed(1))
            ref = agent.policy(td.clone(), deterministic=deterministic, generator=torch.Generator().manual_seed(1))
            assert torch.equal(out["action"], ref["action"]) and out["action"].dtype == torch.int64
            torch.testing.assert_close(out["log_prob"], ref["log_prob"], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(out["value"], ref["value"], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(agent.fast_path.value(td["observation"]), ref["value"], atol=1e-5, rtol=1e-5)


def test_direct_fused_adam_step_equals_optimizer_step():
    from rladapt.agents.optim import adam, adam_step

    results = []
    for direct in (True, False):
        param = torch.nn.Parameter(torch.randn(100, generator=torch.Generator().manual_seed(0)))
        optimizer = adam([param], 1e-3, torch.device("cpu"))
        for i in range(20):
            param.grad = torch.randn(100, generator=torch.Generator().manual_seed(i))
            optimizer.param_groups[0]["lr"] = 1e-3 * (1 - i / 40)
            adam_step(optimizer) if direct else optimizer.step()
        results.append((param.detach().clone(), optimizer.state_dict()["state"][0]["step"]))
    assert torch.equal(results[0][0], results[1][0]) and results[0][1] == results[1][1]


def test_numpy_acting_writes_its_outputs_in_place_only_where_it_set_them():
    agent, _ = _small_rollout("CartPole-v1")
    step, other = (agent.rollout.data[t].clone() for t in (0, 1))
    expected = agent.rollout.data[1].clone()
    with torch.inference_mode():
        action = agent.act_batch(step, deterministic=True)["action"]
        step.set("observation", other["observation"])
        again = agent.act_batch(step, deterministic=True)  # the same TensorDict: its tensors, new values
        assert again["action"] is action
        values = again["value"].clone()
        agent.act_batch(other, deterministic=True)  # another TensorDict: tensors of its own
        assert other["action"] is not action and torch.equal(step["value"], values)
        assert torch.equal(other["action"], step["action"]) and torch.equal(other["value"], step["value"])
        agent.act_batch(expected, deterministic=True)
        assert torch.equal(expected["value"], step["value"])


def test_numpy_acting_of_a_copied_agent_uses_the_copy_weights():
    import copy

    agent, _ = _small_rollout("CartPole-v1")
    twin = copy.deepcopy(agent)
    with torch.no_grad():
        twin.policy.critic.bias.add_(1.0)
    td = agent.rollout.data.reshape(-1)[:8].clone()
    with torch.inference_mode():
        original = agent.act_batch(td.clone(), deterministic=True)["value"]
        copied = twin.act_batch(td.clone(), deterministic=True)["value"]
    torch.testing.assert_close(copied, original + 1.0)


def test_the_actor_critics_share_one_config_and_vf_coef_weighs_the_same_half_squared_error():
    from rladapt.agents import A3C, IMPALA, ActorCriticConfig
    from rladapt.agents.on_policy import OnPolicyAgent, actor_critic_loss
    from rladapt.collect import VectorCollector, make_vector_env
    from rladapt.collect.envs import EnvSource
    from rladapt.spec import bind_agent

    for cls in (PPO, A2C, A3C, IMPALA):
        assert issubclass(cls.Config, ActorCriticConfig)
    # A2C's loss with vf_coef=2 minus its loss with vf_coef=0 is 2 * 0.5 * mean((V - R)^2) on one rollout.
    agent = A2C(seed=0, fast=False)
    source = EnvSource(AutoAdapt("CartPole-v1", agent), agent)
    bind_agent(agent, source.observation_space, source.action_space, source.family)
    collector = VectorCollector(make_vector_env(source.env_fns(4), "sync"))
    collector.reset(seed=0)
    rollout = agent.make_storage(4, 0)
    OnPolicyAgent.store(agent, rollout, collector.collect(agent, agent.hp.n_steps))
    losses = {}
    for coef in (0.0, 2.0):
        agent.hp.vf_coef = coef
        losses[coef], metrics = actor_critic_loss(agent, rollout)
    batch = rollout.transitions(["observation", "value_target"])  # the valid rows
    with torch.no_grad():
        values = agent.policy.get_value(batch["observation"]).reshape(-1)
    half_squared = 0.5 * (values - batch["value_target"].reshape(-1)).pow(2).mean()
    assert float((losses[2.0] - losses[0.0]).detach()) == pytest.approx(2.0 * float(half_squared), rel=1e-4)
    collector.close()
    source.close()


@pytest.mark.parametrize("batch_size", [64, 100])
def test_minibatches_are_the_epochs_shuffle_each_normalised_by_its_own_statistics(batch_size):
    """PPO gathers each column once per epoch and slices it; what it yields equals indexing every
    column per minibatch with the same shuffle (equal sizes: 4 x 64; unequal: 100, 100, 56)."""
    from tensordict import TensorDict

    from rladapt.agents.on_policy import normalize
    from rladapt.buffers.rollout import minibatch_indices

    agent = PPO(seed=0, batch_size=batch_size)
    agent.learn(AutoAdapt(gym.make("CartPole-v1"), agent), 256, progress=False, run_dir=False)
    n = 256
    g = torch.Generator().manual_seed(1)
    batch = TensorDict({"observation": torch.randn(n, 4, generator=g), "action": torch.randint(0, 2, (n,), generator=g),
                        "log_prob": torch.randn(n, generator=g), "advantage": torch.randn(n, generator=g) * 3 + 1,
                        "value_target": torch.randn(n, generator=g), "value": torch.randn(n, generator=g)}, [n])
    state = agent.generator.get_state()
    yielded = list(agent._minibatches(batch)())
    agent.generator.set_state(state)
    chunks = list(minibatch_indices(n, batch_size, agent.generator))
    assert [len(mb[0]) for mb in yielded] == [len(c) for c in chunks] and len(chunks) > 1
    for mb, idx in zip(yielded, chunks):
        torch.testing.assert_close(mb[0], batch["observation"][idx], rtol=0, atol=0)
        assert torch.equal(mb[1], batch["action"][idx]) and mb[5] is None
        torch.testing.assert_close(mb[3], normalize(batch["advantage"][idx]), rtol=0, atol=0)
        assert abs(float(mb[3].mean())) < 1e-5 and abs(float(mb[3].std()) - 1) < 1e-4
        torch.testing.assert_close(mb[6], batch["value"][idx], rtol=0, atol=0)
