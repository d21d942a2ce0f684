"""The agent loop: NEXT_STEP autoreset handled exactly, GAE equals a hand computation, masks flow
into storage, env rebuilding, logging, the off-policy hook, settings errors, determinism."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from tensordict import TensorDictBase
from torch import nn

from rladapt.agents import A2C, DQN, PPO, OffPolicyAgent
from rladapt.collect import BatchStorage, EnvRebuildError, VectorCollector, make_vector_env

torch.set_num_threads(1)

GAMMA, LAMBDA = 0.9, 0.8


class KnownEndsEnv(gym.Env):
    """Episodes of known lengths ending by termination or truncation, in a fixed cycle.

    Observation ``[t, episode]`` (float32), reward ``10 * episode + t + 1``; action ignored.
    """

    metadata = {"render_modes": []}

    def __init__(self, ends: list[tuple[int, str]]):
        self.ends = ends
        self.observation_space = spaces.Box(-1e3, 1e3, (2,), np.float32)
        self.action_space = spaces.Discrete(2)
        self.episode = -1

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episode += 1
        self.t = 0
        return np.array([0, self.episode], np.float32), {}

    def step(self, action):
        length, how = self.ends[self.episode % len(self.ends)]
        reward = 10.0 * self.episode + self.t + 1
        self.t += 1
        done = self.t >= length
        obs = np.array([self.t, self.episode], np.float32)
        return obs, reward, done and how == "terminated", done and how == "truncated", {}


class ValueIsObs(nn.Module):
    """A fixed actor-critic: action 0, log_prob 0, ``V(obs) = obs[0] + 0.5 * obs[1]``."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    @staticmethod
    def value(obs: torch.Tensor) -> torch.Tensor:
        return obs[:, 0] + 0.5 * obs[:, 1]

    def get_value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.value(obs)

    def forward(self, td: TensorDictBase, deterministic: bool = False, generator=None) -> TensorDictBase:
        obs = td.get("observation")
        td.set("action", torch.zeros(obs.shape[0], dtype=torch.int64))
        td.set("log_prob", torch.zeros(obs.shape[0]))
        td.set("value", self.value(obs))
        return td

    def evaluate_actions(self, obs, action, mask=None, entropy=True):
        zero = self.dummy * 0 + torch.zeros(obs.shape[0])
        return zero, zero if entropy else None, self.value(obs)


ENDS = [
    [(3, "terminated"), (2, "truncated"), (4, "terminated")],
    [(2, "truncated"), (1, "terminated"), (5, "truncated")],
]


def simulate(ends: list[tuple[int, str]], n_steps: int) -> list[dict]:
    """What one env of a NEXT_STEP vector env sees over ``n_steps`` steps, written out by hand."""
    rows, episode, t, pending_reset = [], 0, 0, False
    for _ in range(n_steps):
        obs = [t, episode]
        if pending_reset:  # the step after a done: the env resets, this is no transition
            episode, t, pending_reset = episode + 1, 0, False
            rows.append(dict(obs=obs, valid=False, reward=0.0, next_obs=[0, episode], terminated=False, truncated=False))
            continue
        length, how = ends[episode % len(ends)]
        reward = 10.0 * episode + t + 1
        t += 1
        done = t >= length
        rows.append(dict(obs=obs, valid=True, reward=reward, next_obs=[t, episode],
                         terminated=done and how == "terminated", truncated=done and how == "truncated"))
        pending_reset = done
    return rows


def hand_gae(rows: list[dict]) -> list[float | None]:
    """GAE over the real transitions: bootstrap from the true next obs unless terminated; a done
    (either kind) ends the recursion; the last transition bootstraps from its next obs."""
    value = lambda o: o[0] + 0.5 * o[1]  # noqa: E731
    adv: list[float | None] = [None] * len(rows)
    following = 0.0
    for t in reversed(range(len(rows))):
        r = rows[t]
        if not r["valid"]:
            following = 0.0
            continue
        delta = r["reward"] + GAMMA * value(r["next_obs"]) * (not r["terminated"]) - value(r["obs"])
        done = r["terminated"] or r["truncated"]
        adv[t] = delta + GAMMA * LAMBDA * (0.0 if done else following)
        following = adv[t]
    return adv


