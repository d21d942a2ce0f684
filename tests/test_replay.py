"""Replay storage: wrap-around, n-step targets, prioritisation, frame deduplication, checkpoints."""

from __future__ import annotations

import collections
import io

import gymnasium as gym
import numpy as np
import pytest
import torch
from tensordict import TensorDict

from rladapt.buffers import PrioritizedReplayBuffer, ReplayBuffer, SumTree


def _step(obs, action, next_obs, reward, terminated, truncated, **extra) -> TensorDict:
    n = len(action)
    td = TensorDict(
        {
            "observation": torch.as_tensor(np.asarray(obs)),
            "action": torch.as_tensor(np.asarray(action)),
            "next": {
                "observation": torch.as_tensor(np.asarray(next_obs)),
                "reward": torch.as_tensor(np.asarray(reward, dtype=np.float32)),
                "terminated": torch.as_tensor(np.asarray(terminated, dtype=bool)),
                "truncated": torch.as_tensor(np.asarray(truncated, dtype=bool)),
            },
        },
        batch_size=[n],
    )
    for k, v in extra.items():
        td.set(k, torch.as_tensor(np.asarray(v)))
    return td


def _counting_step(num_envs: int, t: int) -> TensorDict:
    obs = (np.full((num_envs, 3), t) + np.arange(num_envs)[:, None] * 1000).astype(np.float32)
    z = np.zeros(num_envs, dtype=bool)
    return _step(obs, np.full(num_envs, t), obs + 1, np.full(num_envs, t), z, z)


def _assert_td_equal(a: TensorDict, b: TensorDict, keys=None) -> None:
    keys = keys or [k for k in b.keys(include_nested=True, leaves_only=True)]
    for k in keys:
        x, y = a.get(k), b.get(k)
        assert x.dtype == y.dtype, k
        assert torch.equal(x, y), f"{k} differs"


# ---------------------------------------------------------------------------- uniform storage


def test_wraparound_keeps_newest_per_env():
    rb = ReplayBuffer(10, seed=0)  # 2 envs -> 5 slots each
    for t in range(13):
        rb.extend(_counting_step(2, t))
    assert len(rb) == 10
    live = rb.get(rb.indices())
    for e in range(2):
        rows = live["observation"][:, 0] // 1000 == e
        assert sorted(live["action"][rows].tolist()) == list(range(8, 13))
    batch = rb.sample(256, np.random.default_rng(0))
    assert batch.batch_size == torch.Size([256])
    assert batch["action"].min() >= 8
    # next observation belongs to the same transition
    assert torch.equal(batch["next", "observation"], batch["observation"] + 1)
    assert batch["observation"].dtype == torch.float32 and batch["weight"].eq(1).all()


def test_extend_subset_of_envs_and_torch_generator():
    rb = ReplayBuffer(8, num_envs=2)
    rb.extend(_counting_step(2, 0))
    rb.extend(_counting_step(2, 1)[1:], env_ids=[1])
    rb.extend(_counting_step(2, 2), env_ids=np.array([True, False]))
    assert len(rb) == 4
    got = rb.get(rb.indices())
    assert got["action"].tolist() == [0, 2, 0, 1]  # env 0 then env 1, oldest first
    assert rb.sample(4, torch.Generator().manual_seed(0)).batch_size == torch.Size([4])
    with pytest.raises(ValueError, match="env_ids"):
        rb.extend(_counting_step(2, 3), env_ids=[0])


def test_collector_valid_flag_and_key_selection():
    """The collector's step TensorDict: ``valid`` marks the autoreset rows, extra policy outputs."""
    rb = ReplayBuffer(8, keys=["observation", "action", ("next", "observation")])
    for t in range(3):
        td = _counting_step(2, t)
        td.set("valid", torch.tensor([True, t != 1]))
        td.set("q_value", torch.zeros(2, 6))
        rb.extend(td)
    assert len(rb) == 5
    got = rb.get(rb.indices())
    assert got["action"].tolist() == [0, 1, 2, 0, 2]
    assert "q_value" not in got.keys() and "valid" not in got.keys()
    with pytest.raises(ValueError, match="env_ids"):
        rb.extend(_counting_step(2, 3)[:1])  # rows dropped without saying which env they are


