"""K-FAC: Kronecker-factored approximate curvature (Martens & Grosse 2015; Grosse & Martens 2016
for convolutions; Ba et al. 2017 and Wu et al. 2017 (ACKTR) for the KL trust region).

Each ``nn.Linear`` / ``nn.Conv2d`` layer ``y = W̄ ā`` (``W̄ = [W, b]: (out, d+1)``,
``ā = [a; 1]``) gets the Fisher block ``A ⊗ G`` (see :mod:`rl_ig.optim.kfac_layers` for how
``A`` and ``G`` are read), and its update direction is, with column-major ``vec`` and damping λ,

    Δ = F̂⁻¹ vec(∇W̄ + wd·W̄),   F̂ = A ⊗ G + λI          (damping_mode="exact")
                               F̂ = (A + π√λ I) ⊗ (G + √λ/π I)   (damping_mode="factored")

applied in the eigenbases of ``A`` and ``G`` (exact damping) or as ``(G + √λ/π I)⁻¹ V̄
(A + π√λ I)⁻¹`` with the two inverses from Cholesky factorisations (factored damping; see
:mod:`rl_ig.optim.kronecker`). The remaining
("other") trainable parameters take ``Δ = g + wd·θ``, or ``Δ = (g + wd·θ)/c`` when
``diag_fisher`` gives them the Fisher block ``c·I``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, overload

import torch
from torch import nn
from torch.optim import Optimizer

from rl_ig.distributed import all_reduce_scalars, check_backend
from rl_ig.optim.kfac_capture import FactorCapture
from rl_ig.optim.kfac_config import KFACConfig, build_param_groups, check_diag_fisher
from rl_ig.optim.kfac_distributed import (
    Decomposition,
    EighTask,
    InverseTask,
    decompose,
    shared_batch_factors,
)
from rl_ig.optim.kfac_layers import KFACLayer, find_layers
from rl_ig.optim.kronecker import (
    Eigen,
    EigenMetric,
    FactoredMetric,
    all_finite,
    exact_scale,
    factored_shifts,
    running_average,
)

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

_FACTOR_KEYS = ("A", "G", "QA", "dA", "QG", "dG", "RA", "RG", "iA", "iG")
Metric = EigenMetric | FactoredMetric


@dataclass
class _Direction:
    """One group's preconditioned direction ``Δ`` and what the trust region and ρ need."""

    group: dict[str, Any]
    params: list[torch.Tensor]
    deltas: list[torch.Tensor]
    dot: float  # Σ Δ·(g + wd·θ) = Δᵀ F̂ Δ
    kfac: tuple[KFACLayer, Metric] | None = None
    diag: list[float] = field(default_factory=list)  # per-param c of the "other" metric c·I