def test_autoreset_transitions_and_gae_match_hand_computation():
    n_steps = 12
    agent = PPO(seed=0, network=ValueIsObs(), gamma=GAMMA, gae_lambda=LAMBDA, n_steps=n_steps)
    envs = make_vector_env([lambda e=e: KnownEndsEnv(e) for e in ENDS])
    collector = VectorCollector(envs)
    agent.setup(collector.observation_space, collector.action_space)
    collector.reset(seed=0)
    rollout = agent.make_storage(collector.num_envs, n_steps * 2)
    agent.store(rollout, collector.collect(agent, n_steps))
    data = rollout.data
    for e, ends in enumerate(ENDS):
        rows = simulate(ends, n_steps)
        expected_adv = hand_gae(rows)
        for t, row in enumerate(rows):
            assert bool(data["valid"][t, e]) == row["valid"], (e, t)
            assert data["observation"][t, e].tolist() == row["obs"], (e, t)
            if not row["valid"]:
                continue
            assert data["next", "reward"][t, e].item() == row["reward"], (e, t)
            assert bool(data["next", "terminated"][t, e]) == row["terminated"], (e, t)
            assert bool(data["next", "truncated"][t, e]) == row["truncated"], (e, t)
            assert data["advantage"][t, e].item() == pytest.approx(expected_adv[t], abs=1e-4), (e, t)
            value = row["obs"][0] + 0.5 * row["obs"][1]
            assert data["value_target"][t, e].item() == pytest.approx(expected_adv[t] + value, abs=1e-4)
    # Continuing: the next rollout starts where this one stopped (an autoreset may be pending).
    agent.store(rollout, collector.collect(agent, n_steps))
    rows = simulate(ENDS[0], 2 * n_steps)[n_steps:]
    assert [bool(v) for v in data["valid"][:, 0]] == [r["valid"] for r in rows]
    assert data["observation"][:, 0].tolist() == [r["obs"] for r in rows]
    collector.close()


def test_batch_has_torchrl_keys_final_observation_and_episode_starts():
    envs = make_vector_env([lambda: KnownEndsEnv([(2, "truncated")])])
    collector = VectorCollector(envs)
    agent = PPO(seed=0, network=ValueIsObs())
    agent.setup(collector.observation_space, collector.action_space)
    collector.reset(seed=0)
    batch = collector.collect(agent, 3).clone()
    first, second, third = batch[0], batch[1], batch[2]
    for key in ["observation", "action", "log_prob", "value", "valid", "is_init", ("next", "observation"),
                ("next", "reward"), ("next", "terminated"), ("next", "truncated"), ("next", "done")]:
        assert key in first.keys(include_nested=True)
    assert first["next", "observation"].tolist() == [[1, 0]]
    assert second["next", "observation"].tolist() == [[2, 0]]  # the true final observation
    assert bool(second["next", "truncated"]) and bool(second["valid"])
    assert not bool(third["valid"])  # the autoreset step is no transition
    assert third["observation"].tolist() == [[2, 0]] and third["next", "observation"].tolist() == [[0, 1]]
    assert batch["is_init"].tolist() == [[True], [False], [False]]  # only the reset observation starts one
    following = collector.collect(agent, 2)  # starts from the reset observation the autoreset returned
    assert following["observation"][0].tolist() == [[0, 1]] and following["is_init"].tolist() == [[True], [False]]
    assert torch.equal(following["observation"][1:], following["next", "observation"][:-1])  # one tensor, two views
    collector.close()


def test_masks_flow_into_storage_and_are_respected():
    agent = PPO(seed=0, n_steps=64, num_envs=2)
    agent.learn("Taxi-v4", 128, progress=False, run_dir=False)
    data = agent.rollout.data
    assert agent.use_masks and "action_mask" in data.keys()
    mask, action, valid = data["action_mask"], data["action"], data["valid"]
    chosen = mask.gather(-1, action.unsqueeze(-1)).squeeze(-1)
    assert bool(chosen[valid].all())
    assert not bool(mask.all())  # Taxi masks some actions somewhere