def test_missing_keys_are_named():
    rb = ReplayBuffer(8)
    td = _counting_step(2, 0).exclude(("next", "truncated"))
    with pytest.raises(ValueError, match="next/truncated"):
        rb.extend(td)


# ---------------------------------------------------------------------------- n-step


def test_nstep_by_hand_two_envs_termination_and_truncation():
    """env 0: rewards 1, 2, 3 (terminated), then 10, 20, 30; env 1: 100, 200, 300, 400 (truncated),
    then 1000, 2000. The autoreset step after each done is not a transition and is left out."""
    g = 0.9
    rb = ReplayBuffer(40, num_envs=2, n_step=3, gamma=g)
    f = False
    # per vector step: (env, obs id, reward, terminated, truncated); obs id -> next obs id + 1
    script = [
        [(0, 0, 1, f, f), (1, 100, 100, f, f)],
        [(0, 1, 2, f, f), (1, 101, 200, f, f)],
        [(0, 2, 3, True, f), (1, 102, 300, f, f)],
        [(1, 103, 400, f, True)],  # env 0 autoresets
        [(0, 10, 10, f, f)],  # env 1 autoresets
        [(0, 11, 20, f, f), (1, 110, 1000, f, f)],
        [(0, 12, 30, f, f), (1, 111, 2000, f, f)],
    ]
    for rows in script:
        envs = [r[0] for r in rows]
        obs = [[r[1]] for r in rows]
        rb.extend(
            _step(obs, [r[1] for r in rows], [[o[0] + 1] for o in obs], [r[2] for r in rows],
                  [r[3] for r in rows], [r[4] for r in rows]),
            env_ids=envs,
        )
    got = rb.get(rb.indices())
    by_obs = {int(o): i for i, o in enumerate(got["observation"][:, 0])}
    expected = {  # obs id: (n-step reward, discount, next obs id, terminated, truncated)
        0: (1 + g * 2 + g**2 * 3, 0.0, 3, True, False),
        1: (2 + g * 3, 0.0, 3, True, False),
        2: (3, 0.0, 3, True, False),
        10: (10 + g * 20 + g**2 * 30, g**3, 13, False, False),
        11: (20 + g * 30, g**2, 13, False, False),  # newest transitions: a shorter window
        12: (30, g, 13, False, False),
        100: (100 + g * 200 + g**2 * 300, g**3, 103, False, False),
        101: (200 + g * 300 + g**2 * 400, g**3, 104, False, True),  # bootstraps from final obs
        102: (300 + g * 400, g**2, 104, False, True),
        103: (400, g, 104, False, True),
        110: (1000 + g * 2000, g**2, 112, False, False),
        111: (2000, g, 112, False, False),
    }
    assert sorted(by_obs) == sorted(expected)
    for o, (ret, disc, nxt, term, trunc) in expected.items():
        i = by_obs[o]
        assert got["next", "reward"][i].item() == pytest.approx(ret, rel=1e-6), o
        assert got["next", "discount"][i].item() == pytest.approx(disc, rel=1e-6), o
        assert got["next", "observation"][i, 0].item() == nxt, o
        assert got["next", "terminated"][i].item() == term, o
        assert got["next", "truncated"][i].item() == trunc, o
        assert got["next", "done"][i].item() == (term or trunc), o
        assert got["action"][i].item() == o


def test_end_streams_stops_nstep_windows_like_a_truncation():
    """A collector that replaced env 0 in mid-episode ends its stream: the window of the old
    episode stops at its last transition (bootstrapping from its next observation) and never
    reaches into the new episode; env 1 is untouched."""
    g = 0.9
    rb = ReplayBuffer(40, num_envs=2, n_step=3, gamma=g)
    f = [False, False]
    for t in range(2):
        rb.extend(_step([[t], [100 + t]], [t, 100 + t], [[t + 1], [101 + t]], [1, 1], f, f))
    rb.end_streams([0])
    rb.end_streams([])  # nothing to end
    for t in range(2):  # env 0's new episode starts at obs 50
        rb.extend(_step([[50 + t], [102 + t]], [50 + t, 102 + t], [[51 + t], [103 + t]], [1, 1], f, f))
    got = rb.get(rb.indices())
    by_obs = {int(o): i for i, o in enumerate(got["observation"][:, 0])}
    i = by_obs[0]
    assert got["next", "reward"][i].item() == pytest.approx(1 + g)
    assert got["next", "discount"][i].item() == pytest.approx(g**2)
    assert got["next", "observation"][i, 0].item() == 2
    assert got["next", "truncated"][i].item() and not got["next", "terminated"][i].item()
    assert got["next", "discount"][by_obs[100]].item() == pytest.approx(g**3)  # env 1: one episode
    assert got["next", "observation"][by_obs[100], 0].item() == 103
    with pytest.raises(ValueError, match="out of range"):
        rb.end_streams([2])


