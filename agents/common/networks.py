"""Actor and critic networks: MLPs with a diagonal-Gaussian or categorical head.

Initialisation follows Stable-Baselines3's on-policy defaults (orthogonal weights, gain √2 in
hidden layers, 0.01 for the action head, 1 for the value head, zero biases), so that runs
compare with SB3 runs at equal hyperparameters.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical, Distribution, Independent, Normal

from agents.common import fast_mlp

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}


@dataclass(kw_only=True, frozen=True)
class PolicyConfig:
    """Network shape and initialisation, shared by every agent.

    Attributes:
        pi: hidden sizes of the actor.
        vf: hidden sizes of the critic.
        activation: one of ``ACTIVATIONS``.
        log_std_init: initial log standard deviation of a Gaussian policy.
        ortho_init: orthogonal initialisation as in SB3 (else PyTorch's default).
    """

    pi: tuple[int, ...] = (64, 64)
    vf: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    log_std_init: float = 0.0
    ortho_init: bool = True

    def __post_init__(self) -> None:
        for name in ("pi", "vf"):
            sizes = getattr(self, name)
            if not isinstance(sizes, tuple) or not all(
                isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in sizes
            ):
                raise ValueError(f"policy {name} must be a list of layer sizes >= 1, got {sizes!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"policy activation must be one of {', '.join(ACTIVATIONS)}, "
                f"got {self.activation!r}"
            )
        if not math.isfinite(self.log_std_init):
            raise ValueError(f"policy log_std_init must be finite, got {self.log_std_init!r}")


def mlp(sizes: tuple[int, ...], activation: str, out_gain: float, ortho: bool) -> nn.Sequential:
    """Linear layers of ``sizes`` with ``activation`` between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        linear = nn.Linear(n_in, n_out)
        last = i == len(sizes) - 2
        if ortho:
            nn.init.orthogonal_(linear.weight, gain=out_gain if last else math.sqrt(2))
            nn.init.zeros_(linear.bias)
        layers.append(linear)
        if not last:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class _FastMean(nn.Module):
    """Evaluates ``self.net`` through :mod:`fast_mlp` when it is a Linear/Tanh/ReLU stack.

    Acting happens once per environment step, where per-module call overhead dominates the
    arithmetic; the output is the same function of the same parameters.
    """

    net: nn.Sequential

    def _net_output(self, obs: torch.Tensor) -> torch.Tensor:
        layers = self.__dict__.get("_layers", False)
        if layers is False:
            layers = self.__dict__["_layers"] = fast_mlp.as_layers(self.net)
        return self.net(obs) if layers is None else fast_mlp.forward(layers, obs)[0]

    def _numpy_net(self) -> Callable[[np.ndarray], np.ndarray] | None:
        """The net as a NumPy function of a snapshot of the current weights, if supported."""
        layers = fast_mlp.as_layers(self.net)
        if layers is None or any(p.device.type != "cpu" for p in self.parameters()):
            return None
        return fast_mlp.numpy_forward(layers)

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        self.__dict__.pop("_layers", None)  # .to() / .double() may swap parameter tensors
        return super()._apply(fn, recurse)


class GaussianActor(_FastMean):
    """``π(a|s) = N(μ_θ(s), diag(exp(2·log_std)))`` with a state-independent ``log_std``."""

    def __init__(self, obs_dim: int, act_dim: int, config: PolicyConfig):
        super().__init__()
        self.net = mlp((obs_dim, *config.pi, act_dim), config.activation, 0.01, config.ortho_init)
        self.log_std = nn.Parameter(torch.full((act_dim,), float(config.log_std_init)))
        self.act_dim = act_dim

    def forward(self, obs: torch.Tensor) -> Distribution:
        """``obs: (B, obs_dim)`` → ``Independent(Normal)`` of batch shape ``(B,)``."""
        mean = self.net(obs)
        normal = Normal(mean, self.log_std.exp().expand_as(mean), validate_args=False)
        return Independent(normal, 1, validate_args=False)

    def noise(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        """Standard-normal draws for ``shape`` steps, ``(*shape, act_dim)``."""
        return torch.randn(*shape, self.act_dim, generator=generator)

    def numpy_sampler(self) -> Callable[[np.ndarray, np.ndarray], np.ndarray] | None:
        """``(obs, noise) ↦ μ + σ·noise`` in NumPy on a snapshot of the weights, or None.

        Used during a rollout, when the weights are fixed: a NumPy call on two rows costs a
        fraction of a torch call, and the result is the same function up to float32 rounding.
        """
        net = self._numpy_net()
        if net is None:
            return None
        std = self.log_std.detach().exp().numpy().copy()
        return lambda obs, noise: net(obs) + std * noise

    def act(self, obs: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        """Actions for ``obs: (B, obs_dim)``: ``μ + σ·noise``, or the mean when noise is None."""
        mean = self._net_output(obs)
        return mean if noise is None else torch.addcmul(mean, self.log_std.exp(), noise)


class CategoricalActor(_FastMean):
    """``π(a|s) = softmax(logits_θ(s))`` over a discrete action set."""

    def __init__(self, obs_dim: int, n_actions: int, config: PolicyConfig):
        super().__init__()
        self.net = mlp((obs_dim, *config.pi, n_actions), config.activation, 0.01, config.ortho_init)

    def forward(self, obs: torch.Tensor) -> Distribution:
        """``obs: (B, obs_dim)`` → ``Categorical`` of batch shape ``(B,)``."""
        return Categorical(logits=self.net(obs), validate_args=False)

    def noise(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        """Uniform draws for inverse-CDF sampling, ``(*shape, 1)``."""
        return torch.rand(*shape, 1, generator=generator)

    def numpy_sampler(self) -> Callable[[np.ndarray, np.ndarray], np.ndarray] | None:
        """``(obs, uniform) ↦`` inverse-CDF samples in NumPy on a snapshot of the weights."""
        net = self._numpy_net()
        if net is None:
            return None
        last = self.net[-1].out_features - 1

        def sample(obs: np.ndarray, uniform: np.ndarray) -> np.ndarray:
            logits = net(obs)
            probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
            cdf = np.cumsum(probs / probs.sum(axis=-1, keepdims=True), axis=-1)
            return np.minimum((cdf < uniform).sum(axis=-1), last)

        return sample

    def act(self, obs: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        """Actions ``(B,)``: inverse-CDF samples from ``noise``, or the mode when it is None."""
        logits = self._net_output(obs)
        if noise is None:
            return logits.argmax(dim=-1)
        cdf = logits.softmax(dim=-1).cumsum(dim=-1)
        return (cdf < noise).sum(dim=-1).clamp_max(logits.shape[-1] - 1)


Actor = GaussianActor | CategoricalActor


def policy_std(actor: Actor) -> float:
    """The mean standard deviation of a Gaussian actor; NaN for other heads."""
    log_std = getattr(actor, "log_std", None)
    return float(log_std.detach().exp().mean()) if log_std is not None else float("nan")


class Critic(nn.Module):
    """State-value function ``V_φ(s)``."""

    def __init__(self, obs_dim: int, config: PolicyConfig):
        super().__init__()
        self.net = mlp((obs_dim, *config.vf, 1), config.activation, 1.0, config.ortho_init)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """``obs: (B, obs_dim)`` → values ``(B,)``."""
        return self.net(obs).squeeze(-1)


def make_actor(obs_space: gym.Space, act_space: gym.Space, config: PolicyConfig) -> Actor:
    """The actor for a flat ``Box`` observation space and a ``Box`` or ``Discrete`` action space.

    Raises:
        TypeError: for spaces other than those.
    """
    obs_dim = flat_obs_dim(obs_space)
    if isinstance(act_space, gym.spaces.Box):
        return GaussianActor(obs_dim, int(math.prod(act_space.shape)), config)
    if isinstance(act_space, gym.spaces.Discrete):
        return CategoricalActor(obs_dim, int(act_space.n), config)
    raise TypeError(
        f"action space {type(act_space).__name__} is not supported; use Box or Discrete actions"
    )


def flat_obs_dim(obs_space: gym.Space) -> int:
    """The length of a flat ``Box`` observation."""
    if not isinstance(obs_space, gym.spaces.Box):
        raise TypeError(
            f"observation space {type(obs_space).__name__} is not supported; use a flat Box "
            "(wrap the env in gymnasium.wrappers.FlattenObservation)"
        )
    return int(math.prod(obs_space.shape))
