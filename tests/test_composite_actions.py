"""Composite (Dict/Tuple) action spaces: one head per leaf for PPO/A2C, per-leaf masks, the flat
Discrete for DQN, one Box for SAC, and the hybrid example env (rladapt/HybridReach-v0)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env
from torch.distributions import Categorical, Independent, Normal

import rladapt.envs  # noqa: F401  (registers the example envs)
from rladapt import AdaptError, AutoAdapt, load
from rladapt.agents import A2C, DQN, PPO, SAC, QLearning, RandomAgent
from rladapt.agents.masks import MASKED_LOGIT, random_actions
from rladapt.agents.nets import CompositeHead
from rladapt.spaces import action_at, env_action, flatten_mask, mask_size, stored_action
from rladapt.wrappers import FlattenCompositeAction

HYBRID, REACH = "rladapt/HybridReach-v0", "rladapt/Reach-v0"

#: Every leaf kind, nested: keys sort to buttons, grid, move; move is (Discrete(3), Box(2)).
NESTED = spaces.Dict({
    "move": spaces.Tuple((spaces.Discrete(3, start=1), spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32))),
    "buttons": spaces.MultiBinary(2),
    "grid": spaces.MultiDiscrete([2, 3]),
})


def _wrapper(env: gym.Env, kind: type) -> gym.Wrapper:
    while not isinstance(env, kind):
        env = env.env
    return env


# ------------------------------------------------------------------------ the flat layout


def test_nested_space_is_stored_flat_in_leaf_order_and_becomes_nested_env_actions() -> None:
    assert stored_action(NESTED) == ((7,), np.dtype(np.float32))  # buttons 2 + grid 2 + move 1 + 2 columns
    assert stored_action(spaces.Tuple((spaces.Discrete(2), spaces.MultiDiscrete([3, 3])))) == ((3,), np.dtype(np.int64))
    assert mask_size(NESTED) == 4 + 5 + 3  # buttons 2x2, grid 2+3, move's Discrete 3; the Box has none
    # columns: buttons 0-1, grid 2-3, move[0] 4, move[1] 5-6
    stored = np.array([[1, 0, 1, 2, 2, 0.5, -3.0], [0, 1, 0, 0, 0, 0.0, 0.25]], dtype=np.float32)
    batch = env_action(NESTED, stored)
    first, second = action_at(NESTED, batch, 0), action_at(NESTED, batch, 1)
    assert NESTED.contains(first) and NESTED.contains(second)
    assert first["buttons"].tolist() == [1, 0] and first["grid"].tolist() == [1, 2]
    assert first["move"][0] == 3  # index 2 + start 1
    assert first["move"][1].tolist() == [0.5, -1.0]  # clipped to the Box
    assert second["move"][0] == 1 and second["move"][1].tolist() == [0.0, 0.25]


def test_random_actions_in_the_flat_layout_keep_within_each_leaf_and_its_mask() -> None:
    mask = torch.ones(200, mask_size(NESTED), dtype=torch.bool)
    mask[:, 9:12] = torch.tensor([False, False, True])  # move[0]: only index 2
    actions = random_actions(NESTED, 200, torch.Generator().manual_seed(0), mask)
    assert actions.shape == (200, 7) and actions.dtype == torch.float32
    batch = env_action(NESTED, actions.numpy())
    assert all(NESTED.contains(action_at(NESTED, batch, i)) for i in range(200))
    assert (actions[:, 4] == 2).all() and set(actions[:, 3].tolist()) == {0.0, 1.0, 2.0}


def test_nested_masks_flatten_per_discrete_leaf_missing_leaves_all_valid_and_invalid_indices() -> None:
    mask = flatten_mask(NESTED, {"grid": np.array([True, False, False, True, True]),
                                 "move": (np.array([False, True, True]), None)})
    assert mask.tolist() == [True] * 4 + [True, False, False, True, True] + [False, True, True]
    invalid = flatten_mask(NESTED, {"move": ([0, 2], None)}, invalid_indices=True)
    assert invalid.tolist() == [True] * 9 + [False, True, False]
    assert flatten_mask(NESTED, mask.tolist()).tolist() == mask.tolist()  # a flat list stays flat
    with pytest.raises(ValueError, match=r"action\['grid'\]"):
        flatten_mask(NESTED, {"grid": np.ones(4, dtype=bool)})


# ------------------------------------------------------------------ PPO/A2C: one head per leaf


def test_composite_log_prob_and_entropy_equal_the_sum_of_the_leaves_by_torch_distributions() -> None:
    torch.manual_seed(0)
    head = CompositeHead(8, NESTED, log_std_init=-0.5)
    for parameter in head.parameters():  # away from the near-zero initial outputs
        torch.nn.init.normal_(parameter)
    features = torch.randn(16, 8)
    mask = torch.rand(16, mask_size(NESTED)) > 0.3
    for start, size in ((0, 2), (2, 2), (4, 2), (6, 3), (9, 3)):  # keep one valid value in each choice
        mask[:, start] = True
    outputs = head(features)
    action, sampled_log_prob = head.sample(outputs, mask, False, torch.Generator().manual_seed(1))
    log_prob, entropy = head.log_prob_entropy(outputs, action, mask)

    # By hand: the leaves' outputs are [buttons 2x2 | grid 2+3 | move[0] 3 | move[1] mean 2].
    buttons, grid, move_index, mean = outputs.split([4, 5, 3, 2], -1)
    choices = [(buttons[:, 0:2], mask[:, 0:2], action[:, 0]), (buttons[:, 2:4], mask[:, 2:4], action[:, 1]),
               (grid[:, 0:2], mask[:, 4:6], action[:, 2]), (grid[:, 2:5], mask[:, 6:9], action[:, 3]),
               (move_index, mask[:, 9:12], action[:, 4])]
    expected_log_prob, expected_entropy = torch.zeros(16), torch.zeros(16)
    for logits, valid, chosen in choices:
        dist = Categorical(logits=logits.masked_fill(~valid, MASKED_LOGIT))
        assert valid.gather(-1, chosen.long().unsqueeze(-1)).all(), "a masked value was sampled"
        expected_log_prob += dist.log_prob(chosen.long())
        expected_entropy += dist.entropy()
    gaussian = Independent(Normal(mean, head.heads[3].log_std.exp()), 1)
    expected_log_prob += gaussian.log_prob(action[:, 5:7])
    expected_entropy += gaussian.entropy()
    torch.testing.assert_close(log_prob, expected_log_prob)
    torch.testing.assert_close(sampled_log_prob, expected_log_prob)
    torch.testing.assert_close(entropy, expected_entropy)


def test_plan_explains_the_composite_action_check_env_passes_and_ppo_and_a2c_update_on_it() -> None:
    for agent in (PPO(seed=0), A2C(seed=0)):
        env = AutoAdapt(HYBRID, agent)
        text = str(env.plan)
        assert "one head per leaf" in text and "action['direction'] Discrete(4)" in text
        assert "stored flat as float32[2]" in text and "per-leaf masks" in text
        assert env.action_space == gym.make(HYBRID).action_space  # kept as it is
        check_env(env, skip_render_check=True)
        agent.learn(env, steps=512, progress=False)  # the update evaluates the stored composite actions
        assert agent.num_updates > 0


@pytest.mark.parametrize("convention", ["action_masks", "info"])
def test_per_leaf_masks_are_respected_in_collection_and_in_act(convention: str) -> None:
    agent = PPO(seed=0, n_steps=16, num_envs=4)
    env = AutoAdapt(HYBRID, agent, mask=convention)
    assert env.plan.step("action_mask").params == {"source": convention}
    agent.learn(env, steps=1024, progress=False)
    data = agent.rollout.data
    masks, directions = data.get("action_mask"), data.get("action")[..., 0].long()
    assert (~masks).any(), "the corners of the square mask two directions: the test must see masks"
    assert masks.gather(-1, directions.unsqueeze(-1)).all(), "a masked direction was chosen"
    obs, _ = env.reset(seed=0)
    only_down = {"direction": np.array([False, False, False, True])}  # nested like the action space
    for _ in range(20):
        assert agent.act(obs, only_down, deterministic=False)["direction"] == 3
    random_agent = RandomAgent(seed=0)
    random_agent.setup(env.observation_space, env.action_space)
    for _ in range(20):
        assert random_agent.act(obs, flatten_mask(env.action_space, only_down))["direction"] == 3


class _MaskInObservation(gym.Wrapper):
    """HybridReach with its mask in the observation, nested like the action space (PettingZoo's convention)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.observation_space = spaces.Dict({"observation": env.observation_space,
                                              "action_mask": spaces.Dict({"direction": spaces.MultiBinary(4)})})

    def _with_mask(self, obs: np.ndarray) -> dict:
        return {"observation": obs, "action_mask": {"direction": self.env.unwrapped.action_masks()["direction"].astype(np.int8)}}

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        return self._with_mask(obs), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._with_mask(obs), reward, terminated, truncated, info