def test_one_step_discount():
    rb = ReplayBuffer(8, gamma=0.5)
    rb.extend(_step([[0], [1]], [0, 1], [[1], [2]], [1, 1], [True, False], [False, True]))
    got = rb.get(rb.indices())
    assert got["next", "discount"].tolist() == [0.0, 0.5]
    assert got["next", "reward"].tolist() == [1.0, 1.0]


# ---------------------------------------------------------------------------- priorities


def _chi2_ok(counts: np.ndarray, probs: np.ndarray) -> bool:
    n = counts.sum()
    expected = n * probs
    keep = expected > 0
    stat = ((counts[keep] - expected[keep]) ** 2 / expected[keep]).sum()
    dof = keep.sum() - 1
    # 99.9% quantile of chi-square, Wilson-Hilferty approximation
    z = 3.09
    crit = dof * (1 - 2 / (9 * dof) + z * np.sqrt(2 / (9 * dof))) ** 3
    return stat < crit and counts[~keep].sum() == 0


def test_sumtree_frequencies_match_priorities():
    tree = SumTree(37)
    rng = np.random.default_rng(0)
    p = rng.random(37) ** 3
    p[[3, 17, 36]] = 0.0  # empty slots: never drawn
    tree.update(np.arange(37), p)
    assert tree.total == pytest.approx(p.sum())
    assert tree.min == pytest.approx(p[p > 0].min())
    leaves = tree.find(rng.random(200_000) * tree.total)
    counts = np.bincount(leaves, minlength=37)
    assert _chi2_ok(counts, p / p.sum())
    # batched update with duplicates and an edge mass
    tree.update(np.array([5, 5, 6]), np.array([2.0, 2.0, 0.0]))
    assert tree[5] == 2.0 and tree[6] == 0.0
    assert tree.total == pytest.approx(p.sum() - p[5] - p[6] + 2.0)
    assert tree[tree.find(np.array([np.nextafter(tree.total, 0)]))] > 0


def test_proportional_priorities_and_importance_weights():
    rb = PrioritizedReplayBuffer(8, alpha=0.7, beta=0.4, beta_steps=10, epsilon=0.01)
    for t in range(4):
        rb.extend(_counting_step(2, t))
    idx = rb.indices()
    err = np.array([0.0, 1.0, 2.0, 4.0, 0.5, 3.0, 0.1, 8.0])
    rb.update_priorities(torch.as_tensor(idx), torch.tensor(-err, requires_grad=True))
    p = (err + 0.01) ** 0.7
    probs = np.zeros(8)
    probs[idx] = p / p.sum()
    batch = rb.sample(100_000, np.random.default_rng(1), beta=0.5)
    counts = np.bincount(batch["index"].numpy(), minlength=8)
    assert _chi2_ok(counts, probs)
    w = (8 * probs[batch["index"].numpy()]) ** -0.5
    w /= (8 * probs[idx].min()) ** -0.5
    np.testing.assert_allclose(batch["weight"].numpy(), w, rtol=1e-5)
    assert batch["weight"].max().item() <= 1.0 + 1e-6
    # beta anneals linearly to 1 over beta_steps sample calls
    assert rb.beta == pytest.approx(0.4 + 0.6 / 10)
    for _ in range(20):
        rb.sample(2)
    assert rb.beta == 1.0
    # a new transition gets the max priority
    rb.extend(_counting_step(2, 4))
    new = np.array([8, 9])  # 5th transition of env 0 and env 1 (id = n * num_envs + env)
    assert np.allclose(rb.priorities(new), p.max())


