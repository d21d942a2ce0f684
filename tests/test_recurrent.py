"""Recurrent policies (``PPO(recurrent="lstm")`` / ``"gru"``): the hidden state carried with the envs,
reset at every episode start, replayed exactly by sequence minibatches; learning where memory is
needed (CartPole without velocities, a masked memory task); worker processes, checkpoints, the
terminal view."""

from __future__ import annotations

import io

import gymnasium as gym
import numpy as np
import pytest
import torch

import rladapt
import rladapt.envs  # noqa: F401  (registers the example envs)
from rladapt import AutoAdapt
from rladapt.agents import A2C, PPO
from rladapt.agents.fast import exclusions
from rladapt.agents.recurrent import STATE_KEY
from rladapt.collect import VectorCollector, make_vector_env

N_STEPS = 16


def _collect_two_batches(core: str):
    """A recurrent PPO's collector over CartPoleNoVel envs that truncate (7 steps) and terminate
    (500-step limit, a random-ish policy falls first); two consecutive batches (cloned)."""
    agent = PPO(seed=0, recurrent=core, recurrent_hidden=8, n_steps=N_STEPS)
    limits = [7, 500, 500]
    envs = make_vector_env([lambda m=m: AutoAdapt(gym.make("rladapt/CartPoleNoVel-v1", max_episode_steps=m), agent)
                            for m in limits])
    collector = VectorCollector(envs)
    agent.setup(collector.observation_space, collector.action_space)
    collector.reset(seed=0)
    batches = [collector.collect(agent, N_STEPS).clone() for _ in range(2)]
    collector.close()
    return agent, batches


@pytest.mark.parametrize("core", ["lstm", "gru"])
def test_hidden_state_resets_at_every_episode_start_and_carries_otherwise(core):
    agent, batches = _collect_two_batches(core)
    policy = agent.policy
    seen = {"terminated": 0, "truncated": 0, "autoreset": 0}
    by_hand = None  # each env's state after its previous step, computed here step by step
    with torch.no_grad():
        for batch in batches:
            state = batch.get(STATE_KEY)
            for t in range(N_STEPS):
                row = []
                for n in range(batch.batch_size[1]):
                    starts = bool(batch["is_init"][t, n])
                    expected = torch.zeros(policy.state_shape) if starts else by_hand[n]
                    assert torch.allclose(state[t, n], expected, atol=1e-6), (t, n, starts)
                    _, _, new = policy.step(policy.encoder(batch["observation"][t, n : n + 1]), expected.unsqueeze(0))
                    row.append(new[0])
                    if not bool(batch["valid"][t, n]):  # the autoreset row: it continues the ended episode's state
                        seen["autoreset"] += 1
                        assert state[t, n].abs().sum() > 0, (t, n)
                    seen["terminated"] += int(batch["next", "terminated"][t, n])
                    seen["truncated"] += int(batch["next", "truncated"][t, n])
                by_hand = row
            # ("next", state) of the last row is where the next batch starts (zeros where an episode starts).
            starts = batch["is_init"][-1]
            assert torch.allclose(batch.get(("next", STATE_KEY))[-2][~starts], state[-1][~starts])
    assert all(count > 0 for count in seen.values()), seen  # every kind of episode start was checked


def test_sequence_minibatch_replays_exactly_the_states_the_rollout_saw():
    agent = PPO(seed=1, recurrent="lstm", recurrent_hidden=16, n_steps=N_STEPS, sequence_length=4, batch_size=8)
    envs = make_vector_env([lambda m=m: AutoAdapt(gym.make("rladapt/CartPoleNoVel-v1", max_episode_steps=m), agent)
                            for m in (5, 500)])
    collector = VectorCollector(envs)
    agent.setup(collector.observation_space, collector.action_space)
    collector.reset(seed=1)
    rollout = agent.make_storage(collector.num_envs, 2 * N_STEPS)
    agent.store(rollout, collector.collect(agent, N_STEPS))
    collector.close()
    data = rollout.data
    keys = ["observation", "action", "log_prob", "value", "advantage", "value_target"]
    sequences = agent.sequences(rollout, keys)
    for c in range(4):  # column c * num_envs + n: steps 4c .. 4c + 3 of env n
        for n in range(2):
            assert torch.equal(sequences["observation"][:, 2 * c + n], data["observation"][4 * c : 4 * c + 4, n])
    minibatches = list(agent._sequence_minibatches(sequences)())
    assert len(minibatches) == 4 and all(mb[0].batch_size == torch.Size([4, 2]) for mb in minibatches)  # 2 chunks each
    seen = []
    with torch.no_grad():
        for chunks, action, old_log_prob, _, _, mask, old_value in minibatches:
            for k in range(2):  # whole chunks, never shuffled steps
                seen += [j for j in range(8) if torch.equal(sequences["observation"][:, j], chunks["observation"][:, k])]
            _, _, states = agent.policy.replay(chunks, states=True)
            assert torch.allclose(states, chunks.get(STATE_KEY), atol=1e-6)  # every step's state, from the first row's
            log_prob, _, value = agent.policy.evaluate_actions(chunks, action, mask)
            assert torch.allclose(log_prob, old_log_prob, atol=1e-5)
            assert torch.allclose(value, old_value, atol=1e-5)
    assert sorted(seen) == list(range(8))  # 4 chunks x 2 envs, each once