class _InvalidDirections(gym.Wrapper):
    """HybridReach with ``get_invalid_actions()`` (SRL's convention), nested like the action space."""

    def get_invalid_actions(self) -> dict:
        return {"direction": np.flatnonzero(~self.env.unwrapped.action_masks()["direction"]).tolist()}


@pytest.mark.parametrize("convention", ["info", "action_masks", "observation", "invalid_actions"])
def test_every_mask_convention_gives_the_per_leaf_mask(convention: str) -> None:
    base = gym.make(HYBRID)
    if convention == "observation":
        base = _MaskInObservation(base)
    elif convention == "invalid_actions":
        base = _InvalidDirections(base)
    env = AutoAdapt(base, PPO(), mask=convention)
    assert env.observation_space == spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)  # the mask left the observation
    obs, info = env.reset(seed=1)
    for step in range(12):
        assert info["action_mask"].tolist() == env.unwrapped.action_masks()["direction"].tolist(), step
        obs, _, terminated, truncated, info = env.step({"direction": step % 4, "strength": np.array([0.7], np.float32)})
        if terminated or truncated:
            obs, info = env.reset()


class _NestedTupleActions(gym.ActionWrapper, gym.utils.RecordConstructorArgs):
    """HybridReach's action as a nested Tuple, ``(direction, (strength,))``, its mask nested alike."""

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ActionWrapper.__init__(self, env)
        self.action_space = spaces.Tuple((spaces.Discrete(4), spaces.Tuple((spaces.Box(0.0, 1.0, (1,), np.float32),))))

    def action(self, action: tuple) -> dict:
        return {"direction": int(action[0]), "strength": action[1][0]}

    def action_masks(self) -> tuple:
        return (self.env.unwrapped.action_masks()["direction"], None)  # the Box leaf: no mask


