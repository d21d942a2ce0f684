"""What a search space (``rladapt tune``) is written with: the run's budget and the shared choices.

Each agent's search space sits next to its per-kind defaults, in its own file, as the class's
``search_space(trial, budget) -> settings`` (a family's shared part in the family's file);
:mod:`rladapt.tune` reads it from the class, so an agent you derive from PPO tunes with PPO's space
unless it defines its own. A space samples with ``trial.suggest_*`` (Optuna's trial; nothing here
imports Optuna) and returns keyword arguments of the agent with JSON-friendly values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

__all__ = ["GAE_LAMBDAS", "GAMMAS", "HIDDEN", "MAX_GRAD_NORMS", "SearchBudget", "SearchSpace", "suggest_hidden"]


@dataclass(frozen=True)
class SearchBudget:
    """What a search space may depend on: the budget of one training run.

    :param steps: env steps of each training run.
    :param num_envs: envs each run steps in parallel (the agent's default for this env).
    """

    steps: int
    num_envs: int

    def rollouts(self, lengths: Sequence[int]) -> tuple[int, ...]:
        """The rollout lengths (steps per env) whose rollout fits in the budget (the shortest
        when none does): a longer one would stretch every run to a whole rollout.

        :param lengths: candidate ``n_steps``, shortest first."""
        fitting = tuple(n for n in lengths if n * self.num_envs <= self.steps)
        return fitting or tuple(lengths[:1])

    def warmups(self, steps: Sequence[int]) -> tuple[int, ...]:
        """The ``learning_starts`` values that leave at least half the budget to learning (the
        smallest when none does).

        :param steps: candidate ``learning_starts``, smallest first."""
        fitting = tuple(n for n in steps if n <= self.steps // 2)
        return fitting or tuple(steps[:1])

    def capacities(self, sizes: Sequence[int]) -> tuple[int, ...]:
        """Replay sizes up to the first that holds the whole run (a larger one is never filled).

        :param sizes: candidate ``buffer_size`` values."""
        ordered = sorted(sizes)
        return tuple(size for i, size in enumerate(ordered) if i == 0 or ordered[i - 1] < self.steps)


#: A search space: ``space(trial, budget) -> settings`` (keyword arguments of the agent, JSON-friendly
#: values), sampling with ``trial.suggest_*``.
SearchSpace = Callable[["optuna.Trial", SearchBudget], dict[str, Any]]

GAMMAS = (0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 0.9999)
GAE_LAMBDAS = (0.8, 0.9, 0.92, 0.95, 0.98, 0.99, 1.0)
MAX_GRAD_NORMS = (0.3, 0.5, 1.0, 2.0, 5.0)
#: Hidden layer sizes by the name the study records (Optuna's choices are plain values).
HIDDEN = {"64x64": (64, 64), "128x128": (128, 128), "256x256": (256, 256)}


def suggest_hidden(trial: optuna.Trial) -> tuple[int, ...]:
    """The MLPs' hidden layer sizes, chosen by name from :data:`HIDDEN`."""
    return HIDDEN[trial.suggest_categorical("hidden", tuple(HIDDEN))]
