"""Proximal Policy Optimization (Schulman et al. 2017), with the known implementation details.

The details, each named where it happens (see "The 37 implementation details of PPO"):
orthogonal init (nets.py), GAE (buffers/rollout.py), advantage normalisation per minibatch,
clipped surrogate objective, optional clipped value loss, entropy bonus, global gradient clipping,
learning-rate (and optionally clip-range) annealing, shuffled minibatches over several epochs,
observation and reward normalisation for continuous control, approx_kl and clip fraction in the
metrics, optional early stop at ``target_kl``.

Speed: for the built-in vector network with a categorical head (classic control, one-hot
discrete observations), the loss gradient is written out by hand and small acting batches run in
numpy (:mod:`rladapt.agents.fast`, behind ``PPO(fast=...)``; checked against autograd in the
tests); other networks and heads take the autograd/torch path. Same math either way.

Example:
    >>> agent = PPO(seed=0)
    >>> env = AutoAdapt(gym.make("CartPole-v1"), agent)        # doctest: +SKIP
    >>> agent.learn(env, steps=100_000).evaluate(env).mean     # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterator

import torch
import torch.nn.functional as F

from rladapt.agents.on_policy import ACTOR_CRITIC_SPEC, ActorCriticConfig, OnPolicyAgent, default_kind, normalize
from rladapt.agents.optim import adam, adam_step, set_lr
from rladapt.buffers.rollout import RolloutBuffer, minibatch_indices
from rladapt.spec import AgentSpec
from rladapt.agents.tuning import GAE_LAMBDAS, GAMMAS, MAX_GRAD_NORMS, SearchBudget, suggest_hidden

if TYPE_CHECKING:
    import optuna

#: Per-kind defaults for settings left at None. Classic control: rl-zoo's CartPole settings with
#: minibatches of 64 over 10 epochs (40 gradient steps per rollout instead of 20 full-batch ones:
#: on CartPole-v1, seeds 0-39, mean steps to 475 9,700 against 16,300, median time 0.64-0.70x; Acrobot-v1
#: no worse); images: CleanRL's Atari settings; continuous: CleanRL/SB3's MuJoCo settings, batched.
PPO_DEFAULTS: dict[str, dict[str, Any]] = {
    "vector": dict(num_envs=8, n_steps=32, batch_size=64, n_epochs=10, lr=1e-3, gamma=0.98, gae_lambda=0.8,
                   clip_range=0.2, anneal_clip=True, ent_coef=0.0, vf_coef=1.0, normalize_observations=False,
                   normalize_rewards=False),
    "image": dict(num_envs=8, n_steps=128, batch_size=256, n_epochs=4, lr=2.5e-4, gamma=0.99, gae_lambda=0.95,
                  clip_range=0.1, anneal_clip=False, ent_coef=0.01, vf_coef=0.5, normalize_observations=False,
                  normalize_rewards=False),
    "continuous": dict(num_envs=8, n_steps=256, batch_size=256, n_epochs=10, lr=1e-3, gamma=0.99, gae_lambda=0.95,
                       clip_range=0.2, anneal_clip=False, ent_coef=0.0, vf_coef=0.5, normalize_observations=True,
                       normalize_rewards=True, noise_beta=0.0),
    "box2d": dict(num_envs=16, n_steps=1024, batch_size=64, n_epochs=4, lr=3e-4, gamma=0.999, gae_lambda=0.98,
                  clip_range=0.2, anneal_clip=False, ent_coef=0.01, vf_coef=1.0, normalize_observations=False,
                  normalize_rewards=False),
    "box2d_continuous": dict(num_envs=16, n_steps=1024, batch_size=64, n_epochs=4, lr=3e-4, gamma=0.999,
                             gae_lambda=0.98, clip_range=0.2, anneal_clip=False, ent_coef=0.0, vf_coef=0.5,
                             normalize_observations=True, normalize_rewards=True, noise_beta=0.0),
    # Board games (PettingZoo classic, rladapt's TicTacToe): the vector row with 4x longer rollouts.
    # connect_four_v3 self-play, 500k steps, seeds 100-109: 0.958 +- 0.011 wins against random with
    # n_steps 128 (chosen on 100-104; 105-109 alone 0.960), 0.947 +- 0.015 with the vector row's 32
    # (benchmarks/README.md, self-play section).
    "board_game": dict(num_envs=8, n_steps=128, batch_size=64, n_epochs=10, lr=1e-3, gamma=0.98, gae_lambda=0.8,
                       clip_range=0.2, anneal_clip=True, ent_coef=0.0, vf_coef=1.0, normalize_observations=False,
                       normalize_rewards=False),
    # MuJoCo: the initial policy std 0.37 (log -1) instead of 1; with std 1 two of three HalfCheetah
    # seeds learned to run on their back (1,894 and 1,768 at 1M); with log -1 6,190-6,548, Hopper
    # still above the zoo (benchmarks/README.md, published rows). The zoo's own rows use -2 to -2.2,
    # which collapsed a Hopper seed here (410) with this row's learning rate.
    "mujoco": dict(num_envs=8, n_steps=256, batch_size=64, n_epochs=10, lr=3e-4, gamma=0.99, gae_lambda=0.95,
                   clip_range=0.2, anneal_clip=False, ent_coef=0.0, vf_coef=0.5, normalize_observations=True,
                   normalize_rewards=True, noise_beta=0.0, log_std_init=-1.0),
}


def ppo_search_space(trial: optuna.Trial, budget: SearchBudget) -> dict[str, Any]:
    """PPO's search space (ranges after rl-zoo's, the rollout kept within the budget)."""
    return {
        "lr": trial.suggest_float("lr", 1e-5, 1e-2, log=True),
        "n_steps": trial.suggest_categorical("n_steps", budget.rollouts((8, 16, 32, 64, 128, 256, 512, 1024, 2048))),
        "batch_size": trial.suggest_categorical("batch_size", (32, 64, 128, 256, 512)),
        "n_epochs": trial.suggest_categorical("n_epochs", (1, 4, 10, 20)),
        "gamma": trial.suggest_categorical("gamma", GAMMAS),
        "gae_lambda": trial.suggest_categorical("gae_lambda", GAE_LAMBDAS),
        "clip_range": trial.suggest_categorical("clip_range", (0.1, 0.2, 0.3, 0.4)),
        "ent_coef": trial.suggest_float("ent_coef", 1e-8, 0.1, log=True),
        "vf_coef": trial.suggest_float("vf_coef", 0.2, 1.0),
        "max_grad_norm": trial.suggest_categorical("max_grad_norm", MAX_GRAD_NORMS),
        "hidden": suggest_hidden(trial),
    }


@dataclass
class PPOConfig(ActorCriticConfig):
    """PPO settings: the actor-critics' (:class:`~rladapt.agents.on_policy.ActorCriticConfig`:
    ``lr`` (Adam's), ``ent_coef``, ``vf_coef``, ``max_grad_norm``, ``anneal_lr`` (on by default
    here), ``hidden``, ``network``) and PPO's own. None means "the default for this kind of env"
    (see ``PPO_DEFAULTS``). ``vf_coef``: classic control defaults to 1.0, which is SB3/rl-zoo's
    ``vf_coef=0.5`` on the plain MSE (CartPole-v1 with the classic-control defaults, seeds 0-19:
    mean 10,240 steps to 475 against 10,624 with 0.5); images and continuous control: 0.5.

    :param batch_size: minibatch size.
    :param n_epochs: passes over each rollout.
    :param clip_range: PPO clip range epsilon for the probability ratio.
    :param anneal_clip: anneal ``clip_range`` linearly to 0 along with the learning rate.
    :param clip_value: clip the value loss around the old values with ``clip_range``.
    :param normalize_advantage: standardise advantages per minibatch.
    :param target_kl: stop the epochs of an update early when approx_kl exceeds this (None: never).
    """

    batch_size: int | None = None
    n_epochs: int | None = None
    clip_range: float | None = None
    anneal_clip: bool | None = None
    clip_value: bool = False
    anneal_lr: bool = True
    normalize_advantage: bool = True
    target_kl: float | None = None


class PPO(OnPolicyAgent):
    """Proximal Policy Optimization with a clipped surrogate objective.

    Accepts vector, image and nested observations; discrete, multi-discrete and continuous
    actions; invalid-action masks. Settings are keyword arguments (:class:`PPOConfig`).
    """

    spec: ClassVar[AgentSpec] = ACTOR_CRITIC_SPEC
    Config: ClassVar[type[PPOConfig]] = PPOConfig
    search_space = staticmethod(ppo_search_space)

    def default_settings(self, observation_kind: str, action_kind: str) -> dict[str, Any]:
        return PPO_DEFAULTS[default_kind(observation_kind, action_kind, self.env_family, PPO_DEFAULTS)]

    def build(self) -> None:
        super().build()
        hp = self.hp
        self.build_actor_critic(hp.network, hp.hidden)
        self.optimizer = adam([self.params.param], hp.lr, self.device, eps=1e-5)  # eps 1e-5: a PPO detail

    def update(self, rollout: RolloutBuffer, progress: float) -> dict[str, float]:
        hp = self.hp
        # Annealing: learning rate (and optionally clip range) fall linearly to 0 over the run.
        lr = hp.lr * (1.0 - progress) if hp.anneal_lr else hp.lr
        set_lr(self.optimizer, lr)
        clip = hp.clip_range * (1.0 - progress) if hp.anneal_clip else hp.clip_range

        keys = ["observation", "action", "log_prob", "value", "advantage", "value_target"]
        if self.use_masks:
            keys.append("action_mask")
        if hp.recurrent is not None:  # minibatches of whole sequence chunks per env, replayed from their stored state
            sequences = self.sequences(rollout, keys)
            batch = sequences[sequences.get("valid")]
            minibatches = self._sequence_minibatches(sequences)
        else:
            batch = rollout.transitions(keys)  # the reset steps of autoreset are not transitions
            minibatches = self._minibatches(batch)
        stats = []
        for epoch in range(hp.n_epochs):
            # Diagnostics cost ops: computed in the last epoch (every epoch when target_kl is set).
            track = epoch == hp.n_epochs - 1 or hp.target_kl is not None
            for mb in minibatches():
                self.params.zero_grad()  # (re-attaches the gradient views)
                # Autograd, or the same gradient written out by hand (rladapt.agents.fast), as bound at build.
                diagnostics = self.fast_path.ppo_gradient(mb, clip, track)
                self.params.clip_grad_norm_(hp.max_grad_norm)
                adam_step(self.optimizer)
                if track:
                    stats.append(diagnostics)
            if hp.target_kl is not None and float(stats[-1][3]) > hp.target_kl:
                break
        return self._metrics(stats, batch, epoch, lr, clip)

    def _minibatches(self, batch: Any) -> Callable[[], Iterator[tuple]]:
        """Shuffled minibatches of single transitions: ``(obs, action, old_log_prob, advantages,
        returns, mask, old_value)`` each (a new shuffle at every call: one per epoch)."""
        hp = self.hp
        obs, action, old_log_prob = batch.get("observation"), batch.get("action"), batch.get("log_prob")
        advantage, returns, mask = batch.get("advantage"), batch.get("value_target"), batch.get("action_mask", None)
        old_value = batch.get("value")

        def minibatches() -> Iterator[tuple]:
            chunks = list(minibatch_indices(batch.shape[0], hp.batch_size, self.generator))
            if chunks == [None]:  # one minibatch holds the whole rollout
                yield (obs, action, old_log_prob, normalize(advantage) if hp.normalize_advantage else advantage,
                       returns, mask, old_value)
                return
            # One gather per column for the whole epoch, then each minibatch is a slice of it (a
            # view): the same rows as indexing per minibatch, at a quarter of the ops for 4 minibatches.
            order = torch.cat(chunks)
            columns = [None if column is None else column[order]
                       for column in (obs, action, old_log_prob, advantage, returns, mask, old_value)]
            sizes = [len(chunk) for chunk in chunks]
            if hp.normalize_advantage:  # each minibatch by its own statistics: all at once when the sizes are equal
                shuffled = columns[3]  # the advantages
                columns[3] = (normalize(shuffled.view(len(sizes), sizes[0]), dim=1).view(-1) if len(set(sizes)) == 1
                              else torch.cat([normalize(part) for part in shuffled.split(sizes)]))
            start = 0
            for size in sizes:
                rows = slice(start, start + size)
                start = rows.stop
                yield tuple(None if column is None else column[rows] for column in columns)

        return minibatches

    def _sequence_minibatches(self, sequences: Any) -> Callable[[], Iterator[tuple]]:
        """Recurrent policies: shuffled minibatches of ``batch_size // sequence_length`` whole
        chunks. The first entry is the ``[L, k]`` chunks themselves (what
        :meth:`~rladapt.agents.recurrent.RecurrentActorCritic.evaluate_actions` replays), action and
        mask stay ``[L, k]``; the rest are the valid steps, flattened in the replay's order."""
        hp = self.hp
        length, count = sequences.batch_size
        per_batch = max(1, hp.batch_size // length)

        def minibatches() -> Iterator[tuple]:
            for idx in minibatch_indices(count, per_batch, self.generator):
                chunks = sequences if idx is None else sequences[:, idx]
                valid = chunks.get("valid")
                adv = chunks.get("advantage")[valid]
                yield (chunks, chunks.get("action"), chunks.get("log_prob")[valid],
                       normalize(adv) if hp.normalize_advantage else adv, chunks.get("value_target")[valid],
                       chunks.get("action_mask", None), chunks.get("value")[valid])

        return minibatches

    def loss_backward(self, obs: Any, action: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor,
                       returns: torch.Tensor, mask: torch.Tensor | None, old_value: torch.Tensor, clip: float,
                       track: bool) -> torch.Tensor | None:
        """The PPO loss of one minibatch, backpropagated; its diagnostics ``[policy_loss,
        value_loss, entropy, approx_kl, clip_fraction]`` when ``track``."""
        hp = self.hp
        new_log_prob, entropy, new_value = self.policy.evaluate_actions(obs, action, mask, entropy=track or hp.ent_coef != 0)
        log_ratio = new_log_prob - old_log_prob
        ratio = log_ratio.exp()

        # Clipped surrogate objective.
        policy_loss = -torch.min(ratio * advantages, ratio.clamp(1 - clip, 1 + clip) * advantages).mean()

        # Value loss, optionally clipped around the old value estimates.
        if hp.clip_value:
            clipped = old_value + (new_value - old_value).clamp(-clip, clip)
            value_loss = 0.5 * torch.max((new_value - returns) ** 2, (clipped - returns) ** 2).mean()
        else:
            value_loss = 0.5 * F.mse_loss(new_value, returns)

        loss = policy_loss + hp.vf_coef * value_loss
        if hp.ent_coef:  # entropy bonus
            loss = loss - hp.ent_coef * entropy.mean()
        loss.backward()
        if not track:
            return None
        with torch.no_grad():  # approx_kl: http://joschu.net/blog/kl-approx.html
            approx_kl = ((ratio - 1) - log_ratio).mean()
            clip_fraction = ((ratio - 1).abs() > clip).float().mean()
            return torch.stack([policy_loss, value_loss, entropy.mean(), approx_kl, clip_fraction]).detach()

    def _metrics(self, stats: list, batch: Any, epoch: int, lr: float, clip: float) -> dict[str, float]:
        policy_loss, value_loss, entropy, approx_kl, clip_fraction = torch.stack(stats).mean(0).tolist()
        values, returns = batch.get("value"), batch.get("value_target")
        var = returns.var()
        explained = float(1 - (returns - values).var() / var) if var > 0 else float("nan")
        return {
            "train/policy_loss": policy_loss,
            "train/value_loss": value_loss,
            "train/entropy": entropy,
            "train/approx_kl": approx_kl,
            "train/clip_fraction": clip_fraction,
            "train/explained_variance": explained,
            "train/epochs": epoch + 1,
            "train/lr": lr,
            "train/clip_range": clip,
        }
