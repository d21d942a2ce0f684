"""DreamerV3 (Hafner et al. 2023): learn a world model from replayed sequences, then train an
actor and a critic on trajectories imagined in it.

World model (an RSSM with discrete latents):

- encoder: symlog(vector observation) -> MLP, or uint8 image -> small CNN (:func:`~rladapt.agents.nets.image_encoder`);
- sequence model: ``h_t = GRU(h_{t-1}, [z_{t-1}, a_{t-1}])`` (deterministic state);
- posterior ``q(z_t | h_t, embed(o_t))`` and prior ``p(z_t | h_t)``: ``stoch`` categoricals of
  ``classes`` classes each, mixed with 1% uniform (``unimix``), sampled one-hot with
  straight-through gradients;
- heads on ``[h_t, z_t]``: decoder (symlog(observation) with a squared error, or the image with a
  squared error), reward (two-hot over symlog-spaced bins, decoded with symexp), continue (Bernoulli,
  ``1 - terminated``).

Its loss per step is ``prediction + dyn_scale * max(free_bits, KL[sg(q) || p]) + rep_scale *
max(free_bits, KL[q || sg(p)])`` (KL balancing with free bits: :func:`kl_balance`).

Behaviour: from every posterior state of the replayed batch, ``horizon`` steps are imagined with the
actor and the prior. lambda-returns ``R_t = r_{t+1} + gamma c_{t+1} ((1 - lambda) v_{t+1} + lambda
R_{t+1})`` (bootstrapped with the critic at the horizon) train the critic (two-hot, plus a pull
towards a slow EMA copy of itself) and the actor by REINFORCE on ``(R_t - v_t) / max(1, S)`` plus an
entropy bonus, where ``S`` is an EMA of the 95th minus the 5th percentile of the returns
(:func:`return_scale`). Trajectories past a predicted termination are weighted down by the
predicted continue probabilities.

Acting carries ``(h, z, a)`` from step to step in ``recurrent_state`` (:meth:`Agent.state_specs`),
zeroed where ``is_init`` marks an episode start, exactly as the replay starts a sequence at
``is_first``; actions are one-hot (discrete) or a bounded normal (continuous, in [-1, 1]).

Example:
    >>> from rladapt.agents import Dreamer
    >>> agent = Dreamer(seed=0)
    >>> agent.learn("CartPole-v1", 10_000)          # doctest: +SKIP
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from tensordict import TensorDictBase
from torch import nn

from rladapt.agents.nets import image_encoder
from rladapt.agents.off_policy import OffPolicyAgent, OffPolicyConfig
from rladapt.buffers.sequence import SequenceReplay
from rladapt.collect.batch import OutSpecs
from rladapt.spec import AgentSpec
from rladapt.agents.tuning import SearchBudget

if TYPE_CHECKING:
    import optuna

__all__ = ["Dreamer", "DreamerConfig", "kl_balance", "return_scale", "symexp", "symlog", "two_hot", "two_hot_decode"]

#: The key of the carried acting state ``[h, z, previous action]``.
STATE_KEY = "recurrent_state"


# -------------------------------------------------------------------------------------------
# The transforms and losses (each checked by hand in tests/test_dreamer.py)
# -------------------------------------------------------------------------------------------

def symlog(x: torch.Tensor) -> torch.Tensor:
    """``sign(x) * log(1 + |x|)``: squashes large magnitudes, the identity near 0."""
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`symlog`: ``sign(x) * (exp(|x|) - 1)``."""
    return torch.sign(x) * torch.expm1(x.abs())