def test_rank_based_ordering():
    alpha = 0.8
    rb = ReplayBuffer(16, prioritized="rank", alpha=alpha, rank_resort_interval=1)
    for t in range(8):
        rb.extend(_counting_step(2, t))
    idx = rb.indices()
    err = np.random.default_rng(2).permutation(16).astype(float)
    rb.update_priorities(idx, err)  # interval 1: full re-sort now
    rank = np.empty(16)
    rank[np.argsort(-err)] = np.arange(1, 17)
    np.testing.assert_allclose(rb.priorities(idx), rank**-alpha)
    probs = np.zeros(16)
    probs[idx] = rank**-alpha / (rank**-alpha).sum()
    counts = np.bincount(rb.sample(100_000, np.random.default_rng(3))["index"].numpy(), minlength=16)
    assert _chi2_ok(counts, probs)
    # between re-sorts, an update takes its rank from the last sorted snapshot
    rb.rank_resort_interval = 100
    top = idx[np.argmin(err)]
    rb.update_priorities([top], [100.0])
    assert rb.priorities(top) == pytest.approx(1.0)
    rb.update_priorities([top], [7.5])  # 8 snapshot errors (8..15) are larger -> rank 9
    assert rb.priorities(top) == pytest.approx(9.0**-alpha)
    rb.resort()
    assert np.sort(rb.priorities(idx))[::-1] == pytest.approx(np.arange(1, 17) ** -alpha)


def test_evicted_indices_are_not_updated():
    rb = PrioritizedReplayBuffer(4)
    rb.extend(_counting_step(2, 0))
    old = rb.sample(4)["index"]
    for t in range(1, 3):
        rb.extend(_counting_step(2, t))
    rb.update_priorities(old, torch.ones(4) * 5)  # slots were overwritten: skipped
    assert np.allclose(rb.priorities(rb.indices()), 1.0)


# ---------------------------------------------------------------------------- frame dedup


class _Frames(gym.Env):
    """Random small uint8 frames, random termination/truncation: a cheap stand-in for Atari."""

    def __init__(self, p_end: float = 0.05, shape=(6, 5)) -> None:
        self.observation_space = gym.spaces.Box(0, 255, shape, np.uint8)
        self.action_space = gym.spaces.Discrete(3)
        self.p_end = p_end

    def _frame(self):
        return self.np_random.integers(0, 4, self.observation_space.shape, dtype=np.uint8)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self._frame(), {}

    def step(self, action):
        u = self.np_random.random()
        return self._frame(), float(u), bool(u < self.p_end / 2), bool(u > 1 - self.p_end / 2), {}


def _rollout(venv, buffers, steps, seed=0, extra=None):
    """A NEXT_STEP-autoreset collector: the step after a done is left out of every buffer."""
    obs, _ = venv.reset(seed=seed)
    n = venv.num_envs
    autoreset = np.zeros(n, dtype=bool)
    episode, t_in_ep = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    venv.action_space.seed(seed)
    for _ in range(steps):
        action = venv.action_space.sample()
        nobs, reward, term, trunc, _ = venv.step(action)
        live = ~autoreset
        if live.any():
            td = _step(obs, action, nobs, reward, term, trunc, episode=episode.copy(), t=t_in_ep.copy())
            for rb in buffers:
                rb.extend(td, env_ids=live)
            if extra is not None:
                extra(td, live)
        t_in_ep = np.where(live, t_in_ep + 1, 0)
        episode = episode + autoreset
        obs, autoreset = nobs, term | trunc


def _frame_identities(envs, episodes, ts, stack):
    """Unique frames the given transitions reference, by identity (env, episode, frame number)."""
    ids = set()
    for e, ep, t in zip(envs, episodes, ts):
        for f in range(max(0, t - stack + 1), t + 2):  # frame f = observation after f steps
            ids.add((e, ep, f))
    return len(ids)


