"""Tabular Q-learning (Watkins 1989) for discrete-index observations.

The table is a ``[n_states, n_actions]`` tensor; there is no network and no replay. It uses the
same loop as every agent: vectorized collection, and after each vector step one batched update
of the visited ``(state, action)`` entries::

    Q[s, a] += lr * (r + gamma * max_{a' valid in s'} Q[s', a'] - Q[s, a])

with the bootstrap term dropped on termination (kept on truncation). An entry visited by several
envs in the same step gets the sum of their updates. Exploration is epsilon-greedy
with a linear schedule; greedy ties are broken at random (a zero-initialised table has many);
invalid-action masks are respected in acting, in exploring and in the max of the target.

Example:
    >>> agent = QLearning(seed=0)
    >>> env = AutoAdapt("FrozenLake-v1", agent, env_kwargs={"is_slippery": False})  # doctest: +SKIP
    >>> agent.learn(env, steps=20_000).evaluate(env, episodes=100).mean                # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces
from tensordict import TensorDictBase

from rladapt.agents.masks import bootstrap_mask, valid_or_all
from rladapt.agents.off_policy import EpsilonGreedyAgent, OffPolicyConfig
from rladapt.spec import AgentSpec
from rladapt.types import ActionValues
from rladapt.agents.tuning import GAMMAS, SearchBudget

if TYPE_CHECKING:
    import optuna


def qlearning_search_space(trial: optuna.Trial, budget: SearchBudget) -> dict[str, Any]:
    """Tabular Q-learning's search space."""
    return {
        "lr": trial.suggest_float("lr", 0.01, 1.0, log=True),
        "anneal_lr": trial.suggest_categorical("anneal_lr", (False, True)),
        "gamma": trial.suggest_categorical("gamma", GAMMAS),
        "exploration_fraction": trial.suggest_float("exploration_fraction", 0.05, 0.9),
        "exploration_final_eps": trial.suggest_float("exploration_final_eps", 0.0, 0.2),
    }


@dataclass
class QLearningConfig(OffPolicyConfig):
    """Q-learning settings (the schedule settings of :class:`OffPolicyConfig` default to: 8 envs,
    no learning delay, an update after every vector step).

    :param num_threads: torch CPU threads (1: a table lookup is far too small for a thread pool).
    :param lr: step size of the table update (constant, or annealed with ``anneal_lr``).
    :param anneal_lr: anneal ``lr`` linearly to ``final_lr`` over each ``learn`` call (stochastic
        envs need a falling step size for the table to settle).
    :param final_lr: the step size at the end of the annealing.
    :param gamma: discount factor.
    :param initial_q: initial value of every table entry (optimistic values explore).
    :param exploration_initial_eps: epsilon at the start of each learn call.
    :param exploration_final_eps: epsilon after the schedule.
    :param exploration_fraction: fraction of the learn call over which epsilon falls linearly.
    """

    num_threads: int | None = 1
    lr: float = 0.1
    anneal_lr: bool = False
    final_lr: float = 0.01
    gamma: float = 0.99
    initial_q: float = 0.0
    exploration_initial_eps: float = 1.0
    exploration_final_eps: float = 0.05
    exploration_fraction: float = 0.5


class QLearning(EpsilonGreedyAgent):
    """Tabular Q-learning with epsilon-greedy exploration and invalid-action masks.

    Accepts ``Discrete`` observations (AutoAdapt flattens tuples of discrete spaces, and bins
    bounded boxes with ``observation_bins=``) and ``Discrete`` actions. Settings are keyword
    arguments (:class:`QLearningConfig`).
    """

    spec: ClassVar[AgentSpec] = AgentSpec(observations=frozenset({"index"}), actions=frozenset({"discrete"}), masks=True)
    Config: ClassVar[type[QLearningConfig]] = QLearningConfig
    search_space = staticmethod(qlearning_search_space)

    def default_settings(self, observation_kind: str, action_kind: str) -> dict[str, Any]:
        return dict(num_envs=8, learning_starts=0, train_freq=1, gradient_steps=1)

    def build(self) -> None:
        if not isinstance(self.observation_space, spaces.Discrete) or not isinstance(self.action_space, spaces.Discrete):
            raise TypeError(
                f"QLearning needs Discrete observations and actions, got {self.observation_space} and "
                f"{self.action_space}; adapt the env with AutoAdapt(env, agent)"
            )
        n_states, n_actions = int(self.observation_space.n), int(self.action_space.n)
        self.register_buffer("q", torch.full((n_states, n_actions), float(self.hp.initial_q), device=self.device))
        self._td_errors: list[torch.Tensor] = []

    def _state(self, obs: torch.Tensor) -> torch.Tensor:
        return obs.long().reshape(-1) - int(self.observation_space.start)

    def act_batch(self, td: TensorDictBase, deterministic: bool = False) -> TensorDictBase:
        q = self.q[self._state(td.get("observation"))]
        mask = td.get("action_mask", None)
        # Greedy with random tie-breaking: a random score among the valid actions of maximal value.
        valid = valid_or_all(mask, q)
        best = valid & (q == q.masked_fill(~valid, -torch.inf).max(-1, keepdim=True).values)
        scores = torch.rand(q.shape, generator=self.generator, device=q.device)
        action = scores.masked_fill(~best, -1.0).argmax(-1)
        if not deterministic:  # the same scores pick the random action
            action = self.epsilon_greedy(action, scores, mask)
        td.set("action", action)
        return td

    def action_values(self, obs: Any, mask: np.ndarray | None = None) -> ActionValues:
        """The table's Q-values of every action in state ``obs`` (the terminal view of ``play``)."""
        return ActionValues(self.q[int(obs) - int(self.observation_space.start)].cpu().numpy().copy(), "q")

    def store(self, storage: None, batch: TensorDictBase) -> None:
        """Update the table from the batch's valid transitions, step by step (no replay: learn
        and forget)."""
        for t in range(batch.shape[0]):
            self._learn_step(batch[t])

    def _learn_step(self, step: TensorDictBase) -> None:
        hp = self.hp
        valid = step.get("valid")
        s = self._state(step.get("observation"))[valid]
        a = step.get("action").long()[valid]
        r = step.get(("next", "reward"))[valid]
        s2 = self._state(step.get(("next", "observation")))[valid]
        terminated = step.get(("next", "terminated"))[valid]
        q_next = self.q[s2]
        next_mask = step.get(("next", "action_mask"), None)
        if next_mask is not None:  # max over the valid next actions (a row with none: no bootstrap needed)
            q_next = q_next.masked_fill(~bootstrap_mask(next_mask[valid]), -torch.inf)
        target = r + hp.gamma * q_next.max(-1).values * (~terminated)
        target = torch.where(terminated, r, target)  # no 0 * -inf
        td_error = target - self.q[s, a]
        lr = hp.lr + (hp.final_lr - hp.lr) * self.progress if hp.anneal_lr else hp.lr
        self.q.index_put_((s, a), lr * td_error, accumulate=True)
        self._td_errors.append(td_error.abs().mean() if td_error.numel() else td_error.new_zeros(()))

    def update(self, storage: None, progress: float) -> dict[str, float]:
        """The table is updated as steps are stored; this reports the metrics."""
        errors, self._td_errors = self._td_errors, []
        metrics = {"train/epsilon": self.epsilon}
        if errors:
            metrics["train/td_error"] = torch.stack(errors).mean().item()
        return metrics

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {}
