"""A custom on-policy agent, public API only: REINFORCE with a learned baseline (Williams 1992).

The on-policy family collects rollouts with the current weights and computes the returns (GAE with
lambda 1: Monte-Carlo returns, bootstrapped from V where a rollout cuts an episode); the agent
brings its two networks and its loss, 35 lines. Masks, workers, logging and checkpoints come free.
"""

import os
from dataclasses import dataclass

import torch
from torch import nn

from rladapt import AgentSpec, AutoAdapt
from rladapt.agents import OnPolicyAgent, OnPolicyConfig
from rladapt.agents.masks import masked_log_probs, masked_sample


@dataclass
class ReinforceConfig(OnPolicyConfig):
    lr: float = 1e-3  # Adam learning rate of both networks
    hidden: int = 64  # hidden units of the policy and the baseline


class Reinforce(OnPolicyAgent):
    """REINFORCE: raise log pi(a|s) in proportion to the return minus the learned baseline V(s)."""

    spec = AgentSpec(observations={"vector"}, actions={"discrete"}, masks=True)
    Config = ReinforceConfig

    def default_settings(self, observation_kind, action_kind):  # settings left at None
        return dict(num_envs=8, n_steps=128, gamma=0.99, gae_lambda=1.0, normalize_observations=False, normalize_rewards=False)

    def build(self) -> None:
        super().build()
        n, h = self.observation_space.shape[0], self.hp.hidden
        self.pi = nn.Sequential(nn.Linear(n, h), nn.Tanh(), nn.Linear(h, self.action_space.n))
        self.v = nn.Sequential(nn.Linear(n, h), nn.Tanh(), nn.Linear(h, 1))
        self.optimizer = torch.optim.Adam(self.parameters(), lr=self.hp.lr)

    def value(self, observation):  # the baseline V(s), also the bootstrap where a rollout cuts an episode
        return self.v(observation).squeeze(-1)

    def act_batch(self, td, deterministic=False):  # writes what the rollout stores: action, log_prob, value
        obs, mask = td["observation"], td.get("action_mask", None)
        td["action"], td["log_prob"] = masked_sample(self.pi(obs), mask, deterministic, self.generator)
        td["value"] = self.value(obs)
        return td

    def update(self, rollout, progress):
        b = rollout.transitions(["observation", "action", "value_target"] + (["action_mask"] if self.use_masks else []))
        log_prob = masked_log_probs(self.pi(b["observation"]), b.get("action_mask", None)).gather(-1, b["action"][:, None])[:, 0]
        value, returns = self.value(b["observation"]), b["value_target"]  # the Monte-Carlo returns
        loss = -(log_prob * (returns - value.detach())).mean() + 0.5 * (value - returns).pow(2).mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return {"train/loss": loss.item()}


if __name__ == "__main__":
    steps = int(os.environ.get("RLADAPT_EXAMPLE_STEPS", 100_000))
    agent = Reinforce(seed=0)
    env = AutoAdapt("CartPole-v1", agent)
    agent.learn(env, steps, progress=False)
    print(f"REINFORCE with a baseline, CartPole-v1, {steps:,} steps: mean return {agent.evaluate(env, episodes=10).mean:.1f}")