@pytest.mark.parametrize(
    "num_envs,capacity,slack,n_step,p_end,prio,check",
    [
        (2, 300, 1 / 32, 1, 0.05, None, True),
        (3, 240, 0.0, 3, 0.2, "proportional", True),
        (1, 50, 0.1, 2, 0.5, "rank", True),
        (2, 100, 0.0, 3, 0.1, None, False),  # trusting the stream: no continuity check
    ],
)
def test_frame_dedup_matches_naive(num_envs, capacity, slack, n_step, p_end, prio, check):
    from gymnasium.wrappers import FrameStackObservation

    venv = gym.vector.SyncVectorEnv(
        [lambda: FrameStackObservation(_Frames(p_end), 4) for _ in range(num_envs)]
    )
    kw = dict(n_step=n_step, gamma=0.9, prioritized=prio)
    naive = ReplayBuffer(capacity, **kw)
    dedup = ReplayBuffer(capacity, frame_stack=4, frame_slack=slack, check_frames=check, **kw)
    checked, chooser = [0], np.random.default_rng(0)

    def compare(td, live):  # compare everything live at random moments of the rollout
        if chooser.random() < 0.1:
            idx = dedup.indices()
            _assert_td_equal(dedup.get(idx), naive.get(idx))
            checked[0] += 1

    _rollout(venv, [naive, dedup], 600, extra=compare)
    assert checked[0] > 10
    idx = dedup.indices()
    assert set(idx.tolist()) <= set(naive.indices().tolist())
    _assert_td_equal(dedup.get(idx), naive.get(idx))
    if slack == 0.0:
        assert len(dedup) < len(naive)  # short episodes: the frame ring is the limit
    batch = dedup.sample(64, np.random.default_rng(0))
    _assert_td_equal(batch, naive.get(batch["index"]), keys=["observation", ("next", "observation")])


def test_frame_dedup_nested_key_masks_and_column_rewards():
    """Dict observation with the stack at ("observation", "pixels"), action masks, and TorchRL's
    ``[B, 1]`` reward/flag shapes."""
    from gymnasium.wrappers import FrameStackObservation

    venv = gym.vector.SyncVectorEnv([lambda: FrameStackObservation(_Frames(0.2), 3) for _ in range(2)])
    key = ("observation", "pixels")
    naive = ReplayBuffer(60, n_step=2)
    dedup = ReplayBuffer(60, n_step=2, frame_stack=3, frame_key=key)

    def nest(td: TensorDict) -> TensorDict:
        n = td.batch_size[0]
        out = TensorDict(
            {
                "observation": {"pixels": td["observation"], "vec": td["observation"][:, -1, 0].float()},
                "action": td["action"],
                "action_mask": torch.ones(n, 3, dtype=torch.bool),
                "next": {
                    "observation": {
                        "pixels": td["next", "observation"],
                        "vec": td["next", "observation"][:, -1, 0].float(),
                    },
                    "action_mask": td["next", "observation"][:, -1, :3, 0] > 0,
                    "reward": td["next", "reward"][:, None],
                    "terminated": td["next", "terminated"][:, None],
                    "truncated": td["next", "truncated"][:, None],
                },
            },
            batch_size=[n],
        )
        return out

    class Nesting:
        def __init__(self, rb):
            self.rb = rb

        def extend(self, td, env_ids=None):
            self.rb.extend(nest(td), env_ids=env_ids)

    _rollout(venv, [Nesting(naive), Nesting(dedup)], 200)
    idx = dedup.indices()
    got, ref = dedup.get(idx), naive.get(idx)
    _assert_td_equal(got, ref)
    assert got["next", "discount"].shape == (len(idx), 1)
    assert got["observation", "pixels"].shape == (len(idx), 3, 6, 5)


def test_frame_dedup_discontinuous_stream_is_exact():
    """A stack that does not continue the env's stream (here: random stacks) is stored in full."""
    rng = np.random.default_rng(0)
    naive, dedup = ReplayBuffer(20), ReplayBuffer(20, frame_stack=3)
    for t in range(30):
        obs = rng.integers(0, 3, (2, 3, 2, 2), dtype=np.uint8)
        nxt = np.concatenate([obs[:, 1:], rng.integers(0, 3, (2, 1, 2, 2), dtype=np.uint8)], 1)
        td = _step(obs, [t, t], nxt, [0, 0], [False, False], [False, False])
        naive.extend(td)
        dedup.extend(td)
    idx = dedup.indices()
    assert len(idx) >= 5  # 4 frames per transition here: the frame ring holds fewer transitions
    _assert_td_equal(dedup.get(idx), naive.get(idx))
    bad = _step(obs, [0, 0], obs, [0, 0], [False, False], [False, False])
    before = len(dedup)
    with pytest.raises(ValueError, match="not the current stack shifted"):
        dedup.extend(bad)
    assert len(dedup) == before  # nothing written
    _assert_td_equal(dedup.get(idx), naive.get(idx))