@pytest.mark.parametrize("recurrent, expect_solved", [("lstm", True), (None, False)])
def test_recurrent_ppo_balances_cartpole_without_velocities_where_feed_forward_cannot(recurrent, expect_solved):
    agent = PPO(seed=0, recurrent=recurrent)  # the defaults, recurrent or not
    env = AutoAdapt(gym.make("rladapt/CartPoleNoVel-v1"), agent)
    agent.learn(env, steps=40_000, progress=False, run_dir=False)
    score = agent.evaluate(env, episodes=10).mean
    # Measured: LSTM 464.8, feed-forward ~45 (it cannot tell which way the pole moves).
    assert (score > 300) if expect_solved else (score < 100), score


@pytest.mark.parametrize("recurrent, expect_solved", [("lstm", True), (None, False)])
def test_only_the_recurrent_masked_agent_solves_the_masked_memory_task(recurrent, expect_solved):
    agent = PPO(seed=0, recurrent=recurrent)
    env = AutoAdapt(gym.make("rladapt/MaskedMemory-v0"), agent)
    assert "action_mask" in env.plan.rules
    agent.learn(env, steps=10_240, progress=False, run_dir=False)
    result = agent.evaluate(env, episodes=100)
    # The masks keep every agent legal (no -1 during the delay), the cue is needed at the decision:
    # without memory the expected return is 0 (measured 0.24 over 50 episodes), with it 1.
    assert (result.mean > 0.9) if expect_solved else (result.mean < 0.5), result.mean
    assert result.lengths.min() == 6  # no episode ended on an illegal move


def test_recurrent_ppo_collects_in_worker_processes_with_the_state_kept_by_the_envs():
    agent = PPO(seed=0, recurrent="gru", recurrent_hidden=8, n_steps=N_STEPS)
    env = AutoAdapt(gym.make("rladapt/MaskedMemory-v0"), agent)
    agent.learn(env, steps=3 * 4 * N_STEPS, num_envs=4, workers=2, progress=False, run_dir=False)
    data = agent.rollout.data  # the third rollout: its first row is the state the workers carried over
    state, next_state, starts = data.get(STATE_KEY), data.get(("next", STATE_KEY)), data.get("is_init")
    assert not state[starts].any()
    assert torch.equal(state[1:][~starts[1:]], next_state[:-1][~starts[1:]])
    assert state[0][~starts[0]].abs().sum() > 0  # carried from the previous batch, not restarted
    assert agent.evaluate(env, episodes=5).lengths.min() == 6


def test_checkpoint_keeps_the_recurrent_policy_and_acting_threads_the_state(tmp_path):
    agent = A2C(seed=0, recurrent="gru", recurrent_hidden=12, n_steps=8)
    env = AutoAdapt(gym.make("rladapt/MaskedMemory-v0"), agent)
    agent.learn(env, steps=2 * 8 * 8, progress=False, run_dir=False)
    loaded = rladapt.load(agent.save(tmp_path / "gru.pt"))
    assert (loaded.hp.recurrent, loaded.hp.recurrent_hidden) == ("gru", 12)
    obs, info = env.reset(seed=3)
    state_a = state_b = None
    for _ in range(6):
        action_a, state_a = agent.act(obs, info["action_mask"], state=state_a)
        action_b, state_b = loaded.act(obs, info["action_mask"], state=state_b)
        assert action_a == action_b and torch.equal(state_a[STATE_KEY], state_b[STATE_KEY])
        obs, _, terminated, _, info = env.step(action_a)
        if terminated:
            break
    assert state_a[STATE_KEY].shape == (2, 12)
    out = io.StringIO()
    loaded.play(env, episodes=1, file=out)  # the terminal view threads the state too
    assert "episode 1 ended after 6 steps" in out.getvalue() and "symbol" in out.getvalue()


@pytest.mark.parametrize("env_id", ["rladapt/PendulumNoVel-v1", "tests/NestedDict-v0"])
def test_recurrent_ppo_takes_continuous_actions_and_nested_image_observations(env_id):
    agent = PPO(seed=0, recurrent="lstm", recurrent_hidden=8, n_steps=8, num_envs=2, batch_size=8, n_epochs=1)
    env = AutoAdapt(gym.make(env_id), agent)
    agent.learn(env, steps=16, progress=False, run_dir=False)
    assert np.isfinite(agent.evaluate(env, episodes=1).mean)


def test_recurrent_settings_are_checked_and_the_fast_path_excludes_recurrent_policies():
    with pytest.raises(ValueError, match="recurrent must be one of 'lstm', 'gru'"):
        PPO(recurrent="rnn")
    with pytest.raises(TypeError, match="recurrent"):
        PPO(recurrent=True)
    agent = PPO(seed=0, recurrent="lstm", n_steps=32, sequence_length=5)
    with pytest.raises(ValueError, match="must divide n_steps=32"):
        agent.setup(*_spaces("rladapt/CartPoleNoVel-v1", agent))
    agent = PPO(seed=0, recurrent="lstm")
    agent.setup(*_spaces("rladapt/CartPoleNoVel-v1", agent))
    assert agent.fast_path.gradient is None and agent.fast_path.acting is None
    assert "recurrent" in exclusions(agent)["gradient"]
    with pytest.raises(ValueError, match="recurrent"):
        PPO(seed=0, recurrent="lstm", fast=True).setup(*_spaces("rladapt/CartPoleNoVel-v1", agent))
    feed_forward = PPO(seed=0)
    feed_forward.setup(*_spaces("rladapt/CartPoleNoVel-v1", feed_forward))
    with pytest.raises(TypeError, match="carries none"):
        feed_forward.act(np.zeros(2, np.float32), state=agent.act(np.zeros(2, np.float32))[1])


def _spaces(env_id: str, agent) -> tuple[gym.Space, gym.Space]:
    env = AutoAdapt(gym.make(env_id), agent)
    return env.observation_space, env.action_space
