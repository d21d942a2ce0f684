"""AutoAdapt on real envs: spaces, plans, check_env, spec rebuild and a RandomAgent episode for every
env and agent kind; the frame stack/skip and Atari pipelines against gymnasium's own wrappers; masks."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env
from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation, RepeatAction

from rladapt import AdaptError, AgentSpec, AutoAdapt
from rladapt.agents.random import RandomAgent

ANY_OBS = {"vector", "image", "nested"}
KINDS = {
    # a discrete-only vector agent (DQN-like)
    "discrete": AgentSpec(observations={"vector"}, actions={"discrete"}, masks=True),
    # a continuous agent with tanh-squashed actions (SAC-like)
    "continuous": AgentSpec(observations={"vector", "image"}, actions={"unit_continuous"}),
    # a tabular agent (Q-learning)
    "tabular": AgentSpec(observations={"index"}, actions={"discrete"}, masks=True),
    # an agent that reads images only
    "image": AgentSpec(observations={"image"}, actions={"discrete", "multi_discrete", "continuous"}),
    # a multi-input agent (PPO-like)
    "nested": AgentSpec(observations=ANY_OBS, actions={"discrete", "multi_discrete", "continuous"}, masks=True),
}

#: What every adapted chain starts with: the space checks, then the episode statistics.
BASE = ["EnforceSpaces", "EpisodeStatistics"]
ATARI = [*BASE, "AtariPreprocessing", "ClipReward", "FrameStack"]
IMAGE = [*BASE, "ResizeObservation", "ChannelFirstObservation"]
ONE_HOT = [*BASE, "VectorObservation"]


def box(shape, dtype=np.float32):
    return ("Box", tuple(shape), np.dtype(dtype))


def err(path):
    return ("error", path)


# env id -> kind -> (observation, action, wrappers) or err(space path named by the AdaptError)
TABLE = {
    "CartPole-v1": {
        "discrete": (box([4]), spaces.Discrete(2), [*BASE]),
        "continuous": err("action"),
        "tabular": err("observation"),
        "image": err("observation"),
        "nested": (box([4]), spaces.Discrete(2), [*BASE]),
    },
    "Acrobot-v1": {
        "discrete": (box([6]), spaces.Discrete(3), [*BASE]),
        "tabular": err("observation"),
        "nested": (box([6]), spaces.Discrete(3), [*BASE]),
    },
    "MountainCarContinuous-v0": {
        "discrete": (box([2]), spaces.Discrete(7), [*BASE, "DiscretizeAction"]),
        "continuous": (box([2]), box([1]), [*BASE]),  # already in [-1, 1]: nothing to do
        "tabular": err("observation"),
        "nested": (box([2]), box([1]), [*BASE]),
    },
    "Pendulum-v1": {
        "discrete": (box([3]), spaces.Discrete(7), [*BASE, "DiscretizeAction"]),
        "continuous": (box([3]), box([1]), [*BASE, "UnitBoxAction"]),
        "tabular": err("observation"),
        "image": err("observation"),
        "nested": (box([3]), box([1]), [*BASE]),
    },
    "FrozenLake-v1": {
        "discrete": (box([16]), spaces.Discrete(4), ONE_HOT),
        "continuous": err("action"),
        "tabular": (spaces.Discrete(16), spaces.Discrete(4), [*BASE]),
        "image": err("observation"),
        "nested": (box([16]), spaces.Discrete(4), ONE_HOT),
    },
    "Taxi-v4": {
        "discrete": (box([500]), spaces.Discrete(6), [*BASE, "ActionMask", "VectorObservation"]),
        "continuous": err("action"),
        "tabular": (spaces.Discrete(500), spaces.Discrete(6), [*BASE, "ActionMask"]),
        "nested": (box([500]), spaces.Discrete(6), [*BASE, "ActionMask", "VectorObservation"]),
    },
    "Blackjack-v1": {
        "discrete": (box([45]), spaces.Discrete(2), ONE_HOT),
        "tabular": (spaces.Discrete(704), spaces.Discrete(2), [*BASE, "FlatIndexObservation"]),
        "image": err("observation"),
        "nested": (box([45]), spaces.Discrete(2), ONE_HOT),
    },
    "CliffWalking-v1": {
        "discrete": (box([48]), spaces.Discrete(4), ONE_HOT),
        "tabular": (spaces.Discrete(48), spaces.Discrete(4), [*BASE]),
        "nested": (box([48]), spaces.Discrete(4), ONE_HOT),
    },
    "LunarLander-v3": {
        "discrete": (box([8]), spaces.Discrete(4), [*BASE]),
        "continuous": err("action"),
        "tabular": err("observation"),
        "nested": (box([8]), spaces.Discrete(4), [*BASE]),
    },
    "CarRacing-v3": {
        "discrete": (box([3 * 84 * 84]), spaces.Discrete(343), [*IMAGE, "VectorObservation", "DiscretizeAction"]),
        "continuous": (box([3, 84, 84], np.uint8), box([3]), [*IMAGE, "UnitBoxAction"]),
        "tabular": err("observation"),
        "image": (box([3, 84, 84], np.uint8), box([3]), IMAGE),
        "nested": (box([3, 84, 84], np.uint8), box([3]), IMAGE),
    },
    "ALE/Pong-v5": {
        "discrete": (box([4 * 84 * 84]), spaces.Discrete(6), [*ATARI, "VectorObservation"]),
        "continuous": err("action"),
        "tabular": err("observation"),
        "image": (box([4, 84, 84], np.uint8), spaces.Discrete(6), ATARI),
        "nested": (box([4, 84, 84], np.uint8), spaces.Discrete(6), ATARI),
    },
    "ALE/Breakout-v5": {
        "image": (box([4, 84, 84], np.uint8), spaces.Discrete(4), ATARI),
        "tabular": err("observation"),
    },
    "HalfCheetah-v5": {
        "discrete": err("action"),  # 7 bins ** 6 dimensions = 117,649 actions: too many
        "continuous": (box([17]), box([6]), [*BASE, "VectorObservation"]),  # float64 -> float32
        "tabular": err("observation"),
        "image": err("observation"),
        "nested": (box([17]), box([6]), [*BASE, "VectorObservation"]),
    },
    "rladapt/Grid-v0": {
        "discrete": (box([12]), spaces.Discrete(4), ONE_HOT),
        "continuous": err("action"),
        "tabular": (spaces.Discrete(12), spaces.Discrete(4), [*BASE]),
        "nested": (box([12]), spaces.Discrete(4), ONE_HOT),
    },
    "rladapt/Shower-v0": {
        "discrete": (box([1]), spaces.Discrete(3), [*BASE]),
        "tabular": err("observation"),
        "nested": (box([1]), spaces.Discrete(3), [*BASE]),
    },
    "rladapt/TicTacToe-v0": {
        "discrete": (box([9]), spaces.Discrete(9), [*BASE, "ActionMask"]),
        "tabular": err("observation"),
        "nested": (box([9]), spaces.Discrete(9), [*BASE, "ActionMask"]),
    },
    "tests/NestedDict-v0": {
        "discrete": (box([32 * 32 * 3 + 2 + 3]), spaces.Discrete(12), [*BASE, "ActionMask", "VectorObservation", "FlattenMultiDiscreteAction"]),
        "continuous": err("action"),
        "tabular": err("observation['camera']"),
        "image": err("observation"),
        "nested": ("nested", spaces.MultiDiscrete([3, 4]), [*BASE, "ActionMask", "NestedObservation"]),
    },
}

# Random play on CliffWalking can wander for thousands of steps: bound its episodes.
ENV_KWARGS = {"CliffWalking-v1": {"max_episode_steps": 500}}

CASES = [(env_id, kind) for env_id, row in TABLE.items() for kind in row]


def assert_space(actual: spaces.Space, expected) -> None:
    if expected == "nested":
        assert isinstance(actual, spaces.Dict)
        assert actual["camera"].shape == (3, 32, 32) and actual["camera"].dtype == np.uint8
        assert actual["vector"].shape == (2 + 3,) and actual["vector"].dtype == np.float32
        assert set(actual.spaces) == {"camera", "vector"}  # the Text leaf and the mask are gone
    elif isinstance(expected, tuple):
        assert isinstance(actual, spaces.Box), actual
        assert actual.shape == expected[1] and actual.dtype == expected[2], actual
    else:
        assert actual == expected


def random_episode(env: gym.Env, seed: int, max_steps: int = 3000) -> tuple[float, int]:
    """A full episode of RandomAgent on the adapted env, masks respected; returns (raw return, length)."""
    agent = RandomAgent(seed=seed)
    agent.setup(env.observation_space, env.action_space)
    obs, info = env.reset(seed=seed)
    for step in range(1, max_steps + 1):
        assert env.observation_space.contains(obs), f"observation outside {env.observation_space} at step {step}"
        mask = info.get("action_mask") if env.metadata.get("action_mask") else None
        obs, reward, terminated, truncated, info = env.step(agent.act(obs, mask=mask))
        assert not info.get("invalid_action", False), "RandomAgent took a masked action"
        if terminated or truncated:
            return float(info["episode"]["r"]), int(info["episode"]["l"])
    return float("nan"), max_steps


@pytest.mark.parametrize(("env_id", "kind"), CASES, ids=[f"{e}-{k}" for e, k in CASES])
def test_autoadapt_table(env_id: str, kind: str) -> None:
    expected = TABLE[env_id][kind]
    if expected[0] == "error":
        with pytest.raises(AdaptError) as info:
            AutoAdapt(env_id, KINDS[kind], env_kwargs=ENV_KWARGS.get(env_id))
        message = str(info.value)
        assert message.startswith(expected[1]), message  # names the space path
        assert "accepts" in message and "Fix" in message, message  # what the agent accepts, and a fix
        return
    observation, action, wrappers = expected
    env = AutoAdapt(env_id, KINDS[kind], env_kwargs=ENV_KWARGS.get(env_id))
    assert env.plan.wrappers == wrappers, str(env.plan)
    assert_space(env.observation_space, observation)
    assert_space(env.action_space, action)
    assert str(env.plan).count("\n") == len(env.plan) - 1
    check_env(env, skip_render_check=True)

    rebuilt = gym.make(env.spec)
    assert rebuilt.observation_space == env.observation_space and rebuilt.action_space == env.action_space
    first, _ = env.reset(seed=3)
    again, _ = rebuilt.reset(seed=3)
    for a, b in zip(gym.spaces.flatten(env.observation_space, first), gym.spaces.flatten(env.observation_space, again)):
        assert a == b
    rebuilt.close()

    episode_return, length = random_episode(env, seed=0)
    assert np.isfinite(episode_return) and length >= 1
    env.close()


def test_vectorised_copies_come_from_the_spec() -> None:
    env = AutoAdapt("Taxi-v4", KINDS["discrete"])
    vec = gym.make_vec(env.spec, num_envs=3, vectorization_mode="sync")
    obs, info = vec.reset(seed=0)
    assert obs.shape == (3, 500) and obs.dtype == np.float32
    assert info["action_mask"].shape == (3, 6) and info["action_mask"].dtype == bool
    assert vec.metadata["action_mask"] is True
    vec.close()


def test_plan_explains_each_step() -> None:
    plan = str(AutoAdapt("Taxi-v4", KINDS["discrete"]).plan)
    assert "Discrete(500) observation -> one-hot float32[500]" in plan
    assert "info['action_mask'] (gymnasium Taxi convention)" in plan
    assert "needs float vectors" in plan


def test_nothing_is_inserted_when_nothing_changes() -> None:
    env = AutoAdapt(gym.make("CartPole-v1"), KINDS["nested"])
    assert env.plan.wrappers == [*BASE]
    already = AutoAdapt(env.env, KINDS["nested"])  # statistics already recorded: none added twice
    assert already.plan.wrappers == []
    assert str(already.plan) == "no adaptation needed"


def test_adapt_error_is_a_value_error_and_names_agents_that_would_work() -> None:
    with pytest.raises(ValueError, match="Fix: use an agent for discrete actions"):
        AutoAdapt("CartPole-v1", KINDS["continuous"])
    with pytest.raises(AdaptError, match="117,649"):
        AutoAdapt("HalfCheetah-v5", KINDS["discrete"])


def test_unknown_override_lists_the_valid_ones() -> None:
    with pytest.raises(AdaptError, match="frame_stak.*valid overrides are: frame_stack"):
        AutoAdapt("CartPole-v1", KINDS["discrete"], frame_stak=4)
    with pytest.raises(AdaptError, match="frame_stack must be a positive integer"):
        AutoAdapt("CartPole-v1", KINDS["discrete"], frame_stack=0)


def test_nested_env_with_only_unusable_leaves_is_refused() -> None:
    env = gym.make("CartPole-v1")
    env = gym.wrappers.TransformObservation(env, lambda o: {"note": "x"}, spaces.Dict({"note": spaces.Text(4)}))
    with pytest.raises(AdaptError, match=r"^observation: nothing usable remains"):
        AutoAdapt(env, KINDS["nested"])


def test_tabular_agent_on_a_bounded_box_with_observation_bins() -> None:
    env = AutoAdapt("rladapt/Shower-v0", KINDS["tabular"], observation_bins=20)
    assert env.observation_space == spaces.Discrete(20)
    assert env.plan.wrappers == [*BASE, "DiscretizeObservation"]
    check_env(env, skip_render_check=True)


def test_continuous_agent_on_discrete_env_by_argmax_when_asked() -> None:
    env = AutoAdapt("rladapt/TicTacToe-v0", AgentSpec(observations={"vector"}, actions={"unit_continuous"}, masks=True), discrete_as_continuous=True)
    assert env.action_space == spaces.Box(-1, 1, (9,), np.float32)
    obs, info = env.reset(seed=0)
    for _ in range(5):
        # the top score sits on a masked cell: argmax must skip it
        occupied = np.flatnonzero(~info["action_mask"])
        scores = np.zeros(9, np.float32)
        scores[occupied] = 1.0
        obs, reward, terminated, truncated, info = env.step(scores)
        assert not info.get("invalid_action", False)
        if terminated or truncated:
            break


# -- time: frame stack and skip give exactly what gymnasium's wrappers give --------------------


def rollout(env: gym.Env, actions: list, seed: int) -> list[np.ndarray]:
    obs, _ = env.reset(seed=seed)
    out = [np.array(obs)]
    for action in actions:
        obs, _, terminated, truncated, _ = env.step(action)
        out.append(np.array(obs))
        if terminated or truncated:
            obs, _ = env.reset()
            out.append(np.array(obs))
    return out


def test_vector_frame_stack_equals_gymnasium_frame_stack_flattened() -> None:
    actions = list(np.random.default_rng(0).integers(0, 2, 300))
    ours = rollout(AutoAdapt("CartPole-v1", KINDS["discrete"], frame_stack=4), actions, seed=5)
    reference = rollout(FrameStackObservation(gym.make("CartPole-v1"), 4), actions, seed=5)
    assert len(ours) == len(reference)
    for a, b in zip(ours, reference):
        np.testing.assert_array_equal(a, b.reshape(-1))


def test_vector_frame_skip_equals_gymnasium_repeat_action() -> None:
    actions = list(np.random.default_rng(1).integers(0, 2, 200))
    adapted = AutoAdapt("CartPole-v1", KINDS["discrete"], frame_skip=3)
    assert "RepeatAction" in adapted.plan.wrappers
    ours = rollout(adapted, actions, seed=7)
    reference = rollout(RepeatAction(gym.make("CartPole-v1"), 3), actions, seed=7)
    assert all(np.array_equal(a, b) for a, b in zip(ours, reference)) and len(ours) == len(reference)


def test_atari_pipeline_equals_gymnasium_reference_wrappers() -> None:
    actions = list(np.random.default_rng(2).integers(0, 6, 150))
    ours = rollout(AutoAdapt("ALE/Pong-v5", KINDS["image"]), actions, seed=11)
    base = gym.make("ALE/Pong-v5", frameskip=1)
    reference = rollout(FrameStackObservation(AtariPreprocessing(base, noop_max=30, frame_skip=4, screen_size=84), 4), actions, seed=11)
    assert len(ours) == len(reference)
    for a, b in zip(ours, reference):
        np.testing.assert_array_equal(a, b)


def test_atari_instance_with_its_own_frameskip_is_not_skipped_twice() -> None:
    env = AutoAdapt(gym.make("ALE/Breakout-v5"), KINDS["image"])  # frameskip=4 inside the ALE
    assert "already skips 4 frames" in str(env.plan)
    assert env.observation_space.shape == (4, 84, 84)


def test_episode_statistics_keep_the_raw_return_when_rewards_are_clipped() -> None:
    env = AutoAdapt("LunarLander-v3", KINDS["discrete"], clip_rewards=True)
    assert env.plan.wrappers == [*BASE, "ClipReward"]
    env.reset(seed=0)
    clipped_sum, rng = 0.0, np.random.default_rng(0)
    while True:
        _, reward, terminated, truncated, info = env.step(int(rng.integers(4)))
        assert -1.0 <= reward <= 1.0
        clipped_sum += reward
        if terminated or truncated:
            break
    raw = info["episode"]["r"]
    assert raw < -50 and abs(raw - clipped_sum) > 10  # the crash costs -100 raw, -1 clipped


def test_image_frame_stack_and_grayscale_on_request() -> None:
    env = AutoAdapt("CarRacing-v3", KINDS["image"], grayscale=True, frame_stack=2, image_size=(64, 64))
    assert env.observation_space.shape == (2, 64, 64) and env.observation_space.dtype == np.uint8
    assert env.plan.wrappers == [*BASE, "GrayscaleObservation", "ResizeObservation", "FrameStack"]
    check_env(env, skip_render_check=True)


@pytest.mark.parametrize("padding", ["reset", "zero"])
def test_in_place_frame_stack_equals_gymnasium_frame_stack(padding: str) -> None:
    from rladapt.wrappers import FrameStack

    actions = list(np.random.default_rng(3).integers(0, 2, 300))
    ours = rollout(FrameStack(gym.make("CartPole-v1"), 3, padding_type=padding), actions, seed=2)
    reference = rollout(FrameStackObservation(gym.make("CartPole-v1"), 3, padding_type=padding), actions, seed=2)
    assert len(ours) == len(reference)
    for a, b in zip(ours, reference):
        np.testing.assert_array_equal(a, b)
    # each observation is its own array: later steps must not change an earlier one
    assert not np.shares_memory(ours[1], ours[2])


def test_channel_first_images_larger_than_84_are_resized_through_hwc() -> None:
    from rladapt.wrappers import ChannelFirstObservation

    chw = ChannelFirstObservation(gym.make("CarRacing-v3"))  # a CHW env: uint8[3,96,96]
    env = AutoAdapt(chw, KINDS["image"])
    assert env.plan.wrappers == [*BASE, "ChannelLastObservation", "ResizeObservation", "ChannelFirstObservation"]
    assert env.observation_space.shape == (3, 84, 84)
    obs, _ = env.reset(seed=0)
    reference, _ = AutoAdapt("CarRacing-v3", KINDS["image"]).reset(seed=0)
    np.testing.assert_array_equal(obs, reference)
    assert gym.make(env.spec).observation_space == env.observation_space
