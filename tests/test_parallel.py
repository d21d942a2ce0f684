"""PettingZoo parallel envs (every agent acts at once) through AutoAdapt, the agent-slot vector env
and the usual loop: parameter-shared learners (IPPO), centralised critics (MAPPO), groups."""

from __future__ import annotations

import copy

import numpy as np
import pytest

pytest.importorskip("pettingzoo")
mpe2 = pytest.importorskip("mpe2")

from mpe2 import simple_adversary_v3, simple_spread_v3  # noqa: E402
from pettingzoo.test import parallel_api_test  # noqa: E402

from rladapt import AdaptError, AutoAdapt  # noqa: E402
from rladapt.agents import DQN, PPO, RandomAgent  # noqa: E402
from rladapt.collect.slots import AgentSlotsVectorEnv  # noqa: E402
from rladapt.collect.vector import VectorCollector  # noqa: E402
from rladapt.spec import bind_agent  # noqa: E402


def test_parallel_api_test_passes_before_and_after_adaptation():
    parallel_api_test(simple_spread_v3.parallel_env(), num_cycles=100)
    adapted = AutoAdapt(simple_spread_v3.parallel_env(), PPO())
    parallel_api_test(adapted, num_cycles=100)
    assert adapted.groups == {"agent": ["agent_0", "agent_1", "agent_2"]}
    assert adapted.plan.rules[0] == "parallel_agents"
    with_state = AutoAdapt(simple_spread_v3.parallel_env(), PPO(), global_state=True, agent_ids=True)
    parallel_api_test(with_state, num_cycles=100)
    space = with_state.observation_space("agent_1")
    assert space["observation"].shape == (18 + 3,) and space["state"].shape == (54,)
    obs, _ = with_state.reset(seed=0)
    np.testing.assert_array_equal(obs["agent_1"]["observation"][-3:], [0, 1, 0])  # its index in the group
    np.testing.assert_allclose(obs["agent_0"]["state"], with_state.env.state())


def test_each_agent_gets_the_single_agent_rules():
    # DQN needs a Discrete action: the continuous MPE actions are discretised per agent.
    env = AutoAdapt(simple_spread_v3.parallel_env(continuous_actions=True), DQN(), action_bins=3)
    assert "DiscretizeAction" in env.plan.wrappers
    assert all(env.action_space(agent).__class__.__name__ == "Discrete" for agent in env.possible_agents)
    parallel_api_test(env, num_cycles=50)


def test_mixed_groups_keep_their_own_spaces():
    env = AutoAdapt(simple_adversary_v3.parallel_env(), PPO())
    assert env.groups == {"adversary": ["adversary_0"], "agent": ["agent_0", "agent_1"]}
    assert env.observation_space("adversary_0").shape == (8,) and env.observation_space("agent_0").shape == (10,)
    with pytest.raises(ValueError, match="policies="):
        PPO(seed=0).learn(env, steps=64, progress=False, run_dir=False)


def test_overrides_that_cannot_apply_to_a_parallel_env_are_refused():
    with pytest.raises(AdaptError, match="frame_skip=2"):
        AutoAdapt(simple_spread_v3.parallel_env(), PPO(), frame_skip=2)
    with pytest.raises(AdaptError, match="opponent="):
        AutoAdapt(simple_spread_v3.parallel_env(), PPO(), opponent="random")


def test_an_id_of_a_parallel_env_is_made_with_its_kwargs():
    env = AutoAdapt("mpe2.simple_spread_v3", PPO(), env_kwargs={"N": 2})
    assert env.possible_agents == ["agent_0", "agent_1"]


