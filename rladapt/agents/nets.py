"""Networks chosen from the adapted observation space, and the action heads (distributions).

The encoder is picked from the observation kind:

- vector ``Box`` (float32, 1-D): an MLP (separate actor and critic MLPs, as in CleanRL/SB3),
- image ``Box`` (an image by :func:`rladapt.spaces.is_image`; the dims before the last two are
  channels): the Nature CNN for 84x84-ish images, a small CNN for small ones (8..35 px);
  uint8 -> float /255 happens inside the network, so storage keeps images as uint8,
- nested ``Dict`` (images plus one ``"vector"`` entry): a CNN per image leaf and an MLP over the
  concatenated vector leaves, their features concatenated.

The heads turn features into an action distribution: a masked categorical for ``Discrete``, a
factorised categorical for ``MultiDiscrete``/``MultiBinary`` (per-dimension masks) and a Gaussian with
a state-independent log-std for ``Box``. The distributions are written out by hand (no
``torch.distributions``): sampling happens once per env step and every op counts. Actions are
stored as :func:`rladapt.spaces.stored_action` says; :func:`rladapt.spaces.env_action` turns them
into the env's (offsets, shapes, Box clipping).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from tensordict import TensorDict, TensorDictBase
from torch import nn
from torch.nn import functional as F

from rladapt.agents.masks import MASKED_LOGIT, masked_log_probs, sample_categorical
from rladapt.spaces import has_global_state, is_image, leaves, nvec, observation_kind
from rladapt.spaces import COMPOSITE_SPACES, DISCRETE_LEAVES, action_leaves, action_widths, mask_size, stored_action


def layer_init(layer: nn.Module, gain: float = math.sqrt(2), bias: float = 0.0) -> nn.Module:
    """Orthogonal weights with ``gain`` and constant bias (the PPO implementation detail)."""
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.constant_(layer.bias, bias)
    return layer


def mlp(sizes: list[int], activation: type[nn.Module] = nn.Tanh, out_gain: float | None = None) -> nn.Sequential:
    """An MLP through ``sizes``; hidden layers get ``activation``, the last layer none when
    ``out_gain`` is given (a head), else it is followed by ``activation`` too (an encoder)."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        last = i == len(sizes) - 2
        if last and out_gain is not None:
            layers.append(layer_init(nn.Linear(sizes[i], sizes[i + 1]), out_gain))
        else:
            layers += [layer_init(nn.Linear(sizes[i], sizes[i + 1])), activation()]
    return nn.Sequential(*layers)


