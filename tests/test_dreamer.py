"""Dreamer (DreamerV3): the transforms and losses against hand computations, the sequence replay,
short runs on CartPole (discrete), Pendulum (continuous) and rendered CartPole frames (images),
exact resume from a training-state checkpoint, and (slow) learning CartPole."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import rladapt
from rladapt import AutoAdapt
from rladapt.agents import Dreamer
from rladapt.agents.dreamer import STATE_KEY, kl_balance, lambda_returns, return_scale, symexp, symlog, two_hot, two_hot_decode
from rladapt.buffers import SequenceReplay
from rladapt.callbacks import Callback, CheckpointCallback
from rladapt.cli import main

torch.set_num_threads(1)
#: Tiny networks and batches: the short runs test the plumbing, not the learning.
SMALL = dict(seed=0, num_envs=2, learning_starts=64, train_freq=4, batch_size=4, sequence_length=8, horizon=5,
             deter=16, units=16, stoch=4, classes=4, bins=31)


def test_symlog_and_symexp_match_hand_values_and_invert_each_other():
    x = torch.tensor([-10.0, -1.0, 0.0, 0.5, 100.0])
    expected = torch.tensor([-math.log(11), -math.log(2), 0.0, math.log(1.5), math.log(101)])
    assert torch.allclose(symlog(x), expected)
    assert torch.allclose(symexp(symlog(x)), x, rtol=1e-5)


def test_two_hot_puts_weights_on_the_two_neighbouring_bins_and_decodes_back():
    bins = torch.tensor([-1.0, 0.0, 1.0, 2.0])
    assert torch.allclose(two_hot(torch.tensor([0.25, 2.0, -3.0]), bins),
                          torch.tensor([[0.0, 0.75, 0.25, 0.0], [0.0, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0]]))
    # logits = log(weights): the decoded value is symexp(weights @ bins) = symexp(0.25)
    weights = torch.tensor([0.0, 0.75, 0.25, 0.0])
    assert two_hot_decode(torch.log(weights + 1e-12), bins).item() == pytest.approx(math.expm1(0.25), rel=1e-5)


def test_return_scale_is_the_ema_of_the_percentile_range_and_never_below_one():
    returns = torch.arange(101, dtype=torch.float32)  # P5 = 5, P95 = 95
    percentiles = torch.zeros(2)
    scale = return_scale(returns, percentiles, decay=0.9)
    assert torch.allclose(percentiles, torch.tensor([0.5, 9.5]))  # 0.9 * 0 + 0.1 * (5, 95)
    assert scale.item() == pytest.approx(9.0)
    small = torch.zeros(2)
    assert return_scale(returns / 100, small, decay=0.0).item() == 1.0  # range 0.9: max(1, S) keeps 1


def test_kl_balance_applies_free_bits_to_each_term_and_weights_them():
    post = torch.log(torch.tensor([[[0.9, 0.1]]]))  # one latent of two classes
    prior = torch.log(torch.tensor([[[0.5, 0.5]]]))
    kl = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)  # 0.368 nats
    loss, dyn, rep = kl_balance(post, prior, free_bits=1.0, dyn_scale=0.5, rep_scale=0.1)
    assert dyn.item() == rep.item() == 1.0 and loss.item() == pytest.approx(0.6)  # below the free bits
    loss, dyn, rep = kl_balance(post, prior, free_bits=0.1, dyn_scale=0.5, rep_scale=0.1)
    assert dyn.item() == pytest.approx(kl) and loss.item() == pytest.approx(0.6 * kl)
    prior_param = prior.clone().requires_grad_(True)
    post_param = post.clone().requires_grad_(True)
    kl_balance(post_param, prior_param, free_bits=0.0, dyn_scale=0.5, rep_scale=0.0)[0].sum().backward()
    assert post_param.grad.abs().sum() == 0 and prior_param.grad.abs().sum() > 0  # dyn trains only the prior


def test_lambda_returns_match_the_recursion_by_hand():
    reward, discount = torch.tensor([1.0, 2.0]), torch.tensor([0.9, 0.5])
    value = torch.tensor([0.0, 10.0, 20.0])
    r1 = 2.0 + 0.5 * 20.0  # the last step bootstraps with v_H
    r0 = 1.0 + 0.9 * (0.5 * 10.0 + 0.5 * r1)
    assert torch.allclose(lambda_returns(reward, discount, value, 0.5), torch.tensor([r0, r1]))


def test_sequence_replay_samples_consecutive_steps_of_one_env_and_round_trips():
    rb = SequenceReplay(8, num_envs=2)
    for t in range(7):  # env 0 wraps around its 4 slots; env 1 gets only the even steps
        if t % 2 == 0:
            rb.add({"t": torch.tensor([t, 100 + t])})
        else:
            rb.add({"t": torch.tensor([t])}, [0])
    window = rb.sample(50, 3, np.random.default_rng(0))["t"]
    env0 = window[window[:, 0] < 100]
    assert len(env0) and (env0[:, 1:] - env0[:, :-1] == 1).all() and env0.min() >= 3  # the 4 newest: 3..6
    other = SequenceReplay(8, num_envs=2)
    other.load_state_dict(rb.state_dict())
    assert torch.equal(other.sample(5, 3, np.random.default_rng(1))["t"], rb.sample(5, 3, np.random.default_rng(1))["t"])
    with pytest.raises(ValueError, match="no window of 9 steps"):
        rb.sample(1, 9, np.random.default_rng(0))


def test_replay_marks_episode_starts_and_terminations_as_the_envs_gave_them():
    agent = Dreamer(**{**SMALL, "learning_starts": 10_000})  # collection only
    agent.learn(AutoAdapt("CartPole-v1", agent), 200, progress=False, run_dir=False)
    stored = {k: v[0, : agent.replay.written[0]] for k, v in agent.replay.storage.items()}
    first, terminal = stored["is_first"].numpy(), stored["is_terminal"].numpy()
    assert first[0] and first.sum() >= 2  # random CartPole episodes last ~20 steps
    ends = np.flatnonzero(terminal)
    assert np.array_equal(np.flatnonzero(first)[1:], ends[: len(np.flatnonzero(first)) - 1] + 1)  # a start follows each end
    assert (stored["action"][first] == 0).all() and (stored["action"][~first].sum(-1) == 1).all()  # one-hot actions
    assert (stored["reward"][~first] == 1).all()


class Recorder(Callback):
    """The weights after each update and the rows collected in the iteration after ``watch`` steps."""

    def __init__(self, watch: int, rows: int) -> None:
        self.watch, self.rows, self.batch, self.params = watch, rows, [], {}

    def on_step(self, run, step):
        if self.watch < run.agent.num_timesteps <= self.watch + self.rows:  # counts include the row
            self.batch.append(step.clone())

    def on_update(self, run, metrics):
        self.params[run.step] = {k: v.clone() for k, v in run.agent.state_dict().items()}


def test_cartpole_run_checkpoints_and_resumes_exactly(tmp_path):
    """The resumed agent acts on the rows the uninterrupted run collected after the checkpoint with
    the same actions and carried states, and its next update gives the same weights (replay
    sampling, latent and imagined samples, Adam's moments, the return percentiles all restored)."""
    total, at, envs, freq = 160, 96, 2, 4  # an iteration every 8 env steps
    agent = Dreamer(**SMALL)
    record = Recorder(watch=at, rows=envs * freq)
    agent.learn(AutoAdapt("CartPole-v1", agent), total, progress=False, run_dir=tmp_path / "a",
                callbacks=[record, CheckpointCallback(at, directory=tmp_path / "a" / "ckpt", keep=None)])
    resumed = rladapt.load(tmp_path / "a" / "ckpt" / f"step-{at}.pt")
    assert resumed.num_timesteps == at and resumed.unfinished_run is not None
    for key, value in resumed.state_dict().items():
        assert torch.equal(value, record.params[at][key]), key
    replay = resumed.make_storage(envs, total - at)
    assert replay is resumed.replay and np.array_equal(replay.written, agent.replay.written - (total - at) // envs)

    # One iteration as the loop runs it: explore on each collected row, store, update.
    resumed.progress = at / total
    assert len(record.batch) == freq
    for row in record.batch:
        with torch.inference_mode():
            acted = resumed.explore(row.select("observation", "is_init", STATE_KEY).clone())
        assert torch.equal(acted.get("action"), row.get("action"))
        assert torch.equal(acted.get(("next", STATE_KEY)), row.get(("next", STATE_KEY)))
    resumed.num_timesteps += envs * freq
    resumed.store(replay, torch.stack(record.batch, 0))
    metrics = resumed.update(replay, at / total)
    assert math.isfinite(metrics["train/model_loss"]) and math.isfinite(metrics["train/actor_loss"])
    for key, value in resumed.state_dict().items():
        assert torch.equal(value, record.params[at + envs * freq][key]), key


def test_pendulum_run_acts_in_bounds_and_a_loaded_agent_threads_the_same_state(tmp_path):
    agent = Dreamer(**SMALL)
    env = AutoAdapt(gym.make("Pendulum-v1"), agent)
    agent.learn(env, 128, progress=False, run_dir=False)
    assert agent.num_updates > 0 and agent.replay.storage["action"].shape[-1] == 1
    loaded = rladapt.load(agent.save(tmp_path / "pendulum.pt"))
    obs, _ = env.reset(seed=0)
    state_a = state_b = None
    for _ in range(5):
        action_a, state_a = agent.act(obs, state=state_a)
        action_b, state_b = loaded.act(obs, state=state_b)
        assert np.array_equal(action_a, action_b) and torch.equal(state_a[STATE_KEY], state_b[STATE_KEY])
        assert env.action_space.contains(np.asarray(action_a, dtype=np.float32))
        obs, *_ = env.step(action_a)
    assert np.isfinite(agent.evaluate(env, episodes=1).mean)


def test_image_observations_go_through_the_cnn_encoder_and_decoder():
    env = gym.wrappers.AddRenderObservation(gym.make("CartPole-v1", render_mode="rgb_array"))
    agent = Dreamer(**{**SMALL, "learning_starts": 32, "num_envs": 1, "batch_size": 2})
    adapted = AutoAdapt(env, agent, image_size=(16, 16))
    agent.learn(adapted, 48, progress=False, run_dir=False)
    assert agent.world.image and agent.replay.storage["observation"].dtype == torch.uint8
    assert agent.num_updates > 0
    features = torch.zeros(1, agent.hp.deter + agent.hp.stoch * agent.hp.classes)
    assert agent.world.decoder(features).shape[1:] == agent.observation_space.shape


def test_cli_trains_dreamer_by_name(tmp_path):
    assert main(["train", "CartPole-v1", "--agent", "dreamer", "--steps", "96", "--seed", "0", "--no-progress",
                 "--run-dir", str(tmp_path / "run"), "--set", "learning_starts=64", "--set", "batch_size=2",
                 "--set", "sequence_length=4", "--set", "horizon=3"]) == 0
    assert isinstance(rladapt.load(tmp_path / "run" / "agent.pt"), Dreamer)


def test_bad_settings_name_the_setting():
    with pytest.raises(ValueError, match="unimix"):
        Dreamer(unimix=1.5)
    with pytest.raises(ValueError, match="horizon"):
        Dreamer(horizon=0)


@pytest.mark.slow
def test_dreamer_beats_random_clearly_on_cartpole():
    """Measured (seed 0, defaults): eval mean 85 at 6k env steps, 156 at 10k, 270 at 14k (~4 min on
    2 shared cores); a random policy scores about 22."""
    agent = Dreamer(seed=0)
    env = AutoAdapt("CartPole-v1", agent)
    agent.learn(env, 12_000, progress=False, run_dir=False)
    assert agent.evaluate(env, episodes=10).mean > 100
