"""The allowed values of what users pass in: agent settings, by name (one definition for every
agent's ``Config``), and the counts ``learn``/``evaluate`` take.

Checked when an agent is constructed (``PPO(gamma=2.0)`` raises at once, naming the setting and
its range), so a bad value never reaches a run directory. A setting left at None is the per-kind
default and is not checked here. The rules apply to the settings rladapt's own configs declare
(a custom agent's ``Config`` inherits them); fields a custom ``Config`` declares itself are its
own to check, in a ``__post_init__`` that calls ``super().__post_init__()``.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Rule", "SETTING_RULES", "check_settings", "positive_int"]


@dataclass(frozen=True)
class Rule:
    """What one setting accepts.

    :param kind: ``"int"``, ``"float"`` (an int is accepted), ``"bool"`` or ``"choice"`` (only the
        ``also`` values; any other string is a wrong value, anything else a wrong type).
    :param low: the smallest allowed value (None: unbounded).
    :param high: the largest allowed value (None: unbounded).
    :param low_open: ``low`` itself is excluded.
    :param also: other values accepted as they are (e.g. ``"auto"``).
    """

    kind: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    also: tuple[Any, ...] = ()

    def describe(self) -> str:
        if self.kind == "choice":
            return "one of " + ", ".join(repr(value) for value in self.also)
        kinds = {"int": "an integer", "float": "a number", "bool": "True or False"}[self.kind]
        if self.low is not None and self.high is not None:
            where = f" in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"
        elif self.low is not None:
            where = f" {'>' if self.low_open else '>='} {self.low:g}"
        else:
            where = ""
        extra = "".join(f" or {value!r}" for value in self.also)
        return f"{kinds}{where}{extra}"

    def has_type(self, value: Any) -> bool:
        """Whether ``value`` is of the rule's kind (a bool is not a number), or of the type of
        one of the ``also`` values (``"sometimes"`` for ``"auto"``: a wrong value, not a wrong type)."""
        if any(type(value) is type(other) for other in self.also):
            return True
        if self.kind == "choice":
            return False
        if self.kind == "bool":
            return isinstance(value, (bool, np.bool_))
        number = numbers.Integral if self.kind == "int" else numbers.Real
        return isinstance(value, number) and not isinstance(value, (bool, np.bool_))

    def accepts(self, value: Any) -> bool:
        if any(value == other and type(value) is type(other) for other in self.also):
            return True
        if not self.has_type(value) or isinstance(value, str) or self.kind == "choice":  # not among ``also``
            return False
        if self.kind == "bool":
            return True
        if math.isnan(value):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or value <= self.high


_COUNT = Rule("int", 1)
_FRACTION = Rule("float", 0.0, 1.0)
_POSITIVE = Rule("float", 0.0, low_open=True)
_NON_NEGATIVE = Rule("float", 0.0)
_SWITCH = Rule("bool")

#: Every built-in setting's rule, by name (settings of the same name mean the same everywhere).
SETTING_RULES: dict[str, Rule] = {
    "seed": Rule("int", 0),
    "num_threads": _COUNT, "num_envs": _COUNT, "n_steps": _COUNT, "batch_size": _COUNT, "n_epochs": _COUNT,
    "train_freq": _COUNT, "gradient_steps": _COUNT, "buffer_size": _COUNT, "n_step": _COUNT,
    "target_update_interval": _COUNT, "learning_starts": Rule("int", 0),
    "gamma": _FRACTION, "gae_lambda": _FRACTION, "alpha": _FRACTION, "beta": _FRACTION,
    "exploration_initial_eps": _FRACTION, "exploration_final_eps": _FRACTION, "exploration_fraction": _FRACTION,
    "tau": Rule("float", 0.0, 1.0, low_open=True),
    "lr": _POSITIVE, "clip_range": _POSITIVE, "max_grad_norm": _POSITIVE, "target_kl": _POSITIVE,
    "temperature": _POSITIVE, "ent_coef_init": _POSITIVE, "target_entropy_scale": _POSITIVE,
    "ent_coef": Rule("float", 0.0, also=("auto",)), "vf_coef": _NON_NEGATIVE, "final_lr": _NON_NEGATIVE,
    "noise_beta": Rule("float", 0.0, 2.0), "log_std_init": Rule("float", -20.0, 2.0),
    "normalize_observations": _SWITCH, "normalize_rewards": _SWITCH, "fast": _SWITCH, "anneal_clip": _SWITCH,
    "clip_value": _SWITCH, "anneal_lr": _SWITCH, "normalize_advantage": _SWITCH, "rms_prop": _SWITCH,
    "double": _SWITCH, "dueling": _SWITCH, "huber": _SWITCH, "frame_dedup": _SWITCH, "check_finite": _SWITCH,
    # search (MCTS, AlphaZero)
    "simulations": _COUNT, "eval_simulations": _COUNT, "games_per_iteration": _COUNT, "replay_size": _COUNT,
    "temperature_moves": Rule("int", 0), "c_uct": _POSITIVE, "c_puct": _POSITIVE, "dirichlet_alpha": _POSITIVE,
    "dirichlet_fraction": _FRACTION, "weight_decay": _NON_NEGATIVE, "value_weight": _NON_NEGATIVE,
    "recurrent": Rule("choice", also=("lstm", "gru")), "recurrent_hidden": _COUNT, "sequence_length": _COUNT,
    "rho_bar": _POSITIVE, "c_bar": _POSITIVE, "lock": _SWITCH, "max_update_lag": Rule("int", 0),
    # Distributional DQN and noisy layers (DQN, QRDQN, C51, Rainbow); TD3 and DDPG.
    "distributional": Rule("choice", also=("qr", "c51")), "quantiles": _COUNT, "atoms": Rule("int", 2),
    "v_min": Rule("float"), "v_max": Rule("float"), "kappa": _POSITIVE, "noisy": _SWITCH, "noisy_std": _POSITIVE,
    "policy_delay": _COUNT, "critics": _COUNT, "action_noise": _NON_NEGATIVE, "target_policy_noise": _NON_NEGATIVE,
    "target_noise_clip": _NON_NEGATIVE,
    # Dreamer
    "deter": _COUNT, "stoch": _COUNT, "classes": Rule("int", 2), "units": _COUNT, "layers": _COUNT,
    "unimix": Rule("float", 0.0, 1.0, low_open=False), "free_bits": _NON_NEGATIVE, "dyn_scale": _NON_NEGATIVE,
    "rep_scale": _NON_NEGATIVE, "bins": Rule("int", 2), "horizon": _COUNT, "return_lambda": _FRACTION,
    "actor_entropy": _NON_NEGATIVE, "model_lr": _POSITIVE, "actor_lr": _POSITIVE, "critic_lr": _POSITIVE,
    "slow_critic_decay": _FRACTION, "slow_critic_weight": _NON_NEGATIVE, "return_norm_decay": _FRACTION,
}


def check_settings(config: Any) -> None:
    """Raise ``ValueError`` (a wrong value) or ``TypeError`` (a wrong type) for the first setting
    of ``config`` (an agent's ``Config`` dataclass) outside its rule, naming the setting, the value
    and what it accepts.

    :param config: the settings dataclass.
    """
    owner = type(config).__name__.removesuffix("Config") or "agent"
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if value is None or not _declared_by_rladapt(type(config), field.name):
            continue
        if field.name == "hidden":
            _check_hidden(owner, value)
            continue
        rule = SETTING_RULES.get(field.name)
        if rule is None or rule.accepts(value):
            continue
        error = ValueError if rule.has_type(value) else TypeError
        raise error(f"{owner}({field.name}={value!r}): {field.name} must be {rule.describe()}")


def _declared_by_rladapt(cls: type, name: str) -> bool:
    """Whether the setting ``name`` means what rladapt's rule says: it is declared by one of
    rladapt's own configs, not (re)declared by a custom agent's ``Config`` (which may use the name
    for something else, e.g. ``hidden: int``)."""
    for klass in cls.__mro__:
        if name in vars(klass).get("__annotations__", {}):
            return klass.__module__.split(".")[0] == "rladapt"
    return False


def _check_hidden(owner: str, value: Any) -> None:
    sizes = list(value) if isinstance(value, (list, tuple)) else None
    if sizes is None or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) and s > 0 for s in sizes):
        raise ValueError(f"{owner}(hidden={value!r}): hidden must be a tuple of positive layer sizes, e.g. (64, 64)")


def positive_int(name: str, value: Any) -> int:
    """``value`` as an int >= 1, or a ``TypeError``/``ValueError`` naming ``name``. A float with
    an integral value is accepted (``learn(env, 1e5)``).

    :param name: the argument's name, for the message.
    :param value: what the user passed.
    """
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive integer, got {value!r} ({type(value).__name__})")
    if value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value}")
    return int(value)