def test_agents_leaving_mid_episode_become_dead_slots_that_are_not_transitions():
    kaz = pytest.importorskip("pettingzoo.butterfly.knights_archers_zombies_v11")
    adapted = AutoAdapt(kaz.parallel_env(spawn_delay=5), PPO())
    slots = AgentSlotsVectorEnv([lambda: copy.deepcopy(adapted)])
    assert slots.num_envs == 4
    slots.reset(seed=3)
    rng = np.random.default_rng(0)
    env = slots.envs[0]
    left = None
    for _ in range(3000):
        before = list(env.agents)
        obs, reward, terminated, truncated, _ = slots.step(rng.integers(0, 6, size=4))
        if env.agents and len(env.agents) < len(before):
            left = sorted(set(before) - set(env.agents))[0]
            break
    assert left is not None, "no agent left mid-episode in 3000 random steps"
    index = slots.agents.index(left)
    assert terminated[index]  # its last step is a done
    for _ in range(3):
        if not env.agents:
            break
        obs, reward, terminated, truncated, _ = slots.step(rng.integers(0, 6, size=4))
        assert terminated[index] and reward[index] == 0.0 and not obs[index].any()
    # The collector keeps none of a dead slot's steps: each follows a done, so valid=False.
    collector = VectorCollector(AgentSlotsVectorEnv([lambda: copy.deepcopy(adapted)]))
    agent = PPO(seed=0)
    bind_agent(agent, collector.observation_space, collector.action_space)
    collector.reset(seed=3)
    batch = collector.collect(agent, 400)
    done = batch["next", "terminated"] | batch["next", "truncated"]
    assert not bool((batch["valid"][1:] & done[:-1]).any())


def test_ippo_trains_and_evaluates_per_agent_and_group():
    agent = PPO(seed=0)
    env = AutoAdapt(simple_spread_v3.parallel_env(max_cycles=10), agent)
    agent.learn(env, steps=3_000, num_envs=2, progress=False, run_dir=False)
    result = agent.evaluate(env, episodes=3)
    assert set(result.agent_returns) == {"agent_0", "agent_1", "agent_2"}
    assert set(result.group_returns) == {"agent"}
    np.testing.assert_allclose(result.returns, np.mean([result.agent_returns[a] for a in env.possible_agents], axis=0))
    assert (result.lengths == 10).all()


@pytest.mark.slow
def test_ippo_learns_simple_spread_above_random():
    agent = PPO(seed=0)
    env = AutoAdapt(simple_spread_v3.parallel_env(), agent)
    agent.learn(env, steps=300_000, progress=False, run_dir=False)
    trained = agent.evaluate(env, episodes=50, seed=1000)
    random = RandomAgent(seed=0).evaluate(AutoAdapt(simple_spread_v3.parallel_env(), RandomAgent()), episodes=50, seed=1000)
    assert trained.mean > random.mean + 3.0, (trained, random)


def test_mappo_critic_reads_the_global_state_and_the_actor_only_its_own_observation():
    from rladapt.agents.nets import GlobalStateEncoder
    from tensordict import TensorDict
    import torch

    agent = PPO(seed=0)
    env = AutoAdapt(simple_spread_v3.parallel_env(), agent, global_state=True)
    agent.learn(env, steps=600, num_envs=2, progress=False, run_dir=False)
    assert isinstance(agent.policy.encoder, GlobalStateEncoder)
    obs, _ = env.reset(seed=0)
    one = {k: torch.as_tensor(v).unsqueeze(0) for k, v in obs["agent_0"].items()}
    changed = {**one, "state": one["state"] + 1.0}
    with torch.no_grad():
        a = agent.policy(TensorDict(observation=TensorDict(one, [1]), batch_size=[1]), deterministic=True)
        b = agent.policy(TensorDict(observation=TensorDict(changed, [1]), batch_size=[1]), deterministic=True)
        logits_a = agent.policy.head(agent.policy.features(TensorDict(one, [1]))[0])
        logits_b = agent.policy.head(agent.policy.features(TensorDict(changed, [1]))[0])
    assert not torch.allclose(a["value"], b["value"])
    torch.testing.assert_close(logits_a, logits_b)


def test_learn_groups_trains_one_agent_per_group_on_its_own_slots():
    from rladapt.multiagent import evaluate_groups, learn_groups

    policies = {"adversary": PPO(seed=0), "agent": DQN(seed=1)}
    learn_groups(simple_adversary_v3.parallel_env(max_cycles=10), policies, steps=1_000, num_envs=2, run_dir=False)
    assert policies["adversary"].num_timesteps >= 1_000 and policies["agent"].num_timesteps >= 1_000
    assert policies["adversary"].observation_space.shape == (8,) and policies["agent"].observation_space.shape == (10,)
    result = evaluate_groups(simple_adversary_v3.parallel_env(max_cycles=10), policies, episodes=2)
    assert set(result.group_returns) == {"adversary", "agent"}
    cut = evaluate_groups(simple_adversary_v3.parallel_env(max_cycles=10), policies, episodes=2, max_episode_steps=4)
    assert cut.lengths.tolist() == [4, 4]  # ended before the env's own 10 cycles
    with pytest.raises(ValueError, match="group 'agent', which has no agent"):
        learn_groups(simple_adversary_v3.parallel_env(), {"adversary": PPO()}, steps=100)


