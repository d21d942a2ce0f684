"""The recurrent actor-critic of ``PPO(recurrent="lstm")`` / ``A2C(recurrent="gru")``: the built-in
encoder (MLP input, CNN or multi-input, or your own), then an LSTM or GRU core, then the MLPs and
the action head of :mod:`rladapt.agents.nets` (any action kind, masks included).

As in sb3-contrib's ``RecurrentPPO`` (``enable_critic_lstm=True``, ``shared_lstm=False``), the actor
and the critic each have their own recurrent core, so the value loss does not move the policy's
memory; the two are computed side by side (:class:`PairedCore`: one matmul for both cores' input
projections over a whole sequence, one batched matmul per step for the recurrences). The hidden
state of both cores is one tensor per env, ``recurrent_state`` of shape ``[2 * parts, hidden]``
(LSTM: actor h, critic h, actor c, critic c; GRU: actor h, critic h),
carried by the collectors with the envs (``Agent.state_specs``) and zeroed where ``is_init`` marks an
episode start: after ``reset``, after every NEXT_STEP autoreset. Acting reads ``recurrent_state``
(and ``is_init``) and writes ``("next", "recurrent_state")``.

Updates replay sequences (:meth:`RecurrentActorCritic.evaluate_actions` on a ``[L, K]`` TensorDict of
``K`` chunks of ``L`` consecutive steps, from :meth:`rladapt.buffers.rollout.RolloutBuffer.sequences`):
each chunk starts from the state stored at its first row and resets where ``is_init`` is set inside
it, exactly as collection did, so with the collection's weights it recomputes the stored states,
log-probabilities and values.
"""

from __future__ import annotations

import math

import gymnasium as gym
import torch
from tensordict import TensorDictBase
from torch import nn

from rladapt.agents.nets import (FlattenVector, MultiInputEncoder, ObservationStats, action_head, layer_init, make_encoder,
                                 mlp)
from rladapt.spaces import observation_kind

__all__ = ["CORES", "STATE_KEY", "PairedCore", "RecurrentActorCritic", "state_shape"]

#: The key of the hidden state in batches and acting TensorDicts.
STATE_KEY = "recurrent_state"
#: The recurrent cores, by ``recurrent=`` name: ``(gates, tensors of the state)``: LSTM 4 gates, h
#: and c; GRU 3 gates, h.
CORES: dict[str, tuple[int, int]] = {"lstm": (4, 2), "gru": (3, 1)}


def state_shape(core: str, hidden: int) -> tuple[int, int]:
    """The per-env shape of ``recurrent_state``: ``(2 * parts, hidden)`` (actor and critic cores)."""
    if core not in CORES:
        raise ValueError(f"recurrent={core!r} is not a recurrent core; use one of {sorted(CORES)} (or None)")
    return 2 * CORES[core][1], hidden


