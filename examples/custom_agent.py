"""A custom agent from scratch, public Agent API only: tabular Expected SARSA on CliffWalking. AutoAdapt,
the loop, run directory, evaluate, save/load and the terminal view come from Agent."""

import os
from dataclasses import dataclass

import torch

from rladapt import AgentSpec, AutoAdapt
from rladapt.agents import Agent, AgentConfig
from rladapt.agents.base import ActionValues


@dataclass
class ExpectedSarsaConfig(AgentConfig):
    lr: float = 0.5  # step size of the tabular update
    gamma: float = 0.99  # discount factor
    epsilon: float = 0.1  # exploration of the epsilon-greedy policy


class ExpectedSarsa(Agent):
    spec = AgentSpec(observations={"index"}, actions={"discrete"})  # Discrete states
    Config = ExpectedSarsaConfig

    def build(self) -> None:  # a buffer is saved and loaded with the agent
        self.register_buffer("q", torch.zeros(self.observation_space.n, self.action_space.n))

    def policy(self, states: torch.Tensor) -> torch.Tensor:  # epsilon-greedy probabilities [B, actions]
        n = self.q.shape[1]
        probs = torch.full((len(states), n), self.hp.epsilon / n)
        probs[torch.arange(len(states)), self.q[states].argmax(-1)] += 1 - self.hp.epsilon
        return probs

    def act_batch(self, td, deterministic=False):  # TensorDict in, "action" written (TorchRL key names)
        states = td["observation"]
        greedy = self.q[states].argmax(-1)
        td["action"] = greedy if deterministic else torch.multinomial(self.policy(states), 1, generator=self.generator)[:, 0]
        return td

    def train_iteration(self, collector, progress):  # one vector step, then one update per transition
        step = collector.step(self.act_batch)
        valid = step["valid"]  # gymnasium's autoreset step is not a transition
        s, a, r = step["observation"][valid], step["action"][valid], step["next", "reward"][valid]
        s2, terminated = step["next", "observation"][valid], step["next", "terminated"][valid]
        target = r + self.hp.gamma * (self.policy(s2) * self.q[s2]).sum(-1) * ~terminated  # E[Q(s', a')]
        td_error = target - self.q[s, a]
        self.q[s, a] += self.hp.lr * td_error
        return {"train/td_error": td_error.abs().mean().item() if len(td_error) else 0.0}

    def action_values(self, obs, mask=None):  # the terminal view shows Q(s, a) of every action
        return ActionValues(self.q[int(obs)].numpy().copy(), "q")


if __name__ == "__main__":
    steps = int(os.environ.get("RLADAPT_EXAMPLE_STEPS", 30_000))
    agent = ExpectedSarsa(seed=0)
    env = AutoAdapt("CliffWalking-v1", agent, env_kwargs={"max_episode_steps": 200})  # no time limit otherwise
    agent.learn(env, steps, progress=False)
    print(f"Expected SARSA, CliffWalking, {steps:,} steps: greedy return {agent.evaluate(env, episodes=1).mean:.0f}")
    agent.play(env, max_steps=3)  # the terminal view: the board, Q(s, a), the chosen action