def test_frame_dedup_memory_at_one_million():
    rb = ReplayBuffer(1_000_000, frame_stack=4)
    obs = np.zeros((1, 4, 84, 84), dtype=np.uint8)
    rb.extend(_step(obs, [0], obs, [0.0], [False], [False]))  # allocates (lazily committed pages)
    unique = 1_000_000 * 84 * 84
    assert rb.nbytes <= 1.1 * unique
    assert rb._frames.dtype == torch.uint8


def _pong(limit: int):
    import ale_py
    from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

    gym.register_envs(ale_py)

    def thunk():
        env = gym.make("ALE/Pong-v5", frameskip=1, max_episode_steps=limit)
        return FrameStackObservation(AtariPreprocessing(env), 4)

    return thunk


def test_frame_dedup_on_atari_rollout():
    """Two Pong envs (AtariPreprocessing + FrameStackObservation(4)), episodes cut at 400 / 560
    frames (about 90 / 130 agent steps), a random policy for 1,500 vector steps: every transition
    the dedup buffer holds equals the naive buffer's and the env's own stacks, element for element."""
    pytest.importorskip("ale_py")
    venv = gym.vector.SyncVectorEnv([_pong(400), _pong(560)])
    capacity = 1000
    naive, naive1 = ReplayBuffer(capacity, n_step=3), ReplayBuffer(capacity)
    dedup = ReplayBuffer(capacity, n_step=3, frame_stack=4)
    tight = ReplayBuffer(capacity, frame_stack=4, frame_slack=0.0)  # frame ring binds: evictions
    recent = [collections.deque(maxlen=capacity // 2) for _ in range(2)]
    ends = [0]

    def record(td, live):
        for e in np.nonzero(live)[0]:  # td holds every env's row; ``live`` says which are kept
            recent[e].append((td["observation"][e].clone(), td["next", "observation"][e].clone()))
        ends[0] += int(td["next", "terminated"].sum() + td["next", "truncated"].sum())

    _rollout(venv, [naive, naive1, dedup, tight], 1500, extra=record)
    venv.close()
    assert ends[0] >= 20
    keys = ["observation", ("next", "observation"), ("next", "reward"), ("next", "discount")]
    keys += ["action", "episode", "t", ("next", "done")]
    for rb, ref in ((dedup, naive), (tight, naive1)):
        idx = rb.indices()
        assert set(idx.tolist()) <= set(ref.indices().tolist())
        _assert_td_equal(rb.get(idx), ref.get(idx), keys=keys)
    assert len(tight) < len(naive1) == capacity
    # ... and the naive buffer holds exactly the stacks the env produced
    for e in range(2):
        idx = naive1.indices()[naive1.indices() % 2 == e]  # oldest first, like `recent`
        got = naive1.get(idx)
        assert len(idx) == len(recent[e])
        assert torch.equal(got["observation"], torch.stack([o for o, _ in recent[e]]))
        assert torch.equal(got["next", "observation"], torch.stack([no for _, no in recent[e]]))
    # memory: dedup bytes against the unique frames its live transitions reference
    got = dedup.get(dedup.indices())
    envs = (got["index"] % 2).tolist()
    unique = _frame_identities(envs, got["episode"].tolist(), got["t"].tolist(), 4)
    ratio = dedup.nbytes / (unique * 84 * 84)
    print(f"dedup bytes / unique frame bytes = {ratio:.4f} ({unique} unique frames, {len(dedup)} transitions)")
    assert ratio <= 1.1, ratio


# ---------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("prio", [None, "proportional", "rank"])
def test_state_dict_round_trip(prio):
    from gymnasium.wrappers import FrameStackObservation

    venv = gym.vector.SyncVectorEnv([lambda: FrameStackObservation(_Frames(0.1), 4) for _ in range(2)])
    kw = dict(n_step=2, prioritized=prio, frame_stack=4, seed=3)
    rb = ReplayBuffer(100, **kw)
    _rollout(venv, [rb], 80)
    if prio:
        b = rb.sample(16)
        rb.update_priorities(b["index"], torch.arange(16.0))
    f = io.BytesIO()
    torch.save(rb.state_dict(), f)
    f.seek(0)
    state = torch.load(f, weights_only=True)
    rb2 = ReplayBuffer(100, **kw)
    rb2.load_state_dict(state)
    assert len(rb2) == len(rb)
    _assert_td_equal(rb2.get(rb2.indices()), rb.get(rb.indices()))
    _assert_td_equal(rb2.sample(32), rb.sample(32))  # same generator state, same priorities
    # both keep going identically
    _rollout(venv, [rb, rb2], 30, seed=5)
    _assert_td_equal(rb2.get(rb2.indices()), rb.get(rb.indices()))
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(50, **kw).load_state_dict(state)


def _cartpole_windows(num_envs: int, steps: int, restart_at: tuple[int, ...] = ()):
    """Steps of CartPole in a NEXT_STEP-autoreset vector env as the collector gives them: ``valid``
    False on each reset row, ``is_init`` where an observation starts an episode; ``restart_at``
    also marks env 0's observations at those steps as starts without a done before them (a
    restarted worker)."""
    venv = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1") for _ in range(num_envs)])
    rng = np.random.default_rng(0)
    obs, _ = venv.reset(seed=0)
    autoreset, init = np.zeros(num_envs, bool), np.ones(num_envs, bool)
    rows = []
    for t in range(steps):
        action = rng.integers(0, 2, num_envs)
        nxt, reward, term, trunc, _ = venv.step(action)
        starts = init.copy()
        if t in restart_at:
            starts[0] = True
        rows.append(_step(obs, action, nxt, reward, term, trunc, valid=~autoreset, is_init=starts & ~autoreset))
        init, autoreset, obs = autoreset.copy(), term | trunc, nxt
    venv.close()
    return rows


@pytest.mark.parametrize("prio", [None, "proportional", "rank"])
def test_extend_steps_leaves_the_buffer_as_one_extend_per_step(prio):
    """A window of collected steps written at once (OffPolicyAgent.store's path) stores what one
    extend per step stores: autoreset rows left out, each env's stream wrapping around, n-step
    windows and priorities; windows longer than an env's capacity and a stream restarting without
    a done inside the window take the per-step path, with the same result."""
    rows = _cartpole_windows(3, 230, restart_at=(220, 225))
    one_by_one, at_once = (ReplayBuffer(60, n_step=3, prioritized=prio, seed=1) for _ in range(2))
    for td in rows:
        one_by_one.extend(td)
    start = 0
    # 25 > 20 transitions per env; restarts inside a window (step 220) and at a window's first row (225)
    for size in [8] * 19 + [25] + [8] * 6 + [5]:
        at_once.extend_steps(torch.stack(rows[start:start + size], 0))
        start += size
        assert len(at_once) > 0
    assert start == len(rows)
    assert len(at_once) == len(one_by_one) == 60
    assert np.array_equal(at_once._nt, one_by_one._nt) and np.array_equal(at_once._lo, one_by_one._lo)
    stored = one_by_one.get(one_by_one.indices())
    # each restart ended env 0's stream: the 3-step windows of its last 3 transitions end truncated
    # (random CartPole never reaches its 500-step truncation)
    assert int(stored["next", "truncated"].sum()) == 2 * 3
    _assert_td_equal(at_once.get(at_once.indices()), stored)
    if prio:
        assert torch.equal(at_once.state_dict()["priority"], one_by_one.state_dict()["priority"])
    _assert_td_equal(at_once.sample(64), one_by_one.sample(64))  # n-step sums, discounts, weights
    with pytest.raises(ValueError, match=r"\[steps, num_envs\]"):
        at_once.extend_steps(rows[0])
