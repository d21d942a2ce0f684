"""A custom agent from scratch, public API only: tabular Expected SARSA (van Seijen et al. 2009).

AutoAdapt, the loop, masks, worker processes, torchrun ranks, the run directory, evaluate,
save/load and the terminal view all come from ``Agent``; the agent is the 35 lines below.
``rladapt.load`` finds the class again in any process that imports this module.
"""

import os
from dataclasses import dataclass

import torch

from rladapt import AgentSpec, AutoAdapt
from rladapt.agents import ActionValues, Agent, AgentConfig
from rladapt.agents.masks import epsilon_greedy, epsilon_greedy_probs, masked_argmax


@dataclass
class ExpectedSarsaConfig(AgentConfig):
    lr: float = 0.5  # step size of the tabular update
    gamma: float = 0.99  # discount factor
    epsilon: float = 0.1  # exploration of the epsilon-greedy policy


class ExpectedSarsa(Agent):
    """Tabular Expected SARSA: the target averages Q(s', .) over the epsilon-greedy policy."""

    spec = AgentSpec(observations={"index"}, actions={"discrete"}, masks=True)  # Discrete states, masks used
    Config = ExpectedSarsaConfig

    def build(self) -> None:  # a buffer is saved, loaded and sent to worker processes with the agent
        self.register_buffer("q", torch.zeros(self.observation_space.n, self.action_space.n))

    def act_batch(self, td, deterministic=False):  # TensorDict in, "action" written (TorchRL key names)
        q, mask = self.q[td["observation"]], td.get("action_mask", None)
        td["action"] = masked_argmax(q, mask) if deterministic else epsilon_greedy(q, mask, self.hp.epsilon, self.generator)
        return td

    def update(self, batch, progress):  # every collected vector step, a [1, num_envs] batch
        step = batch[0][batch[0]["valid"]]  # gymnasium's autoreset step is not a transition
        s, a, r, s2 = step["observation"], step["action"], step["next", "reward"], step["next", "observation"]
        probs = epsilon_greedy_probs(self.q[s2], step.get(("next", "action_mask"), None), self.hp.epsilon)
        target = r + self.hp.gamma * (probs * self.q[s2]).sum(-1) * ~step["next", "terminated"]  # E[Q(s', a')]
        td_error = target - self.q[s, a]
        self.q.index_put_((s, a), self.hp.lr * td_error, accumulate=True)
        return {"train/td_error": td_error.abs().mean().item() if len(td_error) else 0.0}

    def action_values(self, obs, mask=None):  # the terminal view shows Q(s, a) of every action
        return ActionValues(self.q[int(obs)].numpy().copy(), "q")


if __name__ == "__main__":
    steps = int(os.environ.get("RLADAPT_EXAMPLE_STEPS", 30_000))
    agent = ExpectedSarsa(seed=0)
    env = AutoAdapt("CliffWalking-v1", agent, env_kwargs={"max_episode_steps": 200})  # no time limit otherwise
    agent.learn(env, steps, workers=2, progress=False)  # 8 envs in 2 worker processes
    print(f"Expected SARSA, CliffWalking, {steps:,} steps: greedy return {agent.evaluate(env, episodes=1).mean:.0f}")
    agent.play(env, max_steps=3)  # the terminal view: the board, Q(s, a), the chosen action