def test_a_failing_group_stops_every_group_with_an_error_naming_it():
    from rladapt.multiagent import learn_groups

    broken = PPO(recurrent="lstm", n_steps=32, sequence_length=7)  # 7 does not divide 32: fails at build
    with pytest.raises(RuntimeError, match="group 'adversary' failed: ValueError: .*sequence_length=7"):
        learn_groups(simple_adversary_v3.parallel_env(max_cycles=10), {"adversary": broken, "agent": PPO(seed=0)},
                     steps=500, num_envs=1, run_dir=False, timeout=60)


def test_cli_trains_mappo_on_a_parallel_env_id_and_evaluates_the_run(tmp_path, capsys):
    from rladapt.cli import main

    run_dir = tmp_path / "run"
    code = main(["train", "mpe2.simple_spread_v3", "--agent", "ppo", "--steps", "600", "--num-envs", "2", "--seed", "0",
                 "--set", "global_state=True", "--run-dir", str(run_dir), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0 and "global_state=True" in out and "trained" in out
    assert main(["eval", str(run_dir), "--episodes", "2"]) == 0
    assert "return" in capsys.readouterr().out


@pytest.mark.parametrize("make_agent, continuous", [
    (lambda: PPO(seed=0, recurrent="lstm"), False),
    (lambda: DQN(seed=0), False),
    (lambda: __import__("rladapt.agents", fromlist=["SAC"]).SAC(seed=0, learning_starts=100), True),
], ids=["recurrent-ppo", "dqn", "sac"])
def test_any_single_agent_agent_learns_on_the_agent_slots(make_agent, continuous, tmp_path):
    from rladapt import load

    agent = make_agent()
    env = AutoAdapt(simple_spread_v3.parallel_env(max_cycles=10, continuous_actions=continuous), agent)
    agent.learn(env, 600, num_envs=2, progress=False, run_dir=False)
    assert agent.num_timesteps >= 600
    agent.save(tmp_path / "agent.pt")
    loaded = load(tmp_path / "agent.pt")
    first = agent.evaluate(env, episodes=2, seed=5)
    np.testing.assert_allclose(loaded.evaluate(env, episodes=2, seed=5).returns, first.returns)


def test_worker_processes_collect_whole_copies_of_a_parallel_env():
    agent = PPO(seed=0, n_steps=16)
    env = AutoAdapt(simple_spread_v3.parallel_env(max_cycles=10), agent)
    agent.learn(env, 960, num_envs=2, workers=2, progress=False, run_dir=False)
    assert agent.num_timesteps == 960  # 2 copies x 3 agents x 16 steps x 10 iterations
    assert agent.evaluate(env, episodes=1).agent_returns.keys() == {"agent_0", "agent_1", "agent_2"}


def test_image_observations_of_a_parallel_env_get_the_image_pipeline_per_agent():
    pistonball = pytest.importorskip("pettingzoo.butterfly.pistonball_v6")
    agent = PPO(seed=0, n_steps=8, batch_size=40, n_epochs=1)
    env = AutoAdapt(pistonball.parallel_env(n_pistons=5, continuous=False, max_cycles=10), agent)
    assert {"ResizeObservation", "ChannelFirstObservation"} <= set(env.plan.wrappers)
    agent.learn(env, 80, num_envs=1, progress=False, run_dir=False)
    assert agent.observation_space.shape == (3, 84, 84) and agent.observation_space.dtype == np.uint8
    assert len(agent.evaluate(env, episodes=1).agent_returns) == 5


def test_an_aec_env_turned_parallel_is_adapted_as_a_parallel_env():
    from pettingzoo.utils.conversions import aec_to_parallel

    env = AutoAdapt(aec_to_parallel(simple_spread_v3.env(max_cycles=20)), PPO())
    assert env.plan.rules[0] == "parallel_agents"
    parallel_api_test(env, num_cycles=40)