class Unregistered(KnownEndsEnv):
    def __init__(self):
        super().__init__([(5, "terminated")])


class Uncopyable(Unregistered):
    """An env holding something that cannot be copied (a lock)."""

    def __init__(self):
        super().__init__()
        import threading

        self.lock = threading.Lock()


def test_an_unregistered_env_instance_is_stepped_itself_or_copied_and_the_plan_says_so(tmp_path):
    from rladapt import AutoAdapt

    env = Unregistered()
    agent = PPO(seed=0, n_steps=8, num_envs=1)
    agent.learn(env, 16, progress=False, run_dir=False)
    assert agent.num_timesteps == 16 and env.episode >= 3  # the instance itself was stepped, and not closed
    adapted = AutoAdapt(Unregistered(), PPO())
    PPO(seed=0, n_steps=8, num_envs=3).learn(adapted, 48, progress=False, run_dir=False)
    assert "3 envs: copy.deepcopy copies of the instance" in str(adapted.plan)
    assert adapted.unwrapped.episode == 0  # copies were stepped, not the instance
    with pytest.raises(EnvRebuildError, match="copy.deepcopy failed .* factory"):
        PPO(seed=0, n_steps=8, num_envs=2).learn(Uncopyable(), 16, progress=False, run_dir=False)
    agent = PPO(seed=0, n_steps=8, num_envs=2)
    agent.learn(Uncopyable, 32, progress=False, run_dir=tmp_path)  # a factory always works
    assert agent.num_timesteps == 32


def test_run_dir_holds_config_and_metrics(tmp_path):
    agent = PPO(seed=0, n_steps=16, num_envs=2)
    agent.learn("CartPole-v1", 64, progress=True, run_dir=tmp_path / "run", log_every=32)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["agent"] == "PPO" and config["settings"]["n_steps"] == 16
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [32, 64]
    for key in ["train/policy_loss", "train/value_loss", "train/entropy", "train/approx_kl", "train/clip_fraction",
                "time/steps_per_s"]:
        assert key in lines[-1]
    assert (tmp_path / "run" / "agent.pt").exists()


def test_logger_object_and_callbacks_stop(tmp_path):
    class Recorder:
        def __init__(self):
            self.config, self.rows, self.closed = None, [], False

        def log_config(self, config):
            self.config = config

        def log(self, metrics, step):
            self.rows.append((step, metrics))

        def close(self):
            self.closed = True

    recorder = Recorder()
    agent = A2C(seed=0, num_envs=2, n_steps=4)
    agent.learn("CartPole-v1", 10_000, progress=False, run_dir=False, logger=recorder, log_every=8,
                callbacks=[lambda a, m: m["step"] < 40])
    assert recorder.closed and recorder.config["agent"] == "A2C"
    assert [s for s, _ in recorder.rows] == [8, 16, 24, 32, 40]


def test_unknown_setting_lists_valid_ones():
    with pytest.raises(TypeError, match="valid settings are: .*clip_range"):
        PPO(lr=1e-3, clip=0.2)


class ListAgent(OffPolicyAgent):
    """A minimal off-policy agent: random actions, steps kept in a list."""

    def build(self) -> None:
        self.stored, self.updates = [], []

    def act_batch(self, td, deterministic=False):
        td.set("action", torch.randint(0, 2, td.batch_size, generator=self.generator))
        return td

    def store(self, storage, batch):
        for t in range(batch.shape[0]):
            self.stored.append(batch[t][batch[t]["valid"]].clone())

    def update(self, storage, progress):
        self.updates.append(self.hp.gradient_steps)
        return {"train/loss": 0.0}