class KFAC(Optimizer):
    r"""K-FAC natural-gradient optimizer over a model's ``nn.Linear`` and ``nn.Conv2d`` layers.

    With momentum 0, no weight decay and no KL clip, one step on a layer is
    ``W̄ ← W̄ − lr · F̂⁻¹ vec(∇W̄)``; the update of a step is, per parameter,

        ν = min(1, sqrt(2·kl_clip / (lr² · Σ Δ·g)))      (1 without kl_clip)
        buf ← momentum·buf + ν·Δ,   θ ← θ − lr·buf

    where ``Σ Δ·g`` runs over all parameters (``g`` including weight decay). Since
    ``Δ = F̂⁻¹g``, ``Σ Δ·g = ΔᵀF̂Δ``, and ``predicted_kl = ½·(ν·lr)²·ΣΔ·g ≤ kl_clip`` is the KL of
    the quadratic model. "Other" parameters enter it with the identity metric (``Δ·g = g·g``),
    or with ``c·I`` when listed in ``diag_fisher`` (``Δ·g = g·g/c``). With several groups,
    ``lr²`` is each group's own and ``kl_clip`` the smallest one set.

    Factors are running averages ``X ← factor_decay·X + (1 − factor_decay)·X_batch`` (the first
    update sets ``X = X_batch``), updated every ``factor_update_freq`` steps from the batch
    statistics recorded since the last step; eigenbases are recomputed every
    ``inverse_update_freq`` steps (and at the first step), in float32 (float64 for a float64
    model), retried in float64 with ``10·damping`` added if ``eigh`` fails, and otherwise kept
    from the last success. With factored damping the two damped factors are inverted by
    Cholesky instead (several times faster than ``eigh``), at the same steps and whenever the
    damping has changed (then from the factors of the last refresh), with the same retry and
    fallback. A layer with no usable eigenbasis (or inverses) or a non-finite direction is not
    updated that step (counted in ``last_step_info["skipped_layers"]``).

    Capture. The loss must be a mean over the batch (see :mod:`rl_ig.optim.kfac_layers`).
    ``capture="auto"``: statistics come from the last forward/backward pair run in training
    mode with gradients enabled before ``step()``. ``capture="explicit"``: only from forwards
    and backwards run inside :meth:`capture_factors`, which is how an actor-critic gets the
    true Fisher from actions sampled from its own policy while sharing the forward pass::

        opt = KFAC(policy, lr=0.25, damping=1e-2, capture="explicit", kl_clip=1e-3)
        with opt.capture_factors():
            dist = policy(obs)  # A recorded here
            if opt.factors_due:  # G from the sampled backward
                (-dist.log_prob(dist.sample()).mean()).backward(retain_graph=True)
        opt.zero_grad()
        (-(dist.log_prob(actions) * adv).mean()).backward()  # outside: nothing recorded
        opt.step()

    Adaptive damping (Levenberg-Marquardt, Martens & Grosse 2015, §6.5): on the last step of
    every ``T = damping_adaptation_freq`` (steps ``T − 1, 2T − 1, …``), ``step(closure)``
    evaluates ``closure()`` (the loss, no backward; run under ``torch.no_grad``) before and
    after the update ``δ`` (on those steps only: the other steps do not call it) and sets
    ``ρ = (L(θ+δ) − L(θ)) / (gᵀδ + ½δᵀF̂δ)`` (``g`` the raw gradient, ``F̂`` the damped metric of
    this step), then ``λ ← ω·λ`` if ``ρ > 3/4``, ``λ ← λ/ω`` if ``ρ < 1/4``, ``λ ≥ min_damping``.
    Martens & Grosse take ``T = 5``, ``ω = (19/20)^5``. Adapting on a period's last step lets a
    new damping arrive with a due refresh when ``inverse_update_freq`` is a multiple of ``T``:
    with factored damping, each change otherwise costs an extra inversion.

    Data-parallel training (``torchrun``, the model wrapped in DDP, the loss a mean over each
    rank's batch, equal batches on all ranks): with more than one rank in ``process_group``,
    each factor update all-reduces the batch statistics (one bucketed sum of every layer's
    ``A_batch``, ``G_batch``), so the factors are those of the global batch; each refresh
    decomposes (or inverts) every factor on one rank only (assigned by cost ``n³``) and
    broadcasts the results; adaptive damping averages ``L(θ+δ) − L(θ)`` over the ranks.
    Everything else derives from the DDP-averaged gradients and the shared factors, so every
    rank takes the same step and the optimizer state is the same on every rank:
    ``state_dict()`` needs no communication and loads at any world size. ``step()`` is then a
    collective (every rank must call it) and ``last_step_info`` counts the whole group's
    decompositions.

    ``param_groups``: one per K-FAC layer (``group["layer"]`` is its module name) holding its
    weight and bias, then one (``group["layer"] is None``) for all other trainable parameters.
    After each step, ``last_step_info`` holds floats ``kl_clip_scale`` (ν), ``predicted_kl``,
    ``damping`` (first K-FAC group, after adaptation), ``eigh_retries``, ``eigh_fallbacks``
    (decompositions, or Cholesky inverses with factored damping, retried and failed twice),
    ``skipped_layers``, ``skipped_params`` (other parameters with a non-finite direction) and,
    with adaptive damping, ``rho`` (NaN on steps that do not adapt).

    Args:
        model: the module to train; at least one ``nn.Linear`` or ``nn.Conv2d`` with a trained
            weight.
        lr: learning rate, >= 0.
        damping: λ > 0.
        momentum: heavy-ball momentum in [0, 1).
        weight_decay: coupled L2 coefficient >= 0, added to the gradient before preconditioning.
        factor_decay: running-average decay of the factors in [0, 1).
        factor_update_freq: steps between factor updates, >= 1.
        inverse_update_freq: steps between eigendecompositions (or inversions), >= 1.
        kl_clip: trust-region radius > 0 on the predicted KL, or None.
        damping_mode: ``"exact"`` or ``"factored"``.
        adaptive_damping: Levenberg-Marquardt adaptation of λ (needs ``step(closure)``).
        damping_adaptation_freq: steps between adaptations, >= 1.
        damping_adaptation_decay: ω in (0, 1).
        min_damping: lower bound > 0 on the adapted λ.
        capture: ``"auto"`` or ``"explicit"``.
        diag_fisher: ``{parameter: c}`` with ``c > 0`` for "other" parameters whose Fisher block
            is taken to be ``c·I``.
        process_group: the ranks that share the factors; None: the default group when
            ``torch.distributed`` is initialised, else a single process. Its backend must serve
            the model's device (gloo: CPU, NCCL: CUDA).

    Raises:
        ValueError: for an argument out of range, or a process group that cannot serve the
            model's device.
    """

    def __init__(
        self,
        model: nn.Module,
        lr: float = 0.25,
        damping: float = 1e-3,
        *,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        factor_decay: float = 0.95,
        factor_update_freq: int = 1,
        inverse_update_freq: int = 10,
        kl_clip: float | None = None,
        damping_mode: str = "exact",
        adaptive_damping: bool = False,
        damping_adaptation_freq: int = 5,
        damping_adaptation_decay: float = 0.95,
        min_damping: float = 1e-8,
        capture: str = "auto",
        diag_fisher: Mapping[nn.Parameter, float] | None = None,
        process_group: ProcessGroup | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"KFAC: model must be an nn.Module, got {type(model).__name__}")
        self.config = KFACConfig(
            lr=lr,
            damping=damping,
            momentum=momentum,
            weight_decay=weight_decay,
            factor_decay=factor_decay,
            factor_update_freq=factor_update_freq,
            inverse_update_freq=inverse_update_freq,
            kl_clip=kl_clip,
            damping_mode=damping_mode,
            adaptive_damping=adaptive_damping,
            damping_adaptation_freq=damping_adaptation_freq,
            damping_adaptation_decay=damping_adaptation_decay,
            min_damping=min_damping,
            capture=capture,
        )
        self._layers = find_layers(model)
        check_backend(self._layers[0].weight.device, process_group)
        self._process_group = process_group
        groups = build_param_groups(model, self._layers)
        super().__init__(groups, self.config.group_defaults())
        other = groups[-1]["params"] if groups[-1]["layer"] is None else []
        self._diag = check_diag_fisher(diag_fisher, other)
        self._capture = FactorCapture(self._layers, explicit=capture == "explicit")
        self._warned: set[str] = set()
        self.last_step_info: dict[str, float] = {}

    # ----------------------------------------------------------------- public helpers

    @property
    def factors_due(self) -> bool:
        """Whether the coming ``step()`` updates the factors (so statistics are being recorded)."""
        return self._steps_done % self.config.factor_update_freq == 0

    def capture_factors(self) -> AbstractContextManager[None]:
        """Context manager: record ``A``/``G`` from the forwards/backwards run inside it.

        Raises:
            ValueError: unless the optimizer was built with ``capture="explicit"``.
        """
        if not self._capture.explicit:
            raise ValueError("KFAC: capture_factors() needs capture='explicit'; got capture='auto'")
        return self._capture.block()

    def captured_outputs(self) -> list[torch.Tensor]:
        """The K-FAC layers' outputs recorded so far inside the current :meth:`capture_factors`
        block (none when factors are not due).

        Differentiating the Fisher loss with respect to these, ``torch.autograd.grad(loss,
        opt.captured_outputs(), retain_graph=True)``, records every ``G`` without computing the
        weight gradients that a backward to the parameters would also compute. They are
        dropped when the block exits.
        """
        return self._capture.outputs()

    def factors(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Copies of the running factors ``{layer name: (A: (d+1, d+1), G: (out, out))}``."""
        out = {}
        for layer in self._layers:
            state = self.state[layer.weight]
            if "A" in state:
                out[layer.name] = (state["A"].clone(), state["G"].clone())
        return out

    @torch.no_grad()
    def precondition(self, grads: Sequence[torch.Tensor | None]) -> list[torch.Tensor | None]:
        """The direction ``Δ = F̂⁻¹g`` that ``step()`` would take (before lr, clip, momentum).

        Uses the factors and eigenbases as of the last ``step()`` and no weight decay. Layers
        that ``step()`` would skip give zeros; ``None`` gradients stay ``None``.

        Args:
            grads: one tensor per parameter, in ``param_groups`` order (groups, then params).
        """
        params = [p for group in self.param_groups for p in group["params"]]
        if len(grads) != len(params):
            raise ValueError(f"KFAC.precondition: expected {len(params)} grads, got {len(grads)}")
        lookup = {id(p): g for p, g in zip(params, grads)}
        out: dict[int, torch.Tensor] = {}
        for index, group in enumerate(self.param_groups):
            found = self._group_direction(index, group, lookup, {}, weight_decay=0.0)
            for p, delta in zip(found.params, found.deltas) if found else ():
                out[id(p)] = delta
        return [
            None if g is None else out.get(id(p), torch.zeros_like(p))
            for p, g in zip(params, grads)
        ]

    def remove_hooks(self) -> None:
        """Detach the capture hooks from the model (the optimizer then stops recording)."""
        self._capture.remove_hooks()

    # ----------------------------------------------------------------- step

    @overload
    def step(self, closure: None = None) -> None: ...

    @overload
    def step(self, closure: Callable[[], float]) -> float | None: ...

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One K-FAC step; returns ``closure()`` evaluated before the update, if it was called.

        ``closure`` re-evaluates the loss and must not call ``backward``: the gradients are
        the ones already in ``.grad``. It runs under ``torch.no_grad`` (so it records nothing).
        With adaptive damping it is called only on the steps that adapt the damping (before
        and after the update), and ``step`` returns None on the others; without, it is called
        once, before the update.

        Raises:
            ValueError: with adaptive damping and no closure.
        """
        cfg = self.config
        if cfg.adaptive_damping and closure is None:
            raise ValueError("KFAC: adaptive_damping=True needs step(closure), closure() -> loss")
        t = self._steps_done
        adapt = cfg.adaptive_damping and (t + 1) % cfg.damping_adaptation_freq == 0
        wanted = closure is not None and (adapt or not cfg.adaptive_damping)
        loss = closure() if closure is not None and wanted else None
        info = dict.fromkeys(("eigh_retries", "eigh_fallbacks", "skipped_layers"), 0.0)
        info["skipped_params"] = 0.0
        self._fold_factors(due=t % cfg.factor_update_freq == 0)
        self._refresh_curvature(t % cfg.inverse_update_freq == 0, info)
        directions = self._directions(info)
        scale, predicted_kl = self._trust_region(directions)
        applied = self._apply(directions, scale, keep=adapt)
        info.update(kl_clip_scale=scale, predicted_kl=predicted_kl)
        if cfg.adaptive_damping:
            rho = math.nan
            if adapt and closure is not None and loss is not None:
                change = self._mean_over_ranks(float(closure()) - float(loss))
                rho = self._adapt_damping(change, directions, applied)
            info["rho"] = rho
        self._set_steps_done(t + 1)
        info["damping"] = float(self.param_groups[0]["damping"])
        self.last_step_info = info
        return loss

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """``torch.optim`` loading, keeping factors in their own dtype (not the parameter's)."""
        super().load_state_dict(state_dict)
        params = [p for group in self.param_groups for p in group["params"]]
        for index, saved in state_dict["state"].items():
            p = params[index]
            dtype = torch.promote_types(p.dtype, torch.float32)
            for key in _FACTOR_KEYS:
                if key in saved:
                    self.state[p][key] = saved[key].to(device=p.device, dtype=dtype, copy=True)
        self._capture.due = self.factors_due

    # ----------------------------------------------------------------- step parts

    @property
    def _steps_done(self) -> int:
        # The global counter lives in the first layer's state so that state_dict carries it.
        return int(self.state[self._layers[0].weight].get("kfac_step", 0))

    def _set_steps_done(self, steps: int) -> None:
        self.state[self._layers[0].weight]["kfac_step"] = steps
        self._capture.due = self.factors_due

    def _kfac_groups(self) -> Iterator[tuple[KFACLayer, dict[str, Any]]]:
        return zip(self._layers, self.param_groups)  # K-FAC groups come first, in layer order

    def _mean_over_ranks(self, value: float) -> float:
        device = self._layers[0].weight.device
        return all_reduce_scalars([value], device, group=self._process_group)[0]

    def _fold_factors(self, due: bool) -> None:
        """Fold the recorded batch statistics (averaged over the ranks) into the factors."""
        pending = shared_batch_factors(self._layers, self._capture.take(), due, self._process_group)
        for index, (a_batch, g_batch) in pending.items():
            layer, group = self._layers[index], self.param_groups[index]
            state = self.state[layer.weight]
            state["A"] = running_average(state.get("A"), a_batch, group["factor_decay"])
            state["G"] = running_average(state.get("G"), g_batch, group["factor_decay"])

    def _refresh_curvature(self, due: bool, info: dict[str, float]) -> None:
        """Eigendecompose the factors that are due (all at ``due``, else only new ones); with
        factored damping, invert instead (also when the damping has changed)."""
        tasks: list[Decomposition] = []
        inverses: list[tuple[dict[str, Any], _FactoredRefresh]] = []
        for layer, group in self._kfac_groups():
            state = self.state[layer.weight]
            if "A" not in state:
                continue
            if group["damping_mode"] == "exact":
                for key in ("A", "G"):
                    if due or "Q" + key not in state:
                        tasks.append(EighTask(state, key, group["damping"]))
                continue
            refresh = _FactoredRefresh.due(state, group["damping"], due)
            if refresh is not None:
                tasks += refresh.tasks
                inverses.append((state, refresh))
        retries, fallbacks = decompose(tasks, self._process_group)
        for state, refresh in inverses:
            refresh.commit(state)
        info["eigh_retries"] += retries
        info["eigh_fallbacks"] += fallbacks  # a failed factor keeps its previous eigenbasis

    def _directions(self, info: dict[str, float]) -> list[_Direction]:
        grads = {id(p): p.grad for group in self.param_groups for p in group["params"]}
        found = (
            self._group_direction(i, group, grads, info, group["weight_decay"])
            for i, group in enumerate(self.param_groups)
        )
        return [d for d in found if d is not None]

    def _group_direction(
        self,
        index: int,
        group: dict[str, Any],
        grads: Mapping[int, torch.Tensor | None],
        info: dict[str, float],
        weight_decay: float,
    ) -> _Direction | None:
        params = group["params"]
        decayed = [
            g + weight_decay * p if g is not None and weight_decay else g
            for p, g in ((p, grads.get(id(p))) for p in params)
        ]
        layer = self._layers[index] if index < len(self._layers) else None
        if layer is not None and decayed[0] is None:
            return None
        if layer is None or not self._has_factors(layer):
            return self._base_direction(group, params, decayed, info)
        return self._kfac_direction(layer, group, decayed, info)

    def _has_factors(self, layer: KFACLayer) -> bool:
        if "A" in self.state[layer.weight]:
            return True
        if layer.name not in self._warned:
            self._warned.add(layer.name)
            where = " inside capture_factors()" if self._capture.explicit else ""
            warnings.warn(
                f"KFAC: layer {layer.name!r} has a gradient but no factors yet (run its forward "
                f"and backward in training mode{where}); it gets the base SGD rule",
                stacklevel=2,
            )
        return False

    def _kfac_direction(
        self,
        layer: KFACLayer,
        group: dict[str, Any],
        grads: list[torch.Tensor | None],
        info: dict[str, float],
    ) -> _Direction | None:
        state, weight_grad = self.state[layer.weight], grads[0]
        if weight_grad is None:
            return None
        metric = _metric(state, group)
        if metric is None:
            info["skipped_layers"] = info.get("skipped_layers", 0.0) + 1
            return None
        v = layer.as_matrix(weight_grad, grads[1] if len(grads) > 1 else None)
        v = v.to(state["A"].dtype)
        delta = metric.solve(v)
        if not all_finite(delta):
            info["skipped_layers"] = info.get("skipped_layers", 0.0) + 1
            return None
        params = group["params"]
        deltas = [d.to(p.dtype) for d, p in zip(layer.split(delta), params)]
        return _Direction(group, params, deltas, float((delta * v).sum()), kfac=(layer, metric))

    def _base_direction(
        self,
        group: dict[str, Any],
        params: list[torch.Tensor],
        grads: list[torch.Tensor | None],
        info: dict[str, float],
    ) -> _Direction | None:
        kept, deltas, diag = [], [], []
        dot = 0.0
        for p, g in zip(params, grads):
            if g is None:
                continue
            c = self._diag.get(id(p))
            delta = g / c if c is not None else g
            if not all_finite(delta):
                info["skipped_params"] = info.get("skipped_params", 0.0) + 1
                continue
            kept.append(p)
            deltas.append(delta)
            diag.append(c if c is not None else 1.0)
            dot += float((delta * g).sum())
        return _Direction(group, kept, deltas, dot, diag=diag) if kept else None

    @staticmethod
    def _trust_region(directions: list[_Direction]) -> tuple[float, float]:
        """``(ν, ½·(ν·lr)²·ΣΔ·g)``; ν < 1 only where ``kl_clip`` binds."""
        quad = sum(0.5 * d.group["lr"] ** 2 * d.dot for d in directions)
        clips = {d.group["kl_clip"] for d in directions} - {None}
        if not clips or not quad > 0:
            return 1.0, float(quad)
        scale = min(1.0, math.sqrt(min(clips) / quad))
        # ν²·quad equals kl_clip when clipping, up to one rounding: report it as ≤ kl_clip.
        return scale, min(scale * scale * quad, min(clips)) if scale < 1.0 else quad

    def _apply(
        self, directions: list[_Direction], scale: float, keep: bool
    ) -> list[list[torch.Tensor]]:
        """Heavy ball on the clipped direction: ``buf ← μ·buf + ν·Δ``, ``θ ← θ − lr·buf``."""
        applied: list[list[torch.Tensor]] = []
        for d in directions:
            lr, momentum = d.group["lr"], d.group["momentum"]
            steps = []
            for p, delta in zip(d.params, d.deltas):
                if scale != 1.0:
                    delta = delta * scale
                if momentum:
                    delta = self._momentum(p, delta, momentum)
                p.add_(delta, alpha=-lr)
                if keep:
                    steps.append(delta * -lr)
            applied.append(steps)
        return applied

    def _momentum(self, p: torch.Tensor, delta: torch.Tensor, momentum: float) -> torch.Tensor:
        state = self.state[p]
        buf = state.get("momentum_buffer")
        if buf is None:
            buf = state["momentum_buffer"] = delta.clone()
        else:
            buf.mul_(momentum).add_(delta)
        return buf

    def _adapt_damping(
        self, loss_change: float, directions: list[_Direction], applied: list[list[torch.Tensor]]
    ) -> float:
        """Levenberg-Marquardt rule on ``ρ = ΔL / (gᵀδ + ½δᵀF̂δ)``; returns ρ (NaN if undefined)."""
        model = sum(_model_change(d, steps) for d, steps in zip(directions, applied))
        rho = loss_change / model if model < 0 else math.nan
        omega = self.config.damping_adaptation_decay
        factor = omega if rho > 0.75 else 1.0 / omega if rho < 0.25 else 1.0
        for _, group in self._kfac_groups():
            group["damping"] = max(group["damping"] * factor, self.config.min_damping)
        return rho


def _model_change(direction: _Direction, steps: list[torch.Tensor]) -> float:
    """``gᵀδ + ½δᵀF̂δ`` for one group, ``g`` the raw gradient and ``δ`` the applied update."""
    pairs = zip(direction.params, steps)
    linear = sum(float((p.grad * s).sum()) for p, s in pairs if p.grad is not None)
    if direction.kfac is None:
        quad = sum(c * float((s * s).sum()) for c, s in zip(direction.diag, steps))
        return linear + 0.5 * quad
    layer, metric = direction.kfac
    d = layer.as_matrix(steps[0], steps[1] if len(steps) > 1 else None).to(metric.dtype)
    return linear + 0.5 * float((d * metric.mul(d)).sum())


def _metric(state: dict[str, Any], group: dict[str, Any]) -> Metric | None:
    """The layer's damped metric ``F̂`` as of the last refresh; None before a successful one."""
    if group["damping_mode"] == "exact":
        if "QA" not in state or "QG" not in state:
            return None
        a, g = Eigen(state["QA"], state["dA"]), Eigen(state["QG"], state["dG"])
        return EigenMetric(a, g, exact_scale(a, g, group["damping"]))
    if "iA" not in state:
        return None
    shifts = state.get("inverse_shifts")
    if shifts is None:  # a checkpoint from before the shifts were stored
        shifts = factored_shifts(state["RA"], state["RG"], state["inverse_damping"])
    a_shift, g_shift = (float(s) for s in shifts)
    return FactoredMetric(state["RA"], state["RG"], a_shift, g_shift, state["iA"], state["iG"])


@dataclass
class _FactoredRefresh:
    """The two inverses of factored damping due at a refresh, from ``a`` and ``g`` (the current
    factors when due, else those of the last refresh, for a new damping)."""

    a: torch.Tensor
    g: torch.Tensor
    damping: float
    shifts: tuple[float, float]
    out: dict[str, torch.Tensor]
    tasks: list[Decomposition]

    @classmethod
    def due(cls, state: dict[str, Any], damping: float, due: bool) -> _FactoredRefresh | None:
        if due or "RA" not in state:
            a, g = state["A"].clone(), state["G"].clone()
        elif state.get("inverse_damping") != damping:
            a, g = state["RA"], state["RG"]
        else:
            return None
        a_shift, g_shift = factored_shifts(a, g, damping)
        out: dict[str, torch.Tensor] = {}
        tasks: list[Decomposition] = [
            InverseTask(a, a_shift, damping, out, "A"),
            InverseTask(g, g_shift, damping, out, "G"),
        ]
        return cls(a, g, damping, (a_shift, g_shift), out, tasks)

    def commit(self, state: dict[str, Any]) -> None:
        """Replace the layer's inverses if both succeeded (else keep the last ones)."""
        if "A" in self.out and "G" in self.out:
            state["RA"], state["RG"], state["inverse_damping"] = self.a, self.g, self.damping
            state["inverse_shifts"] = self.shifts
            state["iA"], state["iG"] = self.out["A"], self.out["G"]