def test_a_nested_tuple_action_space_trains_with_ppo_masked_and_flattens_for_dqn() -> None:
    agent = PPO(seed=0, n_steps=16, num_envs=2)
    env = AutoAdapt(_NestedTupleActions(gym.make(HYBRID)), agent)
    assert "action[1][0] float32[1]" in str(env.plan)
    check_env(env, skip_render_check=True)
    agent.learn(env, steps=640, progress=False)
    data = agent.rollout.data
    assert data.get("action_mask").gather(-1, data.get("action")[..., :1].long()).all()
    obs, info = env.reset(seed=0)
    action = agent.act(obs, info["action_mask"])
    assert env.action_space.contains(action) and isinstance(action[0], int)
    flat = AutoAdapt(_NestedTupleActions(gym.make(HYBRID)), DQN())
    assert flat.action_space == spaces.Discrete(28)
    check_env(flat, skip_render_check=True)


def test_ppo_solves_hybrid_reach() -> None:
    # Random play returns about -0.1, the best about 1.66 (two strides from a corner); with
    # the classic-control defaults, seeds 0-2 return 1.56-1.60 at 40k steps (~10 s CPU).
    agent = PPO(seed=0)
    env = AutoAdapt(HYBRID, agent)
    agent.learn(env, steps=40_000, progress=False)
    result = agent.evaluate(env, episodes=50)
    assert result.mean >= 1.5, result
    assert result.lengths.mean() <= 3.5, result