def test_off_policy_hook_gets_valid_steps_and_updates_after_learning_starts():
    agent = ListAgent(seed=0, num_envs=2, learning_starts=40, train_freq=4, gradient_steps=3)
    agent.learn(lambda: KnownEndsEnv([(3, "terminated")]), 80, progress=False, run_dir=False)
    assert agent.num_timesteps == 80
    transitions = sum(len(s) for s in agent.stored)
    assert transitions == 80 - 2 * (80 // 2 // 4)  # one reset step per episode of 3 steps, per env
    assert all(bool((~s["next", "done"] | s["valid"]).all()) for s in agent.stored)
    assert agent.updates == [3] * 6  # iterations 5..10 have collected >= 40 steps


def test_two_runs_with_one_seed_give_identical_metrics(tmp_path):
    def run(path):
        agent = PPO(seed=3, n_steps=32, num_envs=4, n_epochs=2, batch_size=64)
        agent.learn("CartPole-v1", 1024, progress=False, run_dir=path)
        lines = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in m.items() if not k.startswith("time/")} for m in lines]

    assert run(tmp_path / "a") == run(tmp_path / "b")


def test_evaluate_returns_raw_episode_statistics():
    agent = PPO(seed=0)
    result = agent.evaluate("CartPole-v1", episodes=3)
    assert len(result.returns) == len(result.lengths) == 3
    assert np.allclose(result.returns, result.lengths)  # CartPole pays 1 per step
    assert result.mean == pytest.approx(np.mean(result.returns))


def test_evaluate_ends_episodes_of_an_env_without_a_time_limit(monkeypatch):
    """CliffWalking has no time limit; an untrained Q-table's greedy policy never reaches the goal.
    evaluate ends such an episode at max_episode_steps, or at its cap with a warning."""
    import importlib

    from rladapt.agents import QLearning

    evaluate_module = importlib.import_module("rladapt.train.evaluate")  # rladapt.train.evaluate is also the function

    agent = QLearning(seed=0)
    result = agent.evaluate("CliffWalking-v1", episodes=2, max_episode_steps=50)
    assert result.lengths.tolist() == [50, 50] and all(r <= -50 for r in result.returns)  # -1 a step, -100 a fall
    monkeypatch.setattr(evaluate_module, "EPISODE_STEP_CAP", 300)
    with pytest.warns(UserWarning, match="ran 300 steps without ending.*max_episode_steps="):
        assert agent.evaluate("CliffWalking-v1", episodes=1).lengths.tolist() == [300]
    assert QLearning(seed=0).evaluate("FrozenLake-v1", episodes=1).lengths[0] <= 100  # its own limit ends it
    with pytest.raises(ValueError, match="max_episode_steps"):
        agent.evaluate("CliffWalking-v1", max_episode_steps=0)


def test_play_ends_episodes_of_an_env_without_a_time_limit(monkeypatch):
    """play (and ``rladapt eval --render``) cuts an endless CliffWalking episode at max_steps, or at
    evaluate's cap with a warning naming max_steps; a cut game is "unfinished"."""
    import importlib
    import io

    from pettingzoo.classic import tictactoe_v3

    from rladapt import AutoAdapt
    from rladapt.agents import QLearning

    evaluate_module = importlib.import_module("rladapt.train.evaluate")
    agent = QLearning(seed=0)
    out = io.StringIO()
    assert agent.play("CliffWalking-v1", episodes=2, max_steps=20, file=out).lengths.tolist() == [20, 20]
    assert "episode 2 ended after 20 steps" in out.getvalue()
    monkeypatch.setattr(evaluate_module, "EPISODE_STEP_CAP", 60)
    with pytest.warns(UserWarning, match="play: episode 0 ran 60 steps without ending.*max_steps="):
        assert agent.play("CliffWalking-v1", file=io.StringIO()).lengths.tolist() == [60]
    with pytest.raises(ValueError, match="max_steps"):
        agent.play("CliffWalking-v1", max_steps=0, file=io.StringIO())
    ppo = PPO(seed=0)
    game = AutoAdapt(tictactoe_v3.env(), ppo, opponent="random")
    out = io.StringIO()
    result = ppo.play(game, max_steps=2, file=out)
    assert result.outcomes.tolist() == ["unfinished"] and result.lengths.tolist() == [2]
    assert "PPO (seat" in out.getvalue() and "did not finish" in out.getvalue()