class PairedCore(nn.Module):
    """Two LSTM or GRU cells (the actor's and the critic's, same sizes, separate weights) computed
    side by side, as :class:`~rladapt.agents.nets.DualMLP` does for MLPs: the input projections of
    both are one ``Linear`` (applied to a whole sequence at once in a replay), the recurrences one
    batched matmul per step. The equations are PyTorch's ``LSTMCell`` / ``GRUCell`` (gates
    reordered), with their uniform initialisation: small networks on CPU are bound by per-op
    overhead, so half the ops is about half the time.

    :param core: ``"lstm"`` or ``"gru"``.
    :param in_dim: input features.
    :param hidden: units of each cell.
    """

    def __init__(self, core: str, in_dim: int, hidden: int) -> None:
        super().__init__()
        self.gates, self.parts = CORES[core]
        self.hidden = hidden
        width = self.gates * hidden
        self.inputs_linear = nn.Linear(in_dim, 2 * width)
        self.recurrent_weight = nn.Parameter(torch.empty(2, hidden, width))
        self.recurrent_bias = nn.Parameter(torch.empty(2, 1, width))
        bound = 1.0 / math.sqrt(hidden)
        for param in self.parameters():
            nn.init.uniform_(param, -bound, bound)

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """Input projections ``[2, B, gates * hidden]`` of features ``[B, F]`` (actor, critic)."""
        return self.inputs_linear(x).view(x.shape[0], 2, -1).transpose(0, 1)

    def recur(self, projected: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One step of both cells: ``projected`` ``[2, B, gates * H]`` from :meth:`inputs`, ``h``
        (and ``c``) ``[2, B, H]``; returns the new ``h`` (and ``c``)."""
        H = self.hidden
        recurrent = torch.baddbmm(self.recurrent_bias, h, self.recurrent_weight)
        if self.parts == 2:  # LSTM, gates (input, forget, output | candidate)
            gates = projected + recurrent
            ifo = torch.sigmoid(gates[..., : 3 * H])
            c = ifo[..., H : 2 * H] * c + ifo[..., :H] * torch.tanh(gates[..., 3 * H :])
            return ifo[..., 2 * H :] * torch.tanh(c), c
        # GRU, gates (reset, update | new); the reset gate scales the recurrent part of "new" only
        rz = torch.sigmoid(projected[..., : 2 * H] + recurrent[..., : 2 * H])
        new = torch.tanh(projected[..., 2 * H :] + rz[..., :H] * recurrent[..., 2 * H :])
        return new + rz[..., H:] * (h - new), None

    def unpack(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``recurrent_state`` ``[B, 2 * parts, H]`` -> ``h`` (and ``c``) ``[2, B, H]``."""
        h = state[:, :2].transpose(0, 1)
        return h, (state[:, 2:].transpose(0, 1) if self.parts == 2 else None)

    @staticmethod
    def pack(h: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        """``h`` (and ``c``) ``[2, B, H]`` -> ``recurrent_state`` ``[B, 2 * parts, H]``."""
        return (h if c is None else torch.cat([h, c])).transpose(0, 1)


class RecurrentActorCritic(ObservationStats, nn.Module):
    """Encoder, an actor and a critic recurrent core, MLPs and heads (see the module docstring).

    :param observation_space: the adapted env's (single) observation space.
    :param action_space: the adapted env's (single) action space.
    :param core: ``"lstm"`` or ``"gru"``.
    :param recurrent_hidden: units of each recurrent core.
    :param hidden: hidden layer sizes of the actor and critic MLPs after the cores (``()``: heads
        straight on the cores' outputs).
    :param normalize_observations: standardise float vector observations with running statistics.
    :param encoder: optional user module mapping observations to ``[B, F]`` features.
    :param log_std_init: Box actions: the initial log standard deviation of the Gaussian policy.
    """

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, core: str = "lstm",
                 recurrent_hidden: int = 64, hidden: tuple[int, ...] = (64,), normalize_observations: bool = False,
                 encoder: nn.Module | None = None, log_std_init: float = 0.0) -> None:
        super().__init__()
        self.core, self.recurrent_hidden = core, int(recurrent_hidden)
        self.state_shape = state_shape(core, self.recurrent_hidden)
        kind = observation_kind(observation_space) if encoder is None else "custom"
        if kind == "vector":
            self.encoder: nn.Module = FlattenVector(observation_space, normalize_observations)
        elif kind == "nested":
            self.encoder = MultiInputEncoder(observation_space, normalize_observations)
        elif kind in ("image", "custom"):
            self.encoder = make_encoder(observation_space, encoder)
        else:
            raise TypeError("PPO/A2C need vector or image observations; AutoAdapt one-hot encodes Discrete ones")
        features = self.encoder.out_dim
        self.cores = PairedCore(core, features, self.recurrent_hidden)
        sizes = [self.recurrent_hidden, *hidden]
        self.actor_mlp = mlp(sizes) if hidden else nn.Identity()
        self.critic_mlp = mlp(sizes) if hidden else nn.Identity()
        self.head = action_head(sizes[-1], action_space, log_std_init)
        self.critic = layer_init(nn.Linear(sizes[-1], 1), 1.0)



    def initial_state(self, batch: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """The state at an episode start, ``[batch, *state_shape]`` zeros."""
        return torch.zeros((batch, *self.state_shape), device=device)

    # -- one step ----------------------------------------------------------------------------
    def step(self, features: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Both cores one step from ``state`` ``[B, *state_shape]``: ``(actor output, critic
        output, new state)``."""
        h, c = self.cores.unpack(state)
        h, c = self.cores.recur(self.cores.inputs(features), h, c)
        return h[0], h[1], self.cores.pack(h, c)

    @staticmethod
    def reset(state: torch.Tensor, is_init: torch.Tensor | None) -> torch.Tensor:
        """``state`` with the rows where ``is_init`` is True zeroed (an episode starts there)."""
        if is_init is None:
            return state
        return state * (~is_init).to(state.dtype).view(-1, *([1] * (state.ndim - 1)))

    def get_value(self, obs: torch.Tensor | TensorDictBase, state: torch.Tensor) -> torch.Tensor:
        """``V(obs)`` ``[B]`` from the state the step starts from (the bootstrap of a rollout)."""
        _, critic, _ = self.step(self.encoder(obs), state)
        return self.critic(self.critic_mlp(critic)).squeeze(-1)

    def forward(self, td: TensorDictBase, deterministic: bool = False,
                generator: torch.Generator | None = None, noise: torch.Tensor | None = None) -> TensorDictBase:
        """Act: read ``observation``, ``recurrent_state`` (and ``is_init``, ``action_mask``); write
        ``action``, ``log_prob``, ``value`` and ``("next", "recurrent_state")``."""
        state = self.reset(td.get(STATE_KEY), td.get("is_init", None))
        actor, critic, new_state = self.step(self.encoder(td.get("observation")), state)
        head_input = (self.head(self.actor_mlp(actor)), td.get("action_mask", None), deterministic, generator)
        action, log_prob = self.head.sample(*head_input) if noise is None else self.head.sample(*head_input, noise=noise)
        td.set("action", action)
        td.set("log_prob", log_prob)
        td.set("value", self.critic(self.critic_mlp(critic)).squeeze(-1))
        td.set(("next", STATE_KEY), new_state)
        return td

    # -- sequences ---------------------------------------------------------------------------
    def replay(self, sequences: TensorDictBase, states: bool = False
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Run ``K`` chunks of ``L`` steps (a ``[L, K]`` TensorDict with ``observation``,
        ``is_init`` and ``recurrent_state``, whose first row starts each chunk): ``(actor outputs,
        critic outputs, states)``: ``[L * K, H]`` each in the order of the flattened chunks, and
        when ``states`` the state each step started from ``[L, K, *state_shape]`` (else None)."""
        L, K = sequences.batch_size
        obs = sequences.get("observation")
        features = self.encoder(obs.reshape(L * K, *obs.shape[2:]) if isinstance(obs, torch.Tensor) else obs.reshape(-1))
        projected = self.cores.inputs(features).reshape(2, L, K, -1)  # every step's input projection at once
        keep = (~sequences.get("is_init")).to(features.dtype).view(L, 1, K, 1)
        h, c = self.cores.unpack(sequences.get(STATE_KEY)[0])
        outputs, started = [], []
        for t in range(L):
            h = h * keep[t]  # an episode starts here: from zeros, as collection did
            c = None if c is None else c * keep[t]
            if states:
                started.append(self.cores.pack(h, c))
            h, c = self.cores.recur(projected[:, t], h, c)
            outputs.append(h)
        out = torch.stack(outputs, 1).reshape(2, L * K, -1)
        return out[0], out[1], torch.stack(started) if states else None

    def evaluate_actions(self, sequences: TensorDictBase, action: torch.Tensor, mask: torch.Tensor | None = None,
                         entropy: bool = True) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """``(log_prob, entropy, value)`` of the stored actions of ``[L, K]`` sequence chunks
        under the current parameters, for the valid rows only (``sequences["valid"]``), flattened
        in the order of ``sequences[valid]``.

        :param sequences: the chunks (see :meth:`replay`), with ``valid``.
        :param action: their actions ``[L, K, ...]``.
        :param mask: their action masks ``[L, K, n]``, or None.
        :param entropy: compute the entropy (None otherwise).
        """
        L, K = sequences.batch_size
        actor, critic, _ = self.replay(sequences)
        flat_action = action.reshape(L * K, *action.shape[2:])
        flat_mask = None if mask is None else mask.reshape(L * K, *mask.shape[2:])
        log_prob, ent = self.head.log_prob_entropy(self.head(self.actor_mlp(actor)), flat_action, flat_mask, entropy)
        value = self.critic(self.critic_mlp(critic)).squeeze(-1)
        valid = sequences.get("valid").reshape(-1)
        return log_prob[valid], None if ent is None else ent[valid], value[valid]

    def extra_repr(self) -> str:
        return f"core={self.core}, recurrent_hidden={self.recurrent_hidden}"