def test_workers_two_on_hybrid_reach_then_a_checkpoint_acts_the_same(tmp_path) -> None:
    agent = PPO(seed=0, num_envs=4)
    env = AutoAdapt(HYBRID, agent)
    agent.learn(env, steps=2048, workers=2, progress=False)
    assert agent.num_timesteps >= 2048
    data = agent.rollout.data
    assert data.get("action_mask").gather(-1, data.get("action")[..., :1].long()).all()
    restored = load(agent.save(tmp_path / "hybrid.pt"))
    obs, info = env.reset(seed=5)
    for _ in range(5):
        ours, theirs = agent.act(obs, info["action_mask"]), restored.act(obs, info["action_mask"])
        assert ours["direction"] == theirs["direction"] and np.array_equal(ours["strength"], theirs["strength"])
        obs, _, terminated, truncated, info = env.step(ours)
        if terminated or truncated:
            obs, info = env.reset()


# --------------------------------------------------------------- DQN: one flat Discrete


def test_dqn_flattening_round_trip_every_index_is_a_distinct_valid_composite_action() -> None:
    env = AutoAdapt(HYBRID, DQN(seed=0))
    assert env.plan.rules[-1] == "flatten_composite_action"
    assert env.action_space == spaces.Discrete(4 * 7)
    flat = _wrapper(env.env, FlattenCompositeAction)
    inner = flat.env.action_space
    seen = set()
    for index in range(flat.action_space.n):
        action = flat.action(index)
        assert inner.contains(action)
        assert flat.index(action) == index
        seen.add((int(action["direction"]), float(action["strength"][0])))
    assert len(seen) == 28
    # The per-leaf mask becomes the product mask: a masked direction masks its 7 strengths.
    _, info = env.reset(seed=0)
    direction_mask = env.unwrapped.action_masks()["direction"]
    assert info["action_mask"].tolist() == np.repeat(direction_mask, 7).tolist()
    check_env(env, skip_render_check=True)
    check_env(AutoAdapt(HYBRID, DQN(), mask=False), skip_render_check=True)  # the env's raw mask passes untouched
    agent = DQN(seed=0, learning_starts=100)
    agent.learn(AutoAdapt(HYBRID, agent), steps=300, progress=False)
    tabular = QLearning(seed=0)  # the same flattening, over binned observations
    env = AutoAdapt(HYBRID, tabular, observation_bins=4)
    assert env.plan.rules[-1] == "flatten_composite_action" and env.action_space == spaces.Discrete(28)
    tabular.learn(env, steps=300, progress=False)


def test_dqn_flattening_too_large_raises_with_the_sizes_and_a_fix() -> None:
    with pytest.raises(AdaptError, match=r"direction'\] 4 x action\['strength'\] 7 bins = 28 discrete actions") as error:
        AutoAdapt(HYBRID, DQN(), max_discrete_actions=20)
    assert "max_discrete_actions=20" in str(error.value) and "fewer action_bins" in str(error.value)
    assert "A2C" in str(error.value) and "PPO" in str(error.value)
    assert AutoAdapt(HYBRID, DQN(), max_discrete_actions=20, action_bins=5).action_space == spaces.Discrete(20)
    with pytest.raises(AdaptError, match="max_discrete_actions must be a positive integer"):
        AutoAdapt(HYBRID, DQN(), max_discrete_actions=0)


# ------------------------------------------------------------ SAC: continuous leaves only


def test_sac_refuses_a_discrete_leaf_naming_it() -> None:
    with pytest.raises(AdaptError, match=r"action\['direction'\]: Discrete\(4\) is a discrete leaf") as error:
        AutoAdapt(HYBRID, SAC())
    assert "A2C" in str(error.value) and "PPO" in str(error.value)


def test_sac_takes_a_dict_of_boxes_as_one_box() -> None:
    agent = SAC(seed=0, learning_starts=64, batch_size=32)
    env = AutoAdapt(REACH, agent)
    assert env.plan.rules[-2:] == ["flatten_box_action", "unit_box_action"]
    assert env.action_space == spaces.Box(-1.0, 1.0, shape=(3,), dtype=np.float32)
    check_env(env, skip_render_check=True)
    agent.learn(env, steps=200, progress=False)
    assert np.isfinite(agent.evaluate(env, episodes=2).mean)