def test_custom_encoder_network_and_ppo_options(tmp_path):
    encoder = nn.Sequential(nn.Linear(4, 32), nn.ReLU())  # observations -> [B, 32] features
    agent = PPO(seed=0, network=encoder, n_steps=16, num_envs=2, clip_value=True, target_kl=1e-4, n_epochs=10)
    agent.learn("CartPole-v1", 128, progress=False, run_dir=tmp_path)
    assert agent.policy.encoder is encoder
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all(1 <= m["train/epochs"] <= 10 for m in lines)
    assert any(m["train/epochs"] < 10 for m in lines)  # target_kl stopped some updates early
    # A custom module is not stored as code: loading asks for it again.
    from rladapt import load
    from rladapt.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="network"):
        load(tmp_path / "agent.pt")
    again = load(tmp_path / "agent.pt", network=nn.Sequential(nn.Linear(4, 32), nn.ReLU()))
    obs = np.array([0.01, -0.02, 0.03, 0.0], np.float32)
    assert again.act(obs) == agent.act(obs)


def test_multidiscrete_and_continuous_heads_sample_valid_actions():
    from rladapt.agents.nets import ActorCritic
    from tensordict import TensorDict

    g = torch.Generator().manual_seed(0)
    obs_space = spaces.Box(-1, 1, (3,), np.float32)
    md = ActorCritic(obs_space, spaces.MultiDiscrete([3, 2, 4]))
    mask = torch.tensor([[True, False, True, False, True, False, False, True, True]]).expand(500, 9)
    td = TensorDict({"observation": torch.randn(500, 3), "action_mask": mask}, [500])
    with torch.no_grad():
        md(td, generator=g)
    action = td["action"]
    assert set(action[:, 0].tolist()) == {0, 2} and set(action[:, 1].tolist()) == {1}
    assert set(action[:, 2].tolist()) == {2, 3}
    log_prob, entropy, _ = md.evaluate_actions(td["observation"], action, mask)
    assert torch.allclose(log_prob, td["log_prob"], atol=1e-5) and bool((entropy > 0).all())
    box = spaces.Box(np.array([-2.0, 0.0]), np.array([2.0, 1.0]), dtype=np.float32)
    gauss = ActorCritic(obs_space, box)
    td = TensorDict({"observation": torch.randn(500, 3)}, [500])
    with torch.no_grad():
        gauss(td, generator=g)
    from rladapt.spaces import env_action as to_env

    env_action = to_env(box, td["action"].numpy())
    assert box.contains(env_action[0]) and np.all(env_action >= box.low) and np.all(env_action <= box.high)
    assert (td["action"].numpy() > 1.0).any()  # the stored action is the unclipped sample


class HostStagedCollector(VectorCollector):
    """Writes through a separate CPU copy and sends it over, as a collector on a GPU does."""

    def _host_storage(self, storage):
        return BatchStorage(storage.layout, storage.steps, storage.num_envs)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "tests/NestedDict-v0"])
def test_collector_staging_through_host_storage_gives_the_same_steps(env_id):
    from rladapt import AutoAdapt
    from rladapt.spaces import mask_size

    agent = PPO(seed=0, n_steps=8, num_envs=3)
    adapted = AutoAdapt(gym.make(env_id), agent)
    agent.setup(adapted.observation_space, adapted.action_space)
    masks = agent.use_masks = bool(adapted.metadata.get("action_mask"))
    steps = {}
    for cls in (VectorCollector, HostStagedCollector):
        envs = make_vector_env([lambda: AutoAdapt(gym.make(env_id), PPO())] * 3)
        collector = cls(envs, masks=masks, mask_size=mask_size(agent.action_space) if masks else None)
        agent.generator.manual_seed(0)
        collector.reset(seed=0)
        steps[cls] = [collector.collect(agent, 8).clone() for _ in range(5)]
        collector.close()
    staged = steps[HostStagedCollector]
    assert any(not bool(s["valid"].all()) for s in staged)  # an autoreset happened
    assert masks == (env_id != "CartPole-v1")
    for plain, other in zip(steps[VectorCollector], staged):
        assert set(plain.keys(include_nested=True, leaves_only=True)) == set(other.keys(include_nested=True, leaves_only=True))
        for key in plain.keys(include_nested=True, leaves_only=True):
            assert torch.equal(plain[key], other[key]), key