class DualMLP(nn.Module):
    """The actor MLP and the critic MLP (same sizes, separate weights) computed side by side.

    The first layer is one ``Linear`` to ``2 * hidden[0]`` units (actor half, critic half); deeper
    layers are one batched matmul over the pair. It is the same function, with the same
    orthogonal initialisation, as two separate MLPs, in half the ops: small networks on CPU are
    bound by per-op overhead, not by arithmetic.

    :param in_dim: input features.
    :param hidden: hidden layer sizes (shared by both MLPs).
    :param activation: activation module class.
    """

    def __init__(self, in_dim: int, hidden: tuple[int, ...], activation: type[nn.Module] = nn.Tanh) -> None:
        super().__init__()
        self.hidden = tuple(hidden)
        self.activation = activation()
        self.first = nn.Linear(in_dim, 2 * hidden[0])
        with torch.no_grad():
            for half in (slice(0, hidden[0]), slice(hidden[0], 2 * hidden[0])):
                self.first.weight[half] = layer_init(nn.Linear(in_dim, hidden[0])).weight
            self.first.bias.zero_()
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for h_in, h_out in zip(hidden[:-1], hidden[1:]):
            pair = torch.stack([layer_init(nn.Linear(h_in, h_out)).weight.detach().T for _ in range(2)])
            self.weights.append(nn.Parameter(pair.contiguous()))  # [2, h_in, h_out]
            self.biases.append(nn.Parameter(torch.zeros(2, 1, h_out)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.activation(self.first(x))
        h = h.view(x.shape[0], 2, self.hidden[0]).transpose(0, 1)  # [2, B, h]: actor, critic
        for weight, bias in zip(self.weights, self.biases):
            h = self.activation(torch.baddbmm(bias, h, weight))
        return h[0], h[1]


# --------------------------------------------------------------------------------------------
# Observation kinds and encoders
# --------------------------------------------------------------------------------------------


class RunningNorm(nn.Module):
    """Running mean/variance of float observations (or returns), kept as buffers so checkpoints
    carry them. ``forward`` standardises and clips to ``[-clip, clip]``.

    :param shape: shape of one sample.
    :param clip: clip of the standardised value.
    :param epsilon: added to the variance.
    """

    def __init__(self, shape: tuple[int, ...], clip: float = 10.0, epsilon: float = 1e-8) -> None:
        super().__init__()
        self.clip, self.epsilon = clip, epsilon
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(1e-4, dtype=torch.float64))
        self._cache: tuple[torch.Tensor, torch.Tensor] | None = None

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Fold a batch ``[B, *shape]`` into the statistics (parallel variance algorithm)."""
        x = x.reshape(-1, *self.mean.shape).to(torch.float64)
        if len(x) == 0:
            return
        batch_mean, batch_var, n = x.mean(0), x.var(0, unbiased=False), x.shape[0]
        delta, total = batch_mean - self.mean, self.count + n
        self.mean += delta * n / total
        self.var.copy_((self.var * self.count + batch_var * n + delta**2 * self.count * n / total) / total)
        self.count.copy_(total)
        self._cache = None

    def _stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._cache is None:
            self._cache = (self.mean.float(), (self.var + self.epsilon).rsqrt().float())
        return self._cache

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean, inv_std = self._stats()
        return ((x - mean) * inv_std).clamp_(-self.clip, self.clip)

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        self._cache = None
        super()._load_from_state_dict(*args, **kwargs)


class FlattenVector(nn.Module):
    """Vector observation -> float features (optionally standardised by running statistics)."""

    def __init__(self, space: spaces.Box, normalize: bool = False) -> None:
        super().__init__()
        self.out_dim = int(np.prod(space.shape))
        self.norm = RunningNorm((self.out_dim,)) if normalize else None

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.reshape(obs.shape[0], -1).float()
        return self.norm(x) if self.norm is not None else x


class ConvEncoder(nn.Module):
    """Convolutions, then a linear layer with ReLU: the shape of the CNN encoders below, which
    differ only in their convolutions (:meth:`conv_layers`).

    Takes uint8 images ``[B, *channels, H, W]`` (the dims before the last two are channels) and
    scales them to [0, 1] inside.

    :param space: the image observation space.
    :param features: size of the output features (the linear layer).
    """

    def __init__(self, space: spaces.Box, features: int) -> None:
        super().__init__()
        channels = int(np.prod(space.shape[:-2])) if len(space.shape) > 2 else 1
        self.hw = tuple(space.shape[-2:])
        self.conv = nn.Sequential(*self.conv_layers(channels), nn.Flatten())
        with torch.no_grad():  # the flattened size, from a probe image
            flat = self.conv(torch.zeros(1, channels, *self.hw)).shape[1]
        self.fc = nn.Sequential(layer_init(nn.Linear(flat, features)), nn.ReLU())
        self.out_dim = features

    def conv_layers(self, channels: int) -> list[nn.Module]:
        """The convolutions and activations, in order, for ``channels`` input channels
        (``self.hw``, the image height and width, is set)."""
        raise NotImplementedError

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.reshape(obs.shape[0], -1, *self.hw).float() / 255.0
        return self.fc(self.conv(x))


class NatureCNN(ConvEncoder):
    """The DQN-Nature CNN (Mnih et al. 2015): 3 conv layers and a 512-unit linear layer.

    Takes uint8 images ``[B, *channels, H, W]`` and scales them to [0, 1] inside.

    :param space: the image observation space.
    :param features: size of the output features.
    """

    def __init__(self, space: spaces.Box, features: int = 512) -> None:
        super().__init__(space, features)

    def conv_layers(self, channels: int) -> list[nn.Module]:
        return [
            layer_init(nn.Conv2d(channels, 32, 8, stride=4)), nn.ReLU(),
            layer_init(nn.Conv2d(32, 64, 4, stride=2)), nn.ReLU(),
            layer_init(nn.Conv2d(64, 64, 3, stride=1)), nn.ReLU(),
        ]


class SmallCNN(ConvEncoder):
    """Two 3x3 convolutions and a linear layer, for tiny images (8 to 35 pixels a side).

    :param space: the image observation space.
    :param features: size of the output features.
    """

    def __init__(self, space: spaces.Box, features: int = 256) -> None:
        super().__init__(space, features)

    def conv_layers(self, channels: int) -> list[nn.Module]:
        return [
            layer_init(nn.Conv2d(channels, 16, 3, stride=1)), nn.ReLU(),
            layer_init(nn.Conv2d(16, 32, 3, stride=2 if min(self.hw) >= 16 else 1)), nn.ReLU(),
        ]


def image_encoder(space: spaces.Box) -> nn.Module:
    """Nature CNN for 84x84-ish images, a small CNN for small ones (8 to 35 pixels a side; below
    8 pixels a uint8 array is not an image, :func:`rladapt.spaces.is_image`, but a vector)."""
    return NatureCNN(space) if min(space.shape[-2:]) >= 36 else SmallCNN(space)


class MultiInputEncoder(nn.Module):
    """Nested ``Dict`` observations: a CNN per image leaf, an MLP over the concatenated vector
    leaves, features concatenated. The forward takes the ``observation`` TensorDict."""

    def __init__(self, space: spaces.Dict, normalize: bool = False, hidden: int = 64) -> None:
        super().__init__()
        self.image_keys: list[tuple[str, ...]] = []
        self.vector_keys: list[tuple[str, ...]] = []
        images: dict[str, nn.Module] = {}
        vector_dim = 0
        for path, leaf in leaves(space):
            if is_image(leaf):
                self.image_keys.append(path)
                images["/".join(path)] = image_encoder(leaf)
            elif isinstance(leaf, spaces.Box):
                self.vector_keys.append(path)
                vector_dim += int(np.prod(leaf.shape))
            else:
                raise TypeError(f"nested observation leaf {'/'.join(path)} is {leaf}; expected an image or a vector Box")
        self.images = nn.ModuleDict(images)
        self.norm = RunningNorm((vector_dim,)) if normalize and vector_dim else None
        self.vector = mlp([vector_dim, hidden, hidden], nn.Tanh) if vector_dim else None
        self.out_dim = sum(m.out_dim for m in self.images.values()) + (hidden if vector_dim else 0)

    def vector_input(self, obs: TensorDictBase) -> torch.Tensor:
        """The concatenated (unnormalised) vector leaves ``[B, D]``."""
        b = obs.shape[0]
        return torch.cat([obs.get(k).reshape(b, -1).float() for k in self.vector_keys], -1)

    def forward(self, obs: TensorDictBase) -> torch.Tensor:
        feats = [enc(obs.get(k)) for k, enc in zip(self.image_keys, self.images.values())]
        if self.vector is not None:
            x = self.vector_input(obs)
            feats.append(self.vector(self.norm(x) if self.norm is not None else x))
        return torch.cat(feats, -1)


# --------------------------------------------------------------------------------------------
# Action heads
# --------------------------------------------------------------------------------------------


class CategoricalHead(nn.Module):
    """Masked categorical over ``Discrete(n)``. Invalid actions get logit ``MASKED_LOGIT``; the same
    masked distribution is used for sampling and for the gradient. Stored action: index in ``[0, n)``."""

    def __init__(self, features: int, space: spaces.Discrete) -> None:
        super().__init__()
        self.n = int(space.n)
        self.linear = layer_init(nn.Linear(features, self.n), 0.01)
        self.action_shape: tuple[int, ...] = ()
        self.action_dtype = torch.int64

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features)

    _log_probs = staticmethod(masked_log_probs)

    def sample(self, logits: torch.Tensor, mask: torch.Tensor | None, deterministic: bool,
               generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        logp = self._log_probs(logits, mask)
        action = logp.argmax(-1) if deterministic else sample_categorical(logp, generator)
        return action, logp.gather(-1, action.unsqueeze(-1)).squeeze(-1)

    def log_prob_entropy(self, logits: torch.Tensor, action: torch.Tensor, mask: torch.Tensor | None,
                         entropy: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        logp = self._log_probs(logits, mask)
        log_prob = logp.gather(-1, action.long().unsqueeze(-1)).squeeze(-1)
        return log_prob, -(logp.exp() * logp).sum(-1) if entropy else None


class MultiCategoricalHead(nn.Module):
    """Factorised categorical over ``MultiDiscrete(nvec)`` (and ``MultiBinary(n)`` as ``[2]*n``):
    one categorical per dimension; masks are per dimension, concatenated (``sum(nvec)`` bools).
    Stored action: ``[D]`` int64 indices."""

    def __init__(self, features: int, space: spaces.MultiDiscrete | spaces.MultiBinary) -> None:
        super().__init__()
        self.nvec = [int(n) for n in nvec(space)]
        self.equal = len(set(self.nvec)) == 1
        self.linear = layer_init(nn.Linear(features, sum(self.nvec)), 0.01)
        self.action_shape = (len(self.nvec),)
        self.action_dtype = torch.int64

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features)

    def _log_probs(self, logits: torch.Tensor, mask: torch.Tensor | None) -> list[torch.Tensor] | torch.Tensor:
        if mask is not None:
            logits = logits.masked_fill(~mask, MASKED_LOGIT)
        if self.equal:  # one batched op over [B, D, n]
            return torch.log_softmax(logits.reshape(*logits.shape[:-1], len(self.nvec), self.nvec[0]), -1)
        return [torch.log_softmax(part, -1) for part in logits.split(self.nvec, -1)]

    def sample(self, logits: torch.Tensor, mask: torch.Tensor | None, deterministic: bool,
               generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        logp = self._log_probs(logits, mask)
        if self.equal:
            action = logp.argmax(-1) if deterministic else sample_categorical(logp, generator)
            return action, logp.gather(-1, action.unsqueeze(-1)).squeeze(-1).sum(-1)
        actions, total = [], 0
        for part in logp:
            a = part.argmax(-1) if deterministic else sample_categorical(part, generator)
            actions.append(a)
            total = total + part.gather(-1, a.unsqueeze(-1)).squeeze(-1)
        return torch.stack(actions, -1), total

    def log_prob_entropy(self, logits: torch.Tensor, action: torch.Tensor, mask: torch.Tensor | None,
                         entropy: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        logp = self._log_probs(logits, mask)
        action = action.long()
        if self.equal:
            log_prob = logp.gather(-1, action.unsqueeze(-1)).squeeze(-1).sum(-1)
            return log_prob, -(logp.exp() * logp).sum((-1, -2)) if entropy else None
        log_prob = sum(p.gather(-1, action[..., i : i + 1]).squeeze(-1) for i, p in enumerate(logp))
        return log_prob, -sum((p.exp() * p).sum(-1) for p in logp) if entropy else None


class GaussianHead(nn.Module):
    """Diagonal Gaussian with a state-independent log-std for ``Box`` actions. The unclipped
    sample is stored (so its log-prob is exact); :func:`rladapt.spaces.env_action` clips it to the
    bounds for the env."""

    def __init__(self, features: int, space: spaces.Box, log_std_init: float = 0.0) -> None:
        super().__init__()
        dim = int(np.prod(space.shape))
        self.mean = layer_init(nn.Linear(features, dim), 0.01)
        self.log_std = nn.Parameter(torch.full((dim,), float(log_std_init)))
        self.action_shape = (dim,)
        self.action_dtype = torch.float32
        self._log_norm = 0.5 * math.log(2 * math.pi) * dim

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.mean(features)

    def _log_prob(self, mean: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        z = (action - mean) * torch.exp(-self.log_std)
        return -0.5 * z.pow(2).sum(-1) - self.log_std.sum() - self._log_norm

    def sample(self, mean: torch.Tensor, mask: torch.Tensor | None, deterministic: bool,
               generator: torch.Generator | None, noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(action, log_prob)``: the mean when ``deterministic``, else ``mean + std * noise``
        (``noise``: unit Gaussian, e.g. colored exploration noise; None: drawn here)."""
        if deterministic:
            action = mean
        else:
            if noise is None:
                noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
            action = mean + noise * self.log_std.exp()
        return action, self._log_prob(mean, action)

    def log_prob_entropy(self, mean: torch.Tensor, action: torch.Tensor, mask: torch.Tensor | None,
                         entropy: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        if not entropy:
            return self._log_prob(mean, action), None
        ent = (self.log_std.sum() + 0.5 * (1 + math.log(2 * math.pi)) * self.log_std.numel()).expand(mean.shape[0])
        return self._log_prob(mean, action), ent


class CompositeHead(nn.Module):
    """One head per leaf of a composite (Dict/Tuple, possibly nested) action space, over the same
    features: a masked categorical per Discrete leaf, a factorised categorical per MultiDiscrete
    or MultiBinary leaf, a Gaussian per Box leaf. The leaves are independent given the state, so
    the log-probability of a composite action is the sum of the leaves' and so is the entropy.

    Stored action: the flat layout of :func:`rladapt.spaces.stored_action` (the leaves' stored
    actions side by side in leaf order). Mask: the discrete leaves' masks concatenated in leaf
    order (:func:`rladapt.spaces.mask_size`); each leaf head gets its own part.

    :param features: size of the actor features.
    :param space: the composite action space.
    :param log_std_init: the initial log std of the Gaussian heads.
    """

    def __init__(self, features: int, space: spaces.Dict | spaces.Tuple, log_std_init: float = 0.0) -> None:
        super().__init__()
        found = action_leaves(space)
        self.heads = nn.ModuleList(action_head(features, leaf, log_std_init) for _, leaf in found)
        self.widths = action_widths(space)  # columns of each leaf in the stored action
        self.mask_widths = [mask_size(leaf) if isinstance(leaf, DISCRETE_LEAVES) else 0 for _, leaf in found]
        with torch.no_grad():  # the width of each head's output (logits, or a Gaussian's mean)
            self.out_widths = [int(head(torch.zeros(1, features)).shape[-1]) for head in self.heads]
        shape, dtype = stored_action(space)
        self.action_shape = shape
        self.action_dtype = torch.float32 if dtype == np.float32 else torch.int64

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.cat([head(features) for head in self.heads], -1)

    def _parts(self, outputs: torch.Tensor, mask: torch.Tensor | None) -> list[tuple[nn.Module, torch.Tensor, torch.Tensor | None]]:
        masks = mask.split(self.mask_widths, -1) if mask is not None else [None] * len(self.heads)
        return [(head, out, m if width else None)
                for head, out, m, width in zip(self.heads, outputs.split(self.out_widths, -1), masks, self.mask_widths)]

    def sample(self, outputs: torch.Tensor, mask: torch.Tensor | None, deterministic: bool,
               generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        actions, total = [], 0
        for head, out, leaf_mask in self._parts(outputs, mask):
            action, log_prob = head.sample(out, leaf_mask, deterministic, generator)
            actions.append(action.reshape(action.shape[0], -1).to(self.action_dtype))
            total = total + log_prob
        return torch.cat(actions, -1), total

    def log_prob_entropy(self, outputs: torch.Tensor, action: torch.Tensor, mask: torch.Tensor | None,
                         entropy: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        log_prob, total_entropy = 0, 0
        for (head, out, leaf_mask), leaf_action in zip(self._parts(outputs, mask), action.split(self.widths, -1)):
            if isinstance(head, CategoricalHead):
                leaf_action = leaf_action.squeeze(-1)
            elif not isinstance(head, GaussianHead):
                leaf_action = leaf_action.long()
            lp, ent = head.log_prob_entropy(out, leaf_action, leaf_mask, entropy)
            log_prob = log_prob + lp
            total_entropy = total_entropy + ent if entropy else None
        return log_prob, total_entropy


def action_head(features: int, space: gym.Space, log_std_init: float = 0.0) -> nn.Module:
    """The head for an adapted action space (``log_std_init``: the initial log std of a Gaussian head)."""
    if isinstance(space, COMPOSITE_SPACES):
        return CompositeHead(features, space, log_std_init)
    if isinstance(space, spaces.Discrete):
        return CategoricalHead(features, space)
    if isinstance(space, (spaces.MultiDiscrete, spaces.MultiBinary)):
        return MultiCategoricalHead(features, space)
    if isinstance(space, spaces.Box):
        if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
            raise TypeError(f"action space {space} has infinite bounds; adapt the env with AutoAdapt(env, agent) first")
        return GaussianHead(features, space, log_std_init)
    raise TypeError(f"no action head for {space}; adapt the env with AutoAdapt(env, agent) first")


# --------------------------------------------------------------------------------------------
# The actor-critic policy module
# --------------------------------------------------------------------------------------------


class ObservationStats:
    """For networks whose ``encoder`` may normalise observations (``encoder.norm``): the running
    statistics and how a batch of raw observations is folded into them."""

    encoder: nn.Module

    @property
    def obs_norm(self) -> RunningNorm | None:
        """The running observation statistics, when observations are normalised."""
        return getattr(self.encoder, "norm", None)

    @torch.no_grad()
    def update_obs_stats(self, obs: torch.Tensor | TensorDictBase) -> None:
        """Fold a batch of raw observations into the running observation statistics."""
        if isinstance(self.encoder, GlobalStateEncoder):
            self.encoder.update_stats(obs)
            return
        norm = self.obs_norm
        if norm is None:
            return
        if isinstance(self.encoder, MultiInputEncoder):
            obs = self.encoder.vector_input(obs)
        norm.update(obs.reshape(obs.shape[0], -1).float())


class GlobalStateEncoder(nn.Module):
    """MAPPO's inputs (:func:`rladapt.spaces.has_global_state`): the agent's own observation for
    the actor, the global state for the centralised critic, each flattened (and standardised when
    asked). The forward returns both."""

    def __init__(self, space: spaces.Dict, normalize: bool = False) -> None:
        super().__init__()
        self.local = FlattenVector(space["observation"], normalize)
        self.state = FlattenVector(space["state"], normalize)

    def forward(self, obs: TensorDictBase) -> tuple[torch.Tensor, torch.Tensor]:
        return self.local(obs.get("observation")), self.state(obs.get("state"))

    @torch.no_grad()
    def update_stats(self, obs: TensorDictBase) -> None:
        """Fold a batch of raw observations into both running statistics."""
        for part, key in ((self.local, "observation"), (self.state, "state")):
            if part.norm is not None:
                x = obs.get(key)
                part.norm.update(x.reshape(x.shape[0], -1).float())


class SplitMLP(nn.Module):
    """An actor MLP and a critic MLP over different inputs (MAPPO: the agent's observation and the
    global state).

    :param actor_in: actor input features.
    :param critic_in: critic input features.
    :param hidden: hidden layer sizes of both.
    """

    def __init__(self, actor_in: int, critic_in: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.actor = mlp([actor_in, *hidden], nn.Tanh)
        self.critic = mlp([critic_in, *hidden], nn.Tanh)

    def forward(self, x: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.actor(x[0]), self.critic(x[1])


class ActorCritic(ObservationStats, nn.Module):
    """Policy and value networks for PPO/A2C, chosen from the spaces.

    Vector observations get separate actor and critic MLPs (a :class:`DualMLP`); an observation
    with a global state (``{"observation", "state"}``, :func:`rladapt.spaces.has_global_state`)
    an actor MLP on the agent's own observation and a centralised critic MLP on the state (MAPPO);
    images and nested observations share one encoder (a CNN) between two linear heads. A custom ``encoder`` (any module mapping a batch
    of observations to ``[B, F]`` features) replaces the built-in one and is shared.

    The forward follows DESIGN.md principle 3: it takes a TensorDict with ``observation`` (and
    ``action_mask`` when masks are on) and writes ``action``, ``log_prob`` and ``value``.

    :param observation_space: the adapted env's (single) observation space.
    :param action_space: the adapted env's (single) action space.
    :param hidden: hidden layer sizes of the MLPs.
    :param normalize_observations: standardise float vector observations with running statistics.
    :param encoder: optional user module mapping observations to features (shared by both heads).
    :param log_std_init: Box actions: the initial log standard deviation of the Gaussian policy.
    """

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        hidden: tuple[int, ...] = (64, 64),
        normalize_observations: bool = False,
        encoder: nn.Module | None = None,
        log_std_init: float = 0.0,
    ) -> None:
        super().__init__()
        kind = observation_kind(observation_space) if encoder is None else "custom"
        if kind == "nested" and has_global_state(observation_space):  # MAPPO: the critic reads the global state
            self.encoder = GlobalStateEncoder(observation_space, normalize_observations)
            self.body = SplitMLP(self.encoder.local.out_dim, self.encoder.state.out_dim, hidden)
            features = hidden[-1]
        elif kind == "vector":
            self.encoder = FlattenVector(observation_space, normalize_observations)
            self.body = DualMLP(self.encoder.out_dim, hidden)  # separate actor and critic MLPs
            features = hidden[-1]
        else:
            if kind == "image":
                self.encoder = image_encoder(observation_space)
            elif kind == "nested":
                self.encoder = MultiInputEncoder(observation_space, normalize_observations)
            elif kind == "index":
                raise TypeError("PPO/A2C need vector or image observations; AutoAdapt one-hot encodes Discrete ones")
            else:
                self.encoder = encoder
            features = getattr(self.encoder, "out_dim", None) or _probe_features(self.encoder, observation_space)
            self.body = None
        self.head = action_head(features, action_space, log_std_init)
        self.critic = layer_init(nn.Linear(features, 1), 1.0)


    def features(self, obs: torch.Tensor | TensorDictBase) -> tuple[torch.Tensor, torch.Tensor]:
        """Actor and critic features for a batch of observations."""
        x = self.encoder(obs)
        if self.body is None:  # one shared encoder (images, nested, custom)
            return x, x
        return self.body(x)


    def get_value(self, obs: torch.Tensor | TensorDictBase) -> torch.Tensor:
        """``V(obs)``, shape ``[B]``."""
        return self.critic(self.features(obs)[1]).squeeze(-1)

    def forward(self, td: TensorDictBase, deterministic: bool = False,
                generator: torch.Generator | None = None, noise: torch.Tensor | None = None) -> TensorDictBase:
        """Act: write ``action``, ``log_prob`` and ``value``. ``noise``: Box actions only, the
        unit Gaussian sample to act with (colored exploration noise); None: drawn here."""
        actor, critic = self.features(td.get("observation"))
        head_input = (self.head(actor), td.get("action_mask", None), deterministic, generator)
        action, log_prob = self.head.sample(*head_input) if noise is None else self.head.sample(*head_input, noise=noise)
        td.set("action", action)
        td.set("log_prob", log_prob)
        td.set("value", self.critic(critic).squeeze(-1))
        return td

    def evaluate_actions(self, obs: torch.Tensor | TensorDictBase, action: torch.Tensor,
                         mask: torch.Tensor | None = None, entropy: bool = True,
                         ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """``(log_prob, entropy, value)`` of stored actions under the current parameters
        (``entropy`` is None when not asked for: it costs ops in the hot loop)."""
        actor, critic = self.features(obs)
        log_prob, entropy = self.head.log_prob_entropy(self.head(actor), action, mask, entropy)
        return log_prob, entropy, self.critic(critic).squeeze(-1)


def _probe_features(encoder: nn.Module, space: gym.Space) -> int:
    """Output width of a user encoder, found with one sample observation."""
    sample = space.sample()
    if isinstance(sample, dict):
        obs: Any = TensorDict(_to_tensors(sample), batch_size=[]).unsqueeze(0)
    else:
        obs = torch.as_tensor(np.asarray(sample)).unsqueeze(0)
    with torch.no_grad():
        out = encoder(obs)
    if out.ndim != 2:
        raise ValueError(f"a custom encoder must return [batch, features]; it returned shape {tuple(out.shape)}")
    return int(out.shape[1])


def _to_tensors(sample: Any) -> Any:
    if isinstance(sample, dict):
        return {k: _to_tensors(v) for k, v in sample.items()}
    return torch.as_tensor(np.asarray(sample))


NetworkFactory = Callable[[gym.Space, gym.Space], nn.Module]


def make_actor_critic(
    observation_space: gym.Space,
    action_space: gym.Space,
    network: nn.Module | NetworkFactory | None = None,
    hidden: tuple[int, ...] = (64, 64),
    normalize_observations: bool = False,
    log_std_init: float = 0.0,
) -> nn.Module:
    """The actor-critic for PPO/A2C. ``network`` may be a complete actor-critic module (with
    ``forward(td, deterministic, generator)``, ``get_value`` and ``evaluate_actions``), an encoder
    module (observations -> ``[B, F]`` features, wrapped with the heads here), or a factory
    ``(observation_space, action_space) -> module`` returning either. ``log_std_init``: the
    initial log std of the Gaussian head for Box actions."""
    if network is not None and not isinstance(network, nn.Module) and callable(network):
        network = network(observation_space, action_space)
    if network is not None and hasattr(network, "evaluate_actions"):
        return network
    return ActorCritic(observation_space, action_space, tuple(hidden), normalize_observations, encoder=network,
                       log_std_init=log_std_init)


class FlatParameters:
    """A module's parameters as views into one flat tensor, and their gradients as views into one
    flat gradient, so that zeroing, global-norm clipping and the optimizer step are one op each
    instead of one per parameter (for small networks on CPU these per-parameter ops cost as much
    as the network itself). Give ``[flat.param]`` to the optimizer.

    The module must not be moved (``.to``) afterwards: build it on its device first.

    :param module: the module whose parameters to flatten (all on one device, one dtype).
    """

    def __init__(self, module: nn.Module) -> None:
        self.params = [p for p in module.parameters() if p.requires_grad]
        first = self.params[0]
        if any(p.dtype != first.dtype or p.device != first.device for p in self.params):
            raise ValueError("FlatParameters needs every parameter on one device with one dtype")
        total = sum(p.numel() for p in self.params)
        flat = torch.zeros(total, dtype=first.dtype, device=first.device)
        self.grad = torch.zeros_like(flat)
        offset = 0
        self._grad_views = []
        for p in self.params:
            n = p.numel()
            flat[offset : offset + n].copy_(p.detach().reshape(-1))
            p.data = flat[offset : offset + n].view_as(p)
            self._grad_views.append(self.grad[offset : offset + n].view_as(p))
            offset += n
        self.param = nn.Parameter(flat)
        self.param.grad = self.grad
        self._attach()

    def _attach(self) -> None:
        for p, g in zip(self.params, self._grad_views):
            p.grad = g

    def zero_grad(self) -> None:
        """Zero every gradient (one op); re-attach gradient views that were set to None."""
        if self.params[0].grad is None or self.params[-1].grad is None:
            self._attach()
        self.grad.zero_()

    def clip_grad_norm_(self, max_norm: float) -> torch.Tensor:
        """Scale the gradients so that their global L2 norm is at most ``max_norm``."""
        norm = torch.linalg.vector_norm(self.grad)
        self.grad.mul_(torch.clamp(max_norm / (norm + 1e-6), max=1.0))
        return norm


# --------------------------------------------------------------------------------------------
# Off-policy networks: Q-values (DQN), fused twin critics and squashed-Gaussian actors (SAC)
# --------------------------------------------------------------------------------------------


def make_encoder(observation_space: gym.Space, encoder: nn.Module | None = None) -> nn.Module:
    """Observations -> ``[B, F]`` features: the raw float vector, a CNN for images, the multi-input
    encoder for nested dicts, or ``encoder`` (a user module; its width is probed if it has no
    ``out_dim``). The result has ``out_dim``."""
    if encoder is not None:
        if getattr(encoder, "out_dim", None) is None:
            encoder.out_dim = _probe_features(encoder, observation_space)
        return encoder
    kind = observation_kind(observation_space)
    if kind == "vector":
        return FlattenVector(observation_space)
    if kind == "image":
        return image_encoder(observation_space)
    if kind == "nested":
        return MultiInputEncoder(observation_space)
    raise TypeError(f"no encoder for {kind} observations ({observation_space}); adapt the env with AutoAdapt(env, agent)")


class QNetwork(nn.Module):
    """Q-values of every action of a ``Discrete(n)`` space: encoder, ReLU MLP, then a linear head or
    a dueling head (Wang et al. 2016: ``Q = V + A - mean(A)``). Vector observations go through
    the ``hidden`` MLP; images and nested observations use the encoder's features directly (the
    Nature CNN ends in its own 512-unit layer).

    Distributional DQN: with ``atoms > 1`` the output is ``[B, n, atoms]`` per action (quantiles
    for QR-DQN, logits over a fixed support for C51; the dueling combination is done per atom).
    ``noisy``: the MLP's and the head's linear layers are :class:`NoisyLinear` (the encoder's
    convolutions stay plain, as in Rainbow); draw their noise with :meth:`reset_noise`.

    :param observation_space: the adapted env's (single) observation space.
    :param n: number of actions.
    :param hidden: hidden layer sizes of the MLP over vector features.
    :param dueling: use a dueling head.
    :param encoder: optional user module mapping observations to ``[B, F]`` features.
    :param atoms: outputs per action (1: one Q-value).
    :param noisy: factorised-Gaussian noisy linear layers instead of plain ones.
    :param noisy_std: the noisy layers' initial noise scale ``sigma_0``.
    """

    def __init__(self, observation_space: gym.Space, n: int, hidden: tuple[int, ...] = (64, 64),
                 dueling: bool = False, encoder: nn.Module | None = None, atoms: int = 1,
                 noisy: bool = False, noisy_std: float = 0.5) -> None:
        super().__init__()
        self.encoder = make_encoder(observation_space, encoder)
        d = self.encoder.out_dim
        vector = encoder is None and observation_kind(observation_space) == "vector"
        self.n, self.atoms, self.noisy = n, atoms, noisy
        if noisy and vector and hidden:
            sizes = [d, *hidden]
            self.body = nn.Sequential(*(m for a, b in zip(sizes[:-1], sizes[1:])
                                        for m in (NoisyLinear(a, b, noisy_std), nn.ReLU())))
        else:
            self.body = mlp([d, *hidden], nn.ReLU) if vector and hidden else nn.Identity()
        features = hidden[-1] if vector and hidden else d
        self.dueling = dueling
        if noisy:
            self.head = NoisyLinear(features, n * atoms, noisy_std)
            self.value = NoisyLinear(features, atoms, noisy_std) if dueling else None
        else:
            self.head = layer_init(nn.Linear(features, n * atoms), 1.0)
            self.value = layer_init(nn.Linear(features, atoms), 1.0) if dueling else None
        # Vector observations: the same layers applied without nn.Module calls (a plain list, not
        # registered twice): a call costs several microseconds, the layers of CartPole about as much.
        self._linears = [m for m in self.body.modules() if isinstance(m, (nn.Linear, NoisyLinear))] if vector else None
        self._noisy = [m for m in self.modules() if isinstance(m, NoisyLinear)]

    def reset_noise(self, generator: torch.Generator | None = None) -> None:
        """Draw new noise for every noisy layer (nothing without ``noisy``)."""
        for layer in self._noisy:
            layer.reset_noise(generator)

    def _linear(self, layer: nn.Module, x: torch.Tensor, noise: bool) -> torch.Tensor:
        if self.noisy:
            return layer(x, noise)
        return F.linear(x, layer.weight, layer.bias)

    def forward(self, obs: torch.Tensor | TensorDictBase, noise: bool = True) -> torch.Tensor:
        """Q-values ``[B, n]`` (``[B, n, atoms]`` when ``atoms > 1``). ``noise``: False computes
        noisy layers with their mean weights (greedy acting); eval mode does so too."""
        if self._linears is not None:
            x = obs.reshape(obs.shape[0], -1)
            x = x if x.dtype == torch.float32 else x.float()
            for linear in self._linears:
                x = self._linear(linear, x, noise).relu_()
        else:
            x = self.body(self.encoder(obs))
        q = self._linear(self.head, x, noise)
        if self.atoms > 1:
            q = q.view(q.shape[0], self.n, self.atoms)
        if self.value is not None:
            value = self._linear(self.value, x, noise)
            value = value.unsqueeze(1) if self.atoms > 1 else value
            q = value + q - q.mean(1 if self.atoms > 1 else -1, keepdim=True)
        return q


class EnsembleLinear(nn.Module):
    """``k`` independent linear layers computed as one batched matmul (``torch.baddbmm``).

    Input ``[B, in]`` (shared by all members) or ``[k, B, in]``; output ``[k, B, out]``.
    Initialised like ``nn.Linear`` (uniform in ``±1/sqrt(in)``), member by member.
    """

    def __init__(self, k: int, in_features: int, out_features: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(k, in_features, out_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(k, 1, out_features).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2:
            x = x.expand(self.weight.shape[0], *x.shape)
        return torch.baddbmm(self.bias, x, self.weight)


class TwinQ(nn.Module):
    """Two critics fused into one network (SAC's clipped double Q): every layer computes both
    critics in one batched matmul. One encoder is shared by both (images: one CNN pass).

    Continuous actions: ``forward(obs, action) -> [2, B]``. Discrete actions (``action_dim=None``):
    ``forward(obs) -> [2, B, n]``, the Q-value of every action.

    :param observation_space: the adapted env's (single) observation space.
    :param n: number of actions (discrete) or the action dimension (continuous).
    :param continuous: the critic takes an action input.
    :param hidden: hidden layer sizes.
    :param encoder: optional user module mapping observations to ``[B, F]`` features.
    :param critics: how many critics (2: clipped double Q; 1: DDPG's single critic). The
        leading output dimension is this number.
    """

    def __init__(self, observation_space: gym.Space, n: int, continuous: bool,
                 hidden: tuple[int, ...] = (256, 256), encoder: nn.Module | None = None, critics: int = 2) -> None:
        super().__init__()
        self.encoder = make_encoder(observation_space, encoder)
        self.continuous = continuous
        sizes = [self.encoder.out_dim + (n if continuous else 0), *hidden, 1 if continuous else n]
        self.layers = nn.ModuleList(EnsembleLinear(critics, a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, obs: torch.Tensor | TensorDictBase, action: torch.Tensor | None = None,
                detach_params: bool = False) -> torch.Tensor:
        """Q-values ``[2, B]`` (continuous) or ``[2, B, n]`` (discrete). ``detach_params``: no
        gradient reaches the critics' parameters (gradients still flow into ``action``), for
        the actor's loss."""
        if detach_params:
            with torch.no_grad():
                x = self.encoder(obs)
        else:
            x = self.encoder(obs)
        if self.continuous:
            x = torch.cat([x, action], -1)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            w, b = (layer.weight.detach(), layer.bias.detach()) if detach_params else (layer.weight, layer.bias)
            x = torch.baddbmm(b, x if x.ndim == 3 else x.expand(w.shape[0], *x.shape), w)
            if i < last:
                x = x.relu()
        return x.squeeze(-1) if self.continuous else x


#: Bounds of the actor's log standard deviation (CleanRL/SpinningUp: squashed into [-5, 2]).
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
_LOG2 = math.log(2.0)


class SquashedGaussianActor(nn.Module):
    """SAC's policy for ``Box(-1, 1)`` actions: a Gaussian over pre-squash actions ``u``, then
    ``a = tanh(u)``. The log-probability carries the tanh change of variables,
    ``log pi(a) = log N(u) - sum log(1 - tanh(u)^2)``, written in the stable form
    ``2 * (log 2 - u - softplus(-2u))``.

    :param observation_space: the adapted env's (single) observation space.
    :param action_dim: action dimension.
    :param hidden: hidden layer sizes.
    :param encoder: optional user module mapping observations to ``[B, F]`` features.
    """

    def __init__(self, observation_space: gym.Space, action_dim: int, hidden: tuple[int, ...] = (256, 256),
                 encoder: nn.Module | None = None) -> None:
        super().__init__()
        self.encoder = make_encoder(observation_space, encoder)
        self.body = mlp([self.encoder.out_dim, *hidden], nn.ReLU)
        self.out = nn.Linear(hidden[-1], 2 * action_dim)
        self.dim = action_dim
        self._log_norm = 0.5 * math.log(2 * math.pi) * action_dim

    def forward(self, obs: torch.Tensor | TensorDictBase, deterministic: bool = False,
                generator: torch.Generator | None = None, noise: torch.Tensor | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(action, log_prob)``: a sample (the mean when ``deterministic``), squashed into [-1, 1].
        ``noise``: the unit Gaussian sample to use (e.g. colored exploration noise); None: drawn here."""
        mean, log_std = self.out(self.body(self.encoder(obs))).split(self.dim, -1)
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(log_std) + 1)
        if deterministic:
            u = mean
            noise_term = torch.zeros_like(mean)
        else:
            if noise is None:
                noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
            u = mean + noise * log_std.exp()
            noise_term = -0.5 * noise.pow(2)
        log_prob = (noise_term - log_std - 2 * (_LOG2 - u - nn.functional.softplus(-2 * u))).sum(-1) - self._log_norm
        return torch.tanh(u), log_prob


class CategoricalActor(nn.Module):
    """Logits of a categorical policy over ``Discrete(n)`` (discrete SAC): encoder, ReLU MLP, linear.
    Masking is the caller's (``logits.masked_fill(~mask, MASKED_LOGIT)``).

    :param observation_space: the adapted env's (single) observation space.
    :param n: number of actions.
    :param hidden: hidden layer sizes.
    :param encoder: optional user module mapping observations to ``[B, F]`` features.
    """

    def __init__(self, observation_space: gym.Space, n: int, hidden: tuple[int, ...] = (256, 256),
                 encoder: nn.Module | None = None) -> None:
        super().__init__()
        self.encoder = make_encoder(observation_space, encoder)
        self.body = mlp([self.encoder.out_dim, *hidden], nn.ReLU)
        self.out = layer_init(nn.Linear(hidden[-1], n), 0.01)

    def forward(self, obs: torch.Tensor | TensorDictBase) -> torch.Tensor:
        return self.out(self.body(self.encoder(obs)))


class DeterministicActor(nn.Module):
    """TD3's and DDPG's policy for ``Box(-1, 1)`` actions: encoder, ReLU MLP, linear, ``tanh``.

    :param observation_space: the adapted env's (single) observation space.
    :param action_dim: action dimension.
    :param hidden: hidden layer sizes.
    :param encoder: optional user module mapping observations to ``[B, F]`` features.
    """

    def __init__(self, observation_space: gym.Space, action_dim: int, hidden: tuple[int, ...] = (256, 256),
                 encoder: nn.Module | None = None) -> None:
        super().__init__()
        self.encoder = make_encoder(observation_space, encoder)
        self.body = mlp([self.encoder.out_dim, *hidden], nn.ReLU)
        self.out = nn.Linear(hidden[-1], action_dim)
        self.dim = action_dim

    def forward(self, obs: torch.Tensor | TensorDictBase) -> torch.Tensor:
        """Actions ``[B, action_dim]`` in [-1, 1]."""
        return torch.tanh(self.out(self.body(self.encoder(obs))))


class NoisyLinear(nn.Module):
    """A linear layer with learned factorised Gaussian noise on its weights (Fortunato et al. 2018,
    "Noisy Networks for Exploration"): ``y = (mu_w + sigma_w * eps_w) x + mu_b + sigma_b * eps_b``
    with ``eps_w = f(eps_out) f(eps_in)^T``, ``eps_b = f(eps_out)``, ``f(x) = sign(x) sqrt(|x|)``
    and ``eps_in``, ``eps_out`` unit Gaussians: ``in + out`` draws per layer instead of ``in * out``.

    The noise is a buffer, drawn anew by :meth:`reset_noise` (the agent does so before acting and
    before each gradient step) and fixed in between. In eval mode (``module.eval()``), or when
    called with ``noise=False``, the layer uses its mean weights ``mu`` only: deterministic.

    :param in_features: input size.
    :param out_features: output size.
    :param sigma0: initial noise scale; ``sigma`` starts at ``sigma0 / sqrt(in_features)``
        (the paper's 0.5).
    """

    def __init__(self, in_features: int, out_features: int, sigma0: float = 0.5) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)
        self.weight_mu = nn.Parameter(torch.empty(out_features, in_features).uniform_(-bound, bound))
        self.weight_sigma = nn.Parameter(torch.full((out_features, in_features), sigma0 * bound))
        self.bias_mu = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound))
        self.bias_sigma = nn.Parameter(torch.full((out_features,), sigma0 * bound))
        self.register_buffer("eps_in", torch.zeros(in_features))
        self.register_buffer("eps_out", torch.zeros(out_features))

    @staticmethod
    def _scaled(x: torch.Tensor) -> torch.Tensor:
        return x.sign() * x.abs().sqrt()

    @torch.no_grad()
    def reset_noise(self, generator: torch.Generator | None = None) -> None:
        """Draw new factorised noise (in place, so target copies and flat views stay valid).

        :param generator: the agent's generator (runs stay reproducible).
        """
        device = self.eps_in.device
        self.eps_in.copy_(self._scaled(torch.randn(self.eps_in.shape, generator=generator, device=device)))
        self.eps_out.copy_(self._scaled(torch.randn(self.eps_out.shape, generator=generator, device=device)))

    def forward(self, x: torch.Tensor, noise: bool = True) -> torch.Tensor:
        if not (noise and self.training):
            return F.linear(x, self.weight_mu, self.bias_mu)
        weight = self.weight_mu + self.weight_sigma * torch.outer(self.eps_out, self.eps_in)
        return F.linear(x, weight, self.bias_mu + self.bias_sigma * self.eps_out)


def frozen_copy(module: nn.Module) -> tuple[nn.Module, torch.Tensor]:
    """A target network: a copy of ``module`` that takes no gradients, with its parameters as
    views into one flat tensor (returned), so that a hard update (``flat.copy_(source)``) or a
    Polyak update (``flat.lerp_(source, tau)``) is a single op against the source's
    :class:`FlatParameters` ``param``. Call before flattening ``module`` itself."""
    import copy

    target = copy.deepcopy(module)
    flat = FlatParameters(target).param.detach()
    target.requires_grad_(False)
    return target, flat