def two_hot(x: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """``x`` ``[...]`` as weights ``[..., len(bins)]`` on its two neighbouring bins (linear
    interpolation; values outside the bins go to the end bin), so that ``weights @ bins == x``.

    :param x: the values (already in the bins' space, e.g. ``symlog(reward)``).
    :param bins: increasing bin centres.
    """
    x = x.clamp(bins[0], bins[-1])
    below = (torch.searchsorted(bins, x.contiguous(), right=True) - 1).clamp(0, len(bins) - 2)
    low, high = bins[below], bins[below + 1]
    upper = (x - low) / (high - low)
    out = torch.zeros((*x.shape, len(bins)), dtype=x.dtype, device=x.device)
    out.scatter_(-1, below.unsqueeze(-1), (1 - upper).unsqueeze(-1))
    out.scatter_add_(-1, (below + 1).unsqueeze(-1), upper.unsqueeze(-1))
    return out


def two_hot_decode(logits: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """The value a two-hot head predicts: ``symexp(softmax(logits) @ bins)``.

    :param logits: ``[..., len(bins)]`` head outputs.
    :param bins: the bin centres (in symlog space).
    """
    return symexp((torch.softmax(logits, -1) * bins).sum(-1))


def two_hot_loss(logits: torch.Tensor, target: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of a two-hot head against ``two_hot(symlog(target))``, per element."""
    return -(two_hot(symlog(target), bins) * torch.log_softmax(logits, -1)).sum(-1)


def categorical_kl(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """``KL[p || q]`` of ``[..., stoch, classes]`` categoricals, summed over the ``stoch`` latents."""
    p_log, q_log = torch.log_softmax(p_logits, -1), torch.log_softmax(q_logits, -1)
    return (p_log.exp() * (p_log - q_log)).sum((-2, -1))


def kl_balance(post_logits: torch.Tensor, prior_logits: torch.Tensor, free_bits: float = 1.0,
               dyn_scale: float = 0.5, rep_scale: float = 0.1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DreamerV3's KL balancing with free bits, per step: ``(loss, dyn, rep)`` with ``dyn =
    max(free_bits, KL[sg(post) || prior])`` (trains the prior), ``rep = max(free_bits, KL[post ||
    sg(prior)])`` (trains the posterior) and ``loss = dyn_scale * dyn + rep_scale * rep``.

    :param post_logits: posterior logits ``[..., stoch, classes]``.
    :param prior_logits: prior logits, the same shape.
    :param free_bits: nats below which a KL term is not minimised further.
    :param dyn_scale: weight of the dynamics term.
    :param rep_scale: weight of the representation term.
    """
    dyn = categorical_kl(post_logits.detach(), prior_logits).clamp(min=free_bits)
    rep = categorical_kl(post_logits, prior_logits.detach()).clamp(min=free_bits)
    return dyn_scale * dyn + rep_scale * rep, dyn, rep


def return_scale(returns: torch.Tensor, percentiles: torch.Tensor, decay: float) -> torch.Tensor:
    """Update ``percentiles`` (``[2]``: EMAs of the 5th and 95th percentile of the returns, in
    place) with this batch of ``returns`` and return ``max(1, P95 - P5)``, the divisor of the
    actor's advantages: large returns are scaled down, small ones are not scaled up.

    :param returns: lambda-returns of the batch (any shape).
    :param percentiles: the running ``[P5, P95]``.
    :param decay: the EMA's decay.
    """
    batch = torch.quantile(returns.detach().flatten().float(), torch.tensor([0.05, 0.95], device=returns.device))
    percentiles.mul_(decay).add_((1 - decay) * batch)
    return torch.clamp(percentiles[1] - percentiles[0], min=1.0)


def lambda_returns(reward: torch.Tensor, discount: torch.Tensor, value: torch.Tensor, lam: float) -> torch.Tensor:
    """``R_t = r_{t+1} + d_{t+1} ((1 - lam) v_{t+1} + lam R_{t+1})``, ``R_H = v_H``, for t < H.

    :param reward: ``[H, ...]`` rewards on arriving at steps 1..H.
    :param discount: ``[H, ...]`` gamma times the continue probability at steps 1..H.
    :param value: ``[H + 1, ...]`` values at steps 0..H.
    :param lam: lambda.
    """
    out, last = [], value[-1]
    for t in reversed(range(reward.shape[0])):
        last = reward[t] + discount[t] * ((1 - lam) * value[t + 1] + lam * last)
        out.append(last)
    return torch.stack(out[::-1])


# -------------------------------------------------------------------------------------------
# Settings and networks
# -------------------------------------------------------------------------------------------

def dreamer_search_space(trial: optuna.Trial, budget: SearchBudget) -> dict[str, Any]:
    """Dreamer's search space (around DreamerV3's settings, scaled to CPU-sized networks)."""
    return {
        "model_lr": trial.suggest_float("model_lr", 1e-4, 1e-3, log=True),
        "actor_lr": trial.suggest_float("actor_lr", 3e-5, 3e-4, log=True),
        "critic_lr": trial.suggest_float("critic_lr", 3e-5, 3e-4, log=True),
        "gamma": trial.suggest_categorical("gamma", (0.98, 0.985, 0.99, 0.997)),
        "horizon": trial.suggest_categorical("horizon", (10, 15, 20)),
        "sequence_length": trial.suggest_categorical("sequence_length", (16, 32, 64)),
        "train_freq": trial.suggest_categorical("train_freq", (2, 4, 8)),
        "learning_starts": trial.suggest_categorical("learning_starts", budget.warmups((500, 1_000, 5_000))),
        "actor_entropy": trial.suggest_categorical("actor_entropy", (1e-4, 3e-4, 1e-3)),
        "deter": trial.suggest_categorical("deter", (64, 128, 256)),
        "units": trial.suggest_categorical("units", (64, 128, 256)),
    }


@dataclass
class DreamerConfig(OffPolicyConfig):
    """Dreamer's settings (small, CPU-friendly defaults; DreamerV3's own in brackets).

    :param buffer_size: replayed steps kept over all envs.
    :param batch_size: sequences per gradient step [16].
    :param sequence_length: steps per replayed sequence [64].
    :param deter: units of the GRU's deterministic state [512+].
    :param stoch: categorical latents [32].
    :param classes: classes per latent [32].
    :param units: width of every MLP [512+].
    :param layers: hidden layers of every MLP [2+].
    :param unimix: share of uniform mixed into the latents' and the discrete actor's probabilities [0.01].
    :param free_bits: nats below which the KL terms are not minimised [1.0].
    :param dyn_scale: weight of the dynamics KL (trains the prior) [0.5].
    :param rep_scale: weight of the representation KL (trains the posterior) [0.1].
    :param bins: bins of the two-hot reward and critic heads, spaced evenly on [-20, 20] in symlog space [255].
    :param horizon: imagined steps per start state [15].
    :param gamma: discount of the imagined returns [0.997].
    :param return_lambda: lambda of the lambda-returns [0.95].
    :param actor_entropy: weight of the actor's entropy bonus [3e-4].
    :param model_lr: Adam's learning rate for the world model.
    :param actor_lr: Adam's learning rate for the actor.
    :param critic_lr: Adam's learning rate for the critic.
    :param max_grad_norm: gradient norm clip of each of the three optimizers.
    :param slow_critic_decay: EMA decay of the slow critic [0.98].
    :param slow_critic_weight: weight of the critic's pull towards the slow critic's values [1.0].
    :param return_norm_decay: EMA decay of the returns' percentiles [0.99].
    """

    buffer_size: int = 100_000
    batch_size: int = 16
    sequence_length: int = 32
    deter: int = 64
    stoch: int = 8
    classes: int = 8
    units: int = 64
    layers: int = 2
    unimix: float = 0.01
    free_bits: float = 1.0
    dyn_scale: float = 0.5
    rep_scale: float = 0.1
    bins: int = 255
    horizon: int = 15
    gamma: float = 0.985
    return_lambda: float = 0.95
    actor_entropy: float = 3e-4
    model_lr: float = 3e-4
    actor_lr: float = 1e-4
    critic_lr: float = 1e-4
    max_grad_norm: float = 100.0
    slow_critic_decay: float = 0.98
    slow_critic_weight: float = 1.0
    return_norm_decay: float = 0.99


def dense(in_dim: int, out_dim: int, units: int, layers: int, zero_out: bool = False) -> nn.Sequential:
    """``layers`` x (Linear, LayerNorm, SiLU), then a Linear to ``out_dim`` (zero weights when
    ``zero_out``: DreamerV3 starts the reward and critic heads at 0)."""
    modules: list[nn.Module] = []
    for i in range(layers):
        modules += [nn.Linear(in_dim if i == 0 else units, units), nn.LayerNorm(units), nn.SiLU()]
    out = nn.Linear(units if layers else in_dim, out_dim)
    if zero_out:
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)
    return nn.Sequential(*modules, out)


class ImageDecoder(nn.Module):
    """Features -> an image ``[B, *shape]`` in [-0.5, 0.5] (two transposed convolutions, resized to
    the image's height and width).

    :param features: input features.
    :param shape: the channel-first image shape.
    """

    def __init__(self, features: int, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = tuple(shape)
        self.channels = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
        self.base = (max(1, shape[-2] // 4), max(1, shape[-1] // 4))
        self.fc = nn.Linear(features, 32 * self.base[0] * self.base[1])
        self.deconv = nn.Sequential(nn.SiLU(), nn.ConvTranspose2d(32, 16, 4, 2, 1), nn.SiLU(),
                                    nn.ConvTranspose2d(16, self.channels, 4, 2, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.deconv(self.fc(x).view(-1, 32, *self.base))
        if tuple(y.shape[-2:]) != self.shape[-2:]:
            y = F.interpolate(y, size=self.shape[-2:], mode="bilinear", align_corners=False)
        return y.reshape(-1, *self.shape)


class WorldModel(nn.Module):
    """The RSSM and its heads (see the module docstring).

    :param observation_space: a flat float vector Box or a uint8 image Box.
    :param action_dim: width of the action input (one-hot size, or the Box's dimension).
    :param hp: the agent's settings.
    """

    def __init__(self, observation_space: spaces.Box, action_dim: int, hp: DreamerConfig) -> None:
        super().__init__()
        self.image = observation_space.dtype == np.uint8 and len(observation_space.shape) >= 2
        self.obs_shape = tuple(observation_space.shape)
        self.stoch, self.classes, self.deter, self.unimix = hp.stoch, hp.classes, hp.deter, hp.unimix
        latent = hp.stoch * hp.classes
        if self.image:
            self.encoder: nn.Module = image_encoder(observation_space)
            embed = self.encoder.out_dim
            self.decoder: nn.Module = ImageDecoder(hp.deter + latent, self.obs_shape)
        else:
            size = int(np.prod(self.obs_shape))
            embed = hp.units
            self.encoder = nn.Sequential(nn.Flatten(), dense(size, hp.units, hp.units, hp.layers - 1), nn.LayerNorm(hp.units), nn.SiLU())
            self.decoder = dense(hp.deter + latent, size, hp.units, hp.layers)
        self.img_in = nn.Sequential(nn.Linear(latent + action_dim, hp.units), nn.LayerNorm(hp.units), nn.SiLU())
        self.gru = nn.GRUCell(hp.units, hp.deter)
        self.prior_net = dense(hp.deter, latent, hp.units, 1)
        self.post_net = dense(hp.deter + embed, latent, hp.units, 1)
        self.reward_head = dense(hp.deter + latent, hp.bins, hp.units, hp.layers, zero_out=True)
        self.continue_head = dense(hp.deter + latent, 1, hp.units, hp.layers)

    def embed(self, obs: torch.Tensor) -> torch.Tensor:
        """Observations ``[B, ...]`` -> embeddings (vectors through symlog first)."""
        return self.encoder(obs) if self.image else self.encoder(symlog(obs.float()))

    def mix(self, logits: torch.Tensor) -> torch.Tensor:
        """``[B, stoch * classes]`` -> ``[B, stoch, classes]`` logits with ``unimix`` uniform mixed in."""
        probs = torch.softmax(logits.view(-1, self.stoch, self.classes), -1)
        return torch.log((1 - self.unimix) * probs + self.unimix / self.classes)

    def sample(self, logits: torch.Tensor, generator: torch.Generator | None, deterministic: bool = False) -> torch.Tensor:
        """A one-hot sample ``[B, stoch * classes]`` of the latents, straight-through (the mode when ``deterministic``)."""
        probs = torch.softmax(logits, -1)
        flat = probs.reshape(-1, self.classes)
        index = flat.argmax(-1) if deterministic else torch.multinomial(flat, 1, generator=generator).squeeze(-1)
        one_hot = F.one_hot(index, self.classes).to(probs.dtype).view_as(probs)
        return (one_hot + probs - probs.detach()).flatten(1)

    def step(self, h: torch.Tensor, z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """The sequence model: ``h_t`` from ``h_{t-1}``, ``z_{t-1}`` and ``a_{t-1}``."""
        return self.gru(self.img_in(torch.cat([z, action], -1)), h)

    def prior(self, h: torch.Tensor) -> torch.Tensor:
        return self.mix(self.prior_net(h))

    def posterior(self, h: torch.Tensor, embed: torch.Tensor) -> torch.Tensor:
        return self.mix(self.post_net(torch.cat([h, embed], -1)))

    def decode_loss(self, features: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """Squared error of the reconstruction, summed over the observation: symlog targets for
        vectors, pixels scaled to [-0.5, 0.5] for images."""
        if self.image:
            target = obs.float() / 255.0 - 0.5
        else:
            target = symlog(obs.float()).flatten(1)
        return (self.decoder(features) - target).pow(2).flatten(1).sum(-1)


class Actor(nn.Module):
    """The policy on model states: a categorical with ``unimix`` uniform (discrete) or a normal with
    a tanh-bounded mean and a standard deviation in [0.1, 1] (continuous, clipped to [-1, 1]).

    :param features: model state width.
    :param action_space: ``Discrete`` or a Box in [-1, 1].
    :param hp: the agent's settings.
    """

    def __init__(self, features: int, action_space: spaces.Space, hp: DreamerConfig) -> None:
        super().__init__()
        self.discrete = isinstance(action_space, spaces.Discrete)
        self.dim = int(action_space.n) if self.discrete else int(np.prod(action_space.shape))
        self.unimix = hp.unimix
        self.net = dense(features, self.dim if self.discrete else 2 * self.dim, hp.units, hp.layers)

    def dist(self, features: torch.Tensor) -> torch.distributions.Distribution:
        out = self.net(features)
        if self.discrete:
            probs = (1 - self.unimix) * torch.softmax(out, -1) + self.unimix / self.dim
            return torch.distributions.Categorical(probs=probs)
        mean, std = out.chunk(2, -1)
        return torch.distributions.Independent(torch.distributions.Normal(torch.tanh(mean), 0.9 * torch.sigmoid(std + 2.0) + 0.1), 1)

    def sample(self, dist: torch.distributions.Distribution, generator: torch.Generator | None,
               deterministic: bool = False) -> torch.Tensor:
        """An action drawn with ``generator`` (indices for discrete, unclipped values for continuous)."""
        if self.discrete:
            probs = dist.probs
            return probs.argmax(-1) if deterministic else torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        mean = dist.base_dist.loc
        if deterministic:
            return mean
        return mean + dist.base_dist.scale * torch.randn(mean.shape, generator=generator, device=mean.device)

    def model_input(self, action: torch.Tensor) -> torch.Tensor:
        """An action as the world model's input: one-hot, or clipped to [-1, 1]."""
        return F.one_hot(action.long(), self.dim).float() if self.discrete else action.clamp(-1.0, 1.0)


# -------------------------------------------------------------------------------------------
# The agent
# -------------------------------------------------------------------------------------------

class Dreamer(OffPolicyAgent):
    """DreamerV3 (see the module docstring): vector or image observations, discrete or continuous actions.

    Example:
        >>> agent = Dreamer(seed=0, sequence_length=16)
        >>> agent.learn("Pendulum-v1", 20_000)          # doctest: +SKIP
    """

    spec: ClassVar[AgentSpec] = AgentSpec(observations=frozenset({"vector", "image"}),
                                          actions=frozenset({"discrete", "unit_continuous"}), frame_stack=1)
    Config: ClassVar[type[DreamerConfig]] = DreamerConfig
    search_space = staticmethod(dreamer_search_space)

    def default_settings(self, observation_kind: str, action_kind: str) -> dict[str, Any]:
        # Four envs, an update every 16 env steps: 512 replayed steps per update, 32 per env step.
        return {"num_envs": 4, "learning_starts": 1_000, "train_freq": 4, "gradient_steps": 1}

    def build(self) -> None:
        hp = self.hp
        self.actor_dim = int(self.action_space.n) if isinstance(self.action_space, spaces.Discrete) else int(np.prod(self.action_space.shape))
        self.world = WorldModel(self.observation_space, self.actor_dim, hp)
        features = hp.deter + hp.stoch * hp.classes
        self.actor = Actor(features, self.action_space, hp)
        self.critic = dense(features, hp.bins, hp.units, hp.layers, zero_out=True)
        self.slow_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.register_buffer("bins", torch.linspace(-20.0, 20.0, hp.bins))
        self.register_buffer("return_percentiles", torch.zeros(2))
        self.model_optimizer = torch.optim.Adam(self.world.parameters(), lr=hp.model_lr, eps=1e-8)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=hp.actor_lr, eps=1e-5)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=hp.critic_lr, eps=1e-5)
        self.latent = hp.stoch * hp.classes

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": self.model_optimizer, "actor": self.actor_optimizer, "critic": self.critic_optimizer}

    # -- acting ----------------------------------------------------------------------------
    def state_specs(self) -> OutSpecs:
        """``recurrent_state``: ``[h, z, previous action]`` per env."""
        return {STATE_KEY: ((self.hp.deter + self.latent + self.actor_dim,), torch.float32)}

    def act_batch(self, td: TensorDictBase, deterministic: bool = False) -> TensorDictBase:
        """Filter one step (``h`` from the carried state, ``z`` from the posterior of the
        observation), act on ``[h, z]``, write ``action`` and ``("next", "recurrent_state")``."""
        state = td.get(STATE_KEY)
        is_init = td.get("is_init", None)
        if is_init is not None:
            state = state * (~is_init).to(state.dtype).unsqueeze(-1)  # an episode starts: from zeros
        hp = self.hp
        h, z, prev = state.split([hp.deter, self.latent, self.actor_dim], -1)
        h = self.world.step(h, z, prev)
        z = self.world.sample(self.world.posterior(h, self.world.embed(td.get("observation"))), self.generator, deterministic)
        action = self.actor.sample(self.actor.dist(torch.cat([h, z], -1)), self.generator, deterministic)
        return self._write(td, h, z, action)

    def _write(self, td: TensorDictBase, h: torch.Tensor, z: torch.Tensor, action: torch.Tensor) -> TensorDictBase:
        model_action = self.actor.model_input(action)
        td.set("action", action.long() if self.actor.discrete else model_action)
        td.set(("next", STATE_KEY), torch.cat([h, z, model_action], -1))
        return td

    def explore(self, td: TensorDictBase) -> TensorDictBase:
        """The actor's samples; before ``learning_starts`` uniformly random actions, with the
        model state still filtered (and carrying the random action)."""
        td = self.act_batch(td, deterministic=False)
        if self.num_timesteps < (self.hp.learning_starts or 0):
            h, z, _ = td.get(("next", STATE_KEY)).split([self.hp.deter, self.latent, self.actor_dim], -1)
            self._write(td, h, z, self.random_actions(td).get("action"))
        return td

    # -- storage ---------------------------------------------------------------------------
    def build_replay(self, num_envs: int) -> SequenceReplay:
        return SequenceReplay(self.hp.buffer_size, num_envs)

    def store(self, replay: SequenceReplay, batch: TensorDictBase) -> SequenceReplay:
        """Per env, the first observation of each episode (no action, no reward, ``is_first``), then
        every transition's next observation with the action that led to it, its reward and
        ``is_terminal``; NEXT_STEP's reset rows (``valid`` False) are left out."""
        obs, next_obs = batch.get("observation"), batch.get(("next", "observation"))
        action, reward = batch.get("action"), batch.get(("next", "reward")).float()
        terminated = batch.get(("next", "terminated"))
        valid, is_init = batch.get("valid").numpy(), batch.get("is_init").numpy()
        for t in range(batch.shape[0]):
            first = np.flatnonzero(valid[t] & is_init[t])
            if len(first):
                n = len(first)
                replay.add({"observation": obs[t, first], "action": torch.zeros(n, self.actor_dim),
                            "reward": torch.zeros(n), "is_first": torch.ones(n, dtype=torch.bool),
                            "is_terminal": torch.zeros(n, dtype=torch.bool)}, first)
            envs = np.flatnonzero(valid[t])
            if len(envs):
                replay.add({"observation": next_obs[t, envs], "action": self.actor.model_input(action[t, envs]),
                            "reward": reward[t, envs], "is_first": torch.zeros(len(envs), dtype=torch.bool),
                            "is_terminal": terminated[t, envs].bool()}, envs)
        return replay

    def ready(self, replay: SequenceReplay) -> bool:
        """After ``learning_starts`` env steps, once a stream holds a whole sequence."""
        full = int(np.minimum(replay.written, replay.env_capacity).max()) >= self.hp.sequence_length
        return super().ready(replay) and full

    # -- learning --------------------------------------------------------------------------
    def observe(self, seq: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run the RSSM over ``[B, L]`` sequences from zero states (reset at ``is_first``):
        ``(h, z, post_logits, prior_logits)``, each ``[B, L, ...]``."""
        B, L = seq["reward"].shape
        hp = self.hp
        embed = self.world.embed(seq["observation"].flatten(0, 1)).view(B, L, -1)
        h = torch.zeros(B, hp.deter, device=self.device)
        z = torch.zeros(B, self.latent, device=self.device)
        hs, zs, posts, priors = [], [], [], []
        for t in range(L):
            keep = (~seq["is_first"][:, t]).float().unsqueeze(-1)
            h = self.world.step(h * keep, z * keep, seq["action"][:, t])  # stored action is zero at a first step
            prior, post = self.world.prior(h), self.world.posterior(h, embed[:, t])
            z = self.world.sample(post, self.generator)
            hs.append(h), zs.append(z), posts.append(post), priors.append(prior)
        return torch.stack(hs, 1), torch.stack(zs, 1), torch.stack(posts, 1), torch.stack(priors, 1)

    def imagine(self, h: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``horizon`` steps from ``[N]`` start states with the actor and the prior (no gradient:
        the actor learns by REINFORCE): ``(features [H + 1, N, F], actions [H, N, ...])``."""
        features, actions = [torch.cat([h, z], -1)], []
        with torch.no_grad():
            for _ in range(self.hp.horizon):
                action = self.actor.sample(self.actor.dist(features[-1]), self.generator)
                h = self.world.step(h, z, self.actor.model_input(action))
                z = self.world.sample(self.world.prior(h), self.generator)
                features.append(torch.cat([h, z], -1))
                actions.append(action)
        return torch.stack(features), torch.stack(actions)

    def update(self, replay: SequenceReplay, progress: float) -> dict[str, float]:
        hp = self.hp
        sums: dict[str, float] = {}
        for _ in range(hp.gradient_steps):
            seq = {k: v.to(self.device) for k, v in replay.sample(hp.batch_size, hp.sequence_length, self.np_random).items()}

            # World model: reconstruction, reward, continue, KL balancing with free bits.
            h, z, post, prior = self.observe(seq)
            features = torch.cat([h, z], -1).flatten(0, 1)
            decoder = self.world.decode_loss(features, seq["observation"].flatten(0, 1))
            reward = two_hot_loss(self.world.reward_head(features), seq["reward"].flatten(), self.bins)
            cont_target = (~seq["is_terminal"]).float().flatten()
            cont = F.binary_cross_entropy_with_logits(self.world.continue_head(features).squeeze(-1), cont_target, reduction="none")
            kl, dyn, rep = kl_balance(post, prior, hp.free_bits, hp.dyn_scale, hp.rep_scale)
            model_loss = (decoder + reward + cont).mean() + kl.mean()
            self.model_optimizer.zero_grad(set_to_none=True)
            model_loss.backward()
            nn.utils.clip_grad_norm_(self.world.parameters(), hp.max_grad_norm)
            self.model_optimizer.step()

            # Imagination from every posterior state of the batch.
            start_h, start_z = h.detach().flatten(0, 1), z.detach().flatten(0, 1)
            feats, actions = self.imagine(start_h, start_z)
            with torch.no_grad():
                rewards = two_hot_decode(self.world.reward_head(feats[1:]), self.bins)
                conts = torch.sigmoid(self.world.continue_head(feats[1:]).squeeze(-1))
                conts = torch.cat([cont_target.unsqueeze(0), conts])  # the start's continue is known
                values = two_hot_decode(self.critic(feats), self.bins)
                returns = lambda_returns(rewards, hp.gamma * conts[1:], values, hp.return_lambda)
                weight = torch.cumprod(conts[:-1], 0)  # the chance of being alive at each step
                scale = return_scale(returns, self.return_percentiles, hp.return_norm_decay)
                advantage = (returns - values[:-1]) / scale

            # Actor: REINFORCE on the normalised advantage plus entropy.
            dist = self.actor.dist(feats[:-1])
            entropy = dist.entropy()
            actor_loss = -(weight * (dist.log_prob(actions) * advantage + hp.actor_entropy * entropy)).mean()
            self.actor_optimizer.zero_grad(set_to_none=True)
            actor_loss.backward()
            nn.utils.clip_grad_norm_(self.actor.parameters(), hp.max_grad_norm)
            self.actor_optimizer.step()

            # Critic: two-hot on the lambda-returns, pulled towards the slow critic.
            logits = self.critic(feats[:-1])
            with torch.no_grad():
                slow = two_hot_decode(self.slow_critic(feats[:-1]), self.bins)
            critic_loss = two_hot_loss(logits, returns, self.bins) + hp.slow_critic_weight * two_hot_loss(logits, slow, self.bins)
            critic_loss = (weight * critic_loss).mean()
            self.critic_optimizer.zero_grad(set_to_none=True)
            critic_loss.backward()
            nn.utils.clip_grad_norm_(self.critic.parameters(), hp.max_grad_norm)
            self.critic_optimizer.step()
            with torch.no_grad():
                for slow_p, p in zip(self.slow_critic.parameters(), self.critic.parameters()):
                    slow_p.lerp_(p, 1 - hp.slow_critic_decay)

            step = {"model_loss": model_loss, "decoder_loss": decoder.mean(), "reward_loss": reward.mean(),
                    "continue_loss": cont.mean(), "kl_dyn": dyn.mean(), "kl_rep": rep.mean(), "actor_loss": actor_loss,
                    "critic_loss": critic_loss, "entropy": entropy.mean(), "return_scale": scale,
                    "imagined_return": returns.mean()}
            for name, value in step.items():
                sums[name] = sums.get(name, 0.0) + float(value.detach())
        return {f"train/{name}": total / hp.gradient_steps for name, total in sums.items()}