def test_metrics_rows_come_at_an_interval_with_the_losses_averaged(tmp_path):
    from rladapt.agents import QLearning

    iterations = []
    agent = QLearning(seed=0)  # 8 envs, one vector step per iteration: 250 iterations
    agent.learn("rladapt/Grid-v0", 2_000, progress=False, run_dir=tmp_path, callbacks=[lambda a, m: iterations.append(m)])
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1_000, 2_000] and len(iterations) == 250
    first = [m["train/td_error"] for m in iterations[:125] if "train/td_error" in m]
    assert rows[0]["train/td_error"] == pytest.approx(np.mean(first))
    assert rows[-1]["rollout/episodes"] == agent.num_episodes
    agent.learn("rladapt/Grid-v0", 100, progress=False, run_dir=tmp_path / "short", log_every=40)
    rows = [json.loads(line)["step"] for line in (tmp_path / "short" / "metrics.jsonl").read_text().splitlines()]
    assert rows == [2_040, 2_080, 2_104]  # every 40 steps, and the tail at the end


def test_the_fast_path_has_one_switch_and_says_why_it_does_not_apply():
    fast, torch_only = PPO(seed=0, n_steps=16), PPO(seed=0, n_steps=16, fast=False)
    for agent in (fast, torch_only):
        agent.learn("CartPole-v1", 256, progress=False, run_dir=False)
    assert fast.fast_path.acting is not None and fast.fast_path.gradient is not None
    assert torch_only.fast_path.acting is None and torch_only.fast_path.gradient is None  # the torch path, bound the same way
    assert PPO(seed=0, n_steps=16, clip_value=True).learn("CartPole-v1", 64, progress=False, run_dir=False).fast_path.gradient is None
    with pytest.raises(ValueError, match=r"fast=True.*built-in vector actor-critic"):
        PPO(seed=0, fast=True).learn("Pendulum-v1", 64, progress=False, run_dir=False)
    continuous = PPO(seed=0, n_steps=16).learn("Pendulum-v1", 64, progress=False, run_dir=False).fast_path
    assert continuous.acting is None and continuous.gradient is None


def test_adam_step_falls_back_to_the_public_step_without_the_private_kernel(monkeypatch):
    from rladapt.agents import optim

    def train(direct: bool) -> torch.Tensor:
        param = nn.Parameter(torch.randn(50, generator=torch.Generator().manual_seed(0)))
        optimizer = optim.adam([param], 1e-3, torch.device("cpu"))
        for i in range(10):
            param.grad = torch.randn(50, generator=torch.Generator().manual_seed(i))
            optim.adam_step(optimizer) if direct else optimizer.step()
        return param.detach().clone()

    with_kernel = train(True)
    monkeypatch.setattr(optim, "FUSED_ADAM", None)  # a torch without torch._fused_adam_
    assert torch.equal(train(True), with_kernel) and torch.equal(train(False), with_kernel)


def test_collection_without_torchs_private_foreach_copy_gives_the_same_batches(monkeypatch):
    def collect() -> list:
        agent = PPO(seed=0, n_steps=8, num_envs=2)
        envs = make_vector_env([lambda: gym.make("CartPole-v1")] * 2)
        collector = VectorCollector(envs)
        agent.setup(collector.observation_space, collector.action_space)
        collector.reset(seed=0)
        batches = [collector.collect(agent, 8).clone() for _ in range(3)]
        collector.close()
        return batches

    with_foreach = collect()
    monkeypatch.delattr(torch, "_foreach_copy_")  # a torch without the private call: the public loop
    for a, b in zip(with_foreach, collect()):
        assert (a == b).all()


