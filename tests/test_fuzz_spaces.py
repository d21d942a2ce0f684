"""Property-based tests (hypothesis): random nested gymnasium spaces through AutoAdapt for every
registered agent.

The property: ``AutoAdapt(env, agent)`` either gives an adapted env that passes gymnasium's
``check_env``, steps 100 times with random (masked) actions whose observations stay in its space,
and on which the agent acts; or it raises an :class:`~rladapt.errors.AdaptError` that says why.
Never another exception. The env checks every action it receives against its own action space, so
a wrapper that hands the env an invalid action fails the property too.

The default suite runs a small derandomized sample (reproducible in CI); ``-m slow`` runs many more.
"""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rladapt import AdaptError, AutoAdapt
from rladapt.registry import agent_names, get_agent
from rladapt.search.game import GameError
from rladapt.spec import bind_agent

AGENTS = agent_names()
FLOAT_DTYPES = (np.float32, np.float64)
INT_DTYPES = (np.int64, np.uint8)


@st.composite
def boxes(draw: st.DrawFn) -> gym.spaces.Box:
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=0, max_size=3)))
    dtype = draw(st.sampled_from(FLOAT_DTYPES + INT_DTYPES))
    if dtype == np.uint8:
        low = draw(st.integers(0, 10))
        return gym.spaces.Box(low, low + draw(st.integers(1, 245)), shape, dtype)
    if dtype == np.int64:
        low = draw(st.integers(-5, 5))
        return gym.spaces.Box(low, low + draw(st.integers(1, 10)), shape, dtype)
    low = draw(st.sampled_from([-np.inf, -10.0, -1.0, 0.0]))
    high = draw(st.sampled_from([1.0, 10.0, np.inf]))
    return gym.spaces.Box(low, high, shape, dtype)


@st.composite
def leaves(draw: st.DrawFn) -> gym.Space:
    kind = draw(st.sampled_from(["box", "discrete", "multidiscrete", "multibinary"]))
    if kind == "box":
        return draw(boxes())
    if kind == "discrete":
        return gym.spaces.Discrete(draw(st.integers(1, 6)), start=draw(st.integers(-3, 3)))
    if kind == "multidiscrete":
        nvec = draw(st.lists(st.integers(1, 5), min_size=1, max_size=3))
        start = draw(st.one_of(st.none(), st.lists(st.integers(-2, 2), min_size=len(nvec), max_size=len(nvec))))
        return gym.spaces.MultiDiscrete(nvec, start=start)
    return gym.spaces.MultiBinary(draw(st.integers(1, 5)))


def nested(depth: int = 2) -> st.SearchStrategy[gym.Space]:
    """A leaf, or a Dict/Tuple of up to three spaces nested up to ``depth`` levels."""
    if depth == 0:
        return leaves()
    inner = nested(depth - 1)
    return st.one_of(
        leaves(),
        st.dictionaries(st.sampled_from(["a", "b", "vel", "pos"]), inner, min_size=1, max_size=3).map(gym.spaces.Dict),
        st.lists(inner, min_size=1, max_size=3).map(lambda spaces: gym.spaces.Tuple(tuple(spaces))),
    )


class SampledSpacesEnv(gym.Env):
    """An env whose observations are samples of its space (seeded by reset) and which refuses any
    action outside its action space; episodes last 5 steps."""

    metadata = {"render_modes": []}

    def __init__(self, observation_space: gym.Space, action_space: gym.Space) -> None:
        self.observation_space, self.action_space = observation_space, action_space
        self.steps = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.observation_space.seed(int(self.np_random.integers(2**31)))
        self.steps = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"the env got an action outside its action space {self.action_space}: {action!r}")
        self.steps += 1
        return self.observation_space.sample(), float(self.np_random.normal()), self.steps >= 5, False, {}


def random_action(env: gym.Env, info: dict, rng: np.random.Generator):
    """A random action of the adapted env, a legal one when it hands out a mask."""
    mask = info.get("action_mask")
    if mask is not None and isinstance(env.action_space, gym.spaces.Discrete):
        legal = np.flatnonzero(mask)
        assert len(legal) > 0, "an adapted env handed out a mask with no legal action"
        return int(env.action_space.start + rng.choice(legal))
    env.action_space.seed(int(rng.integers(2**31)))
    return env.action_space.sample()


def adapts_or_refuses(agent_name: str, observation_space: gym.Space, action_space: gym.Space) -> None:
    """The property of the module docstring, for one agent and one pair of spaces."""
    agent = get_agent(agent_name)(seed=0)
    try:
        env = AutoAdapt(SampledSpacesEnv(observation_space, action_space), agent)
    except AdaptError as error:
        assert str(error), "an AdaptError must say why"
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # check_env's advice (e.g. on unbounded Boxes) is not the property
        check_env(env, skip_render_check=True)
    rng = np.random.default_rng(0)
    obs, info = env.reset(seed=0)
    for _ in range(100):
        assert env.observation_space.contains(obs), f"observation outside the adapted space {env.observation_space}"
        obs, _, terminated, truncated, info = env.step(random_action(env, info, rng))
        if terminated or truncated:
            obs, info = env.reset()
    try:
        bind_agent(agent, env.observation_space, env.action_space, env.family, env=env)
    except GameError as error:  # AlphaZero on a single-player env: refused at binding, naming MuZero/MCTS
        assert "single-player" in str(error)
        return
    # The latest observation: search agents act on single-player envs from the state behind it.
    mask = info.get("action_mask") if agent.spec.masks else None
    out = agent.act(obs, mask, deterministic=False)
    action = out[0] if agent.state_specs() else out
    assert env.action_space.contains(action), f"{agent_name} acted outside the adapted action space: {action!r}"


FUZZ_SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.mark.parametrize("agent_name", AGENTS)
@settings(max_examples=6, derandomize=True, **FUZZ_SETTINGS)
@given(observation_space=nested(), action_space=nested())
def test_random_nested_spaces_adapt_or_give_an_adapt_error(agent_name, observation_space, action_space):
    adapts_or_refuses(agent_name, observation_space, action_space)


@pytest.mark.parametrize("agent_name", AGENTS)
@settings(max_examples=6, derandomize=True, **FUZZ_SETTINGS)
@given(observation_space=nested(), action_space=leaves())
def test_random_observations_with_a_plain_action_space_adapt_or_give_an_adapt_error(agent_name, observation_space,
                                                                                   action_space):
    adapts_or_refuses(agent_name, observation_space, action_space)


@pytest.mark.slow
@pytest.mark.parametrize("agent_name", AGENTS)
@settings(max_examples=150, **FUZZ_SETTINGS)
@given(observation_space=nested(), action_space=nested())
def test_many_random_nested_spaces_adapt_or_give_an_adapt_error(agent_name, observation_space, action_space):
    adapts_or_refuses(agent_name, observation_space, action_space)
