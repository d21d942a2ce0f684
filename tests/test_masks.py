"""Invalid-action masks: every convention normalised to one boolean info['action_mask'], converted
correctly when actions are converted, and bad masks refused with the step named."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from hypothesis import given, settings
from hypothesis import strategies as st

from rladapt import ActionMaskError, AdaptError, AgentSpec, AutoAdapt
from rladapt.agents import DQN
from rladapt.wrappers import ActionMask, FlattenMultiDiscreteAction, product_mask

MASKED = AgentSpec(observations={"vector", "image", "nested"}, actions={"discrete", "multi_discrete", "continuous"}, masks=True)
FLAT = AgentSpec(observations={"vector"}, actions={"discrete"}, masks=True)
TABULAR = AgentSpec(observations={"index"}, actions={"discrete"}, masks=True)


def test_taxi_info_convention_gives_a_bool_mask_equal_to_taxis_own() -> None:
    env = AutoAdapt("Taxi-v4", TABULAR)
    obs, info = env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(100):
        taxi = env.unwrapped.action_mask(obs)  # Taxi's own mask for this state
        assert info["action_mask"].dtype == bool
        np.testing.assert_array_equal(info["action_mask"], taxi.astype(bool))
        action = rng.choice(np.flatnonzero(info["action_mask"]))
        obs, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            obs, info = env.reset()


def test_action_masks_method_convention_follows_the_board() -> None:
    env = AutoAdapt("rladapt/TicTacToe-v0", FLAT)
    assert "sb3-contrib convention" in str(env.plan)
    obs, info = env.reset(seed=1)
    while True:
        np.testing.assert_array_equal(info["action_mask"], obs == 0)  # empty cells are valid
        obs, _, terminated, truncated, info = env.step(int(np.flatnonzero(info["action_mask"])[0]))
        assert not info.get("invalid_action", False)
        if terminated or truncated:
            break


def test_observation_convention_moves_the_mask_out_of_the_observation() -> None:
    env = AutoAdapt("tests/NestedDict-v0", MASKED)
    assert "action_mask" not in env.observation_space.spaces
    obs, info = env.reset(seed=0)
    assert info["action_mask"].shape == (7,) and info["action_mask"].dtype == bool
    assert "action_mask" not in obs


def test_invalid_actions_convention_masks_the_listed_indices() -> None:
    env = AutoAdapt("tests/InvalidActions-v0", TABULAR)
    assert "SRL convention" in str(env.plan)
    _, info = env.reset(seed=0)
    np.testing.assert_array_equal(info["action_mask"], [False, True, True])  # at the left wall


def test_flattened_multidiscrete_gets_the_product_mask_and_never_an_invalid_action() -> None:
    env = AutoAdapt("tests/NestedDict-v0", FLAT)
    assert env.action_space == spaces.Discrete(12)
    obs, info = env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(200):
        mask = info["action_mask"]
        assert mask.shape == (12,)
        obs, _, terminated, truncated, info = env.step(int(rng.choice(np.flatnonzero(mask))))
        assert not info["invalid_action"]
        if terminated or truncated:
            obs, info = env.reset()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=3).flatmap(
    lambda nvec: st.tuples(st.just(nvec), st.lists(st.booleans(), min_size=sum(nvec), max_size=sum(nvec)))
))
def test_product_mask_is_exact_on_small_multidiscrete_spaces(case) -> None:
    nvec, flags = case
    dimension_masks = np.array(flags, dtype=bool)
    joint = product_mask(dimension_masks, np.array(nvec))
    assert joint.shape == (int(np.prod(nvec)),)
    parts = np.split(dimension_masks, np.cumsum(nvec)[:-1])
    for index in range(int(np.prod(nvec))):
        components = np.unravel_index(index, nvec)
        assert joint[index] == all(parts[d][c] for d, c in enumerate(components))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=3))
def test_flattened_index_maps_to_the_same_components_as_the_product_mask(nvec) -> None:
    class Probe(gym.Env):
        observation_space = spaces.Discrete(1)
        action_space = spaces.MultiDiscrete(nvec)

        def reset(self, *, seed=None, options=None):
            return 0, {}

        def step(self, action):
            self.last = np.array(action)
            return 0, 0.0, False, False, {}

    env = FlattenMultiDiscreteAction(Probe())
    env.reset()
    for index in range(env.action_space.n):
        env.step(index)
        np.testing.assert_array_equal(env.unwrapped.last, np.unravel_index(index, nvec))


def test_all_false_mask_raises_naming_the_step() -> None:
    gym.register("tests/EmptyMaskAt3-v0", entry_point="nested_env:InvalidActionsEnv", kwargs={"empty_mask_at": 3}) if "tests/EmptyMaskAt3-v0" not in gym.registry else None
    env = AutoAdapt("tests/EmptyMaskAt3-v0", TABULAR)
    env.reset(seed=0)
    env.step(2)
    env.step(2)
    with pytest.raises(ActionMaskError, match="every action is masked at step 3"):
        env.step(2)


def test_mask_of_the_wrong_shape_is_refused() -> None:
    class BadMask(gym.Env):
        observation_space = spaces.Discrete(2)
        action_space = spaces.Discrete(4)

        def action_masks(self):
            return np.ones(3, bool)

        def reset(self, *, seed=None, options=None):
            return 0, {}

        def step(self, action):
            return 0, 0.0, False, False, {}

    with pytest.raises(ActionMaskError, match=r"shape \(3,\) at step 0, expected \(4,\)"):
        ActionMask(BadMask(), source="action_masks").reset()


def test_mask_false_turns_masks_off_and_mask_true_requires_one() -> None:
    env = AutoAdapt("Taxi-v4", TABULAR, mask=False)
    assert "ActionMask" not in env.plan.wrappers and not env.metadata.get("action_mask")
    assert "ActionMask" in AutoAdapt("Taxi-v4", TABULAR, mask=True).plan.wrappers  # found in the infos
    with pytest.raises(AdaptError, match="exposes no invalid-action mask"):
        AutoAdapt("CartPole-v1", FLAT, mask=True)


def test_agents_without_masks_leave_the_mask_unused() -> None:
    env = AutoAdapt("Taxi-v4", AgentSpec(observations={"index"}, actions={"discrete"}, masks=False))
    assert "ActionMask" not in env.plan.wrappers
    assert "does not use action masks" in str(env.plan)


class _PerDimensionMaskEnv(gym.Env):
    """MultiDiscrete([2, 3]) with ``info["action_mask"]`` as one array per dimension (the form
    ``MultiDiscrete.sample(mask=...)`` takes); the middle choice of the second dimension is never valid."""

    observation_space = spaces.Box(-1, 1, (2,), np.float32)
    action_space = spaces.MultiDiscrete([2, 3])

    def _info(self) -> dict:
        return {"action_mask": (np.array([1, 1], np.int8), np.array([1, 0, 1], np.int8))}

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), self._info()

    def step(self, action):
        assert action[1] != 1, "an invalid action reached the env"
        return np.zeros(2, np.float32), 0.0, bool(self.np_random.random() < 0.2), False, self._info()


def test_per_dimension_masks_become_the_product_mask_and_mask_false_leaves_them_alone() -> None:
    env = AutoAdapt(_PerDimensionMaskEnv(), DQN())
    _, info = env.reset(seed=0)
    assert info["action_mask"].tolist() == [True, False, True, True, False, True]
    agent = DQN(seed=0, learning_starts=32)
    agent.learn(AutoAdapt(_PerDimensionMaskEnv(), agent), 300, progress=False, run_dir=False)  # the env asserts validity
    unmasked = AutoAdapt(_PerDimensionMaskEnv(), DQN(), mask=False)
    _, info = unmasked.reset(seed=0)
    assert isinstance(info["action_mask"], tuple)  # the raw mask, not used and not converted