def test_every_collector_offers_every_member_of_the_collector_protocol_the_loop_uses() -> None:
    from rladapt import AutoAdapt
    from rladapt.collect import Collector, WorkerCollector
    from rladapt.collect.distributed import DistributedCollector
    from rladapt.collect.envs import EnvSource
    from rladapt.spec import bind_agent

    methods = ["reset", "collect", "metrics", "close", "recent_return", "recent_length"]
    for cls in (VectorCollector, WorkerCollector, DistributedCollector):
        assert [name for name in methods if not hasattr(cls, name)] == [], cls.__name__
    agent = PPO(seed=0, n_steps=4)
    source = EnvSource(AutoAdapt("CartPole-v1", agent), agent)
    bind_agent(agent, source.observation_space, source.action_space, source.family)
    collector = VectorCollector(make_vector_env(source.env_fns(2), "sync"))
    try:
        assert isinstance(collector, Collector)
        collector.reset(seed=0)
        collector.collect(agent, 4)
        assert collector.steps == 8 and collector.recent_return is None
    finally:
        collector.close()


def test_the_built_in_agents_and_a_custom_family_agent_satisfy_the_collecting_agent_protocol() -> None:
    from rladapt.agents import A3C, DQN, IMPALA, SAC, QLearning, RandomAgent
    from rladapt.protocols import CollectingAgent

    class Custom(A2C):  # a custom agent inherits the contract from its family
        pass

    for cls in (PPO, A2C, A3C, IMPALA, DQN, SAC, QLearning, RandomAgent, Custom):
        assert isinstance(cls(), CollectingAgent), cls.__name__
    assert not isinstance(object(), CollectingAgent)


def test_fast_true_refuses_a_fast_path_that_applies_only_in_part():
    # normalize_observations: the gradient applies, numpy acting does not; fast=True wants both.
    with pytest.raises(ValueError, match=r"fast=True.*act: numpy acting does not normalise observations"):
        PPO(seed=0, fast=True, normalize_observations=True).learn("CartPole-v1", 64, progress=False, run_dir=False)
    PPO(seed=0, fast=None, normalize_observations=True).learn("CartPole-v1", 64, progress=False, run_dir=False)


def test_runs_started_in_the_same_second_get_directories_of_their_own(tmp_path):
    # learn_groups starts one run per group in threads: each must claim a directory no other gets
    import threading

    from rladapt.logging import default_run_dir

    barrier, claimed = threading.Barrier(8), []

    def claim() -> None:
        barrier.wait()
        claimed.append(default_run_dir("ppo", "GroupView", root=tmp_path))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(claimed)) == 8 and all(path.is_dir() for path in claimed)


def test_training_flushes_denormals_and_gives_the_callers_mode_back():
    """Adam's first moment of a weight with zero gradient decays through denormal floats, the CPU's
    slow path (8x a fused Adam step): learn flushes them on its thread while it trains, and leaves
    the caller's mode as it found it (off, or on)."""
    from rladapt.numerics import denormals_are_flushed

    seen = []

    def record(agent, metrics):
        seen.append(denormals_are_flushed())

    tiny = torch.full((1,), torch.finfo(torch.float32).tiny)
    assert not denormals_are_flushed() and (tiny * 0.5).item() > 0  # a denormal, kept
    DQN(seed=0, num_envs=2, learning_starts=16, train_freq=4, gradient_steps=1).learn(
        "CartPole-v1", 64, progress=False, run_dir=False, callbacks=[record])
    assert seen and all(seen)
    assert not denormals_are_flushed()
    torch.set_flush_denormal(True)
    try:
        PPO(seed=0, num_envs=2, n_steps=8).learn("CartPole-v1", 16, progress=False, run_dir=False)
        assert denormals_are_flushed()
    finally:
        torch.set_flush_denormal(False)
