"""What K-FAC and Shampoo cannot skip on the CURVES autoencoder (``benchmark.py --curves-floor``).

Each part is timed bare, through rl-ig's own functions on tensors of the real shapes, at the
CURVES settings of ``train_supervised.py``, read from the optimizers it builds (batch
``batch_size``; the figures below are today's defaults):

* the model's forward and backward, and Adam's update: Adam's whole step;
* K-FAC (sampled Fisher from every 4th example, factored damping, inverses every 10 steps,
  damping adapted every 5): the sampled-Fisher forward and backward to the layer outputs on
  those examples, the factors' products on them, the two products with the explicit inverses
  per layer, the Cholesky inverses divided by 5 (every refresh, and the adapted damping between
  two), and the adaptation's two loss evaluations on those examples and two products with each
  layer's damped factors, divided by 5;
* Shampoo (blocks of at most 128, roots every 10 steps): the two factor products per block, the
  two root products per block, and the batched eigendecompositions with their root products
  divided by 10.

A real step adds copies, momentum, grafting, checks and Python on top, so ``(forward and
backward + floor) / Adam's step`` is the least step-time ratio any implementation of the same
method reaches on the machine. Rounds alternate the parts, so the drift of a shared machine
falls on all of them alike; each part's time is its median over the rounds.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import nn

from rl_ig.optim import KFAC, Adam
from rl_ig.optim.kfac_config import KFACConfig
from rl_ig.optim.kfac_layers import find_layers
from rl_ig.optim.kronecker import FactoredMetric, damped_inverse, factored_shifts
from rl_ig.optim.shampoo_batches import batched_inverse_root
from rl_ig.optim.shampoo_blocks import block_pairs, matrix_shape
from rl_ig.supervised.defaults import optimizer_settings
from rl_ig.supervised.optimizers import fisher_subsample, make_optimizer
from rl_ig.supervised.task import Task
from rl_ig.supervised.tasks import make_task

Work = Callable[[], object]
Part = tuple[Work, int]  # the work, and the steps it is spread over (1: every step)


class Settings(NamedTuple):
    """The CURVES settings of ``train_supervised.py`` that set each part's work."""

    kfac: KFACConfig
    fisher_subsample: int
    shampoo: dict[str, Any]  # Shampoo's param group (epsilon, betas, blocks, root period)


def curves_settings(model: nn.Module) -> Settings:
    """Read from the optimizers that ``train_supervised.py --task curves`` builds."""
    lr, hp = optimizer_settings("curves", "kfac", {})
    kfac = make_optimizer("kfac", model, lr, hp)
    assert isinstance(kfac, KFAC)
    kfac.remove_hooks()
    lr, shampoo_hp = optimizer_settings("curves", "shampoo", {})
    shampoo = make_optimizer("shampoo", model, lr, shampoo_hp).param_groups[0]
    return Settings(kfac.config, fisher_subsample("kfac", hp), dict(shampoo))


def _sampled_pass(
    model: nn.Module, x: torch.Tensor, task: Task
) -> tuple[Work, list[torch.Tensor], list[torch.Tensor]]:
    """The sampled-Fisher forward and backward on ``x`` (to the layer outputs only), and each
    layer's input and output gradient from one run of it."""
    assert task.sample_targets is not None
    sample = task.sample_targets
    inputs: list[torch.Tensor] = []
    outputs: list[torch.Tensor] = []
    recording = [False]

    def record(module: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        if recording[0]:
            inputs.append(args[0].detach())
            outputs.append(out)

    for layer in find_layers(model):
        layer.module.register_forward_hook(record)
    generator = torch.Generator().manual_seed(0)

    def run() -> tuple[torch.Tensor, ...]:
        inputs.clear()
        outputs.clear()
        recording[0] = True
        out = model(x)
        recording[0] = False
        loss = task.loss(out, sample(out.detach(), generator))
        return torch.autograd.grad(loss, list(outputs))

    grads = run()
    return run, list(inputs), list(grads)


def kfac_parts(
    model: nn.Module, x: torch.Tensor, task: Task, cfg: KFACConfig, subsample: int
) -> dict[str, Part]:
    """K-FAC's unavoidable work per step beyond the forward and backward (factored damping).

    With adaptive damping and ``inverse_update_freq`` a multiple of its period, the factors are
    inverted once per period: at each refresh, and for the adapted damping between two.
    """
    layers = find_layers(model)
    rows = x[::subsample]
    sampled, inputs, grads = _sampled_pass(model, rows, task)
    factors = [(lay.a_factor(a), lay.g_factor(g)) for lay, a, g in zip(layers, inputs, grads)]
    damping = cfg.damping
    metrics, vectors = [], []
    for a, g in factors:
        a_shift, g_shift = factored_shifts(a, g, damping)
        a_inv, _ = damped_inverse(a, a_shift, damping)
        g_inv, _ = damped_inverse(g, g_shift, damping)
        assert a_inv is not None and g_inv is not None
        metrics.append(FactoredMetric(a, g, a_shift, g_shift, a_inv, g_inv))
        vectors.append(torch.randn(g.shape[0], a.shape[0]))

    def products() -> None:
        for layer, a, g in zip(layers, inputs, grads):
            layer.a_factor(a)
            layer.g_factor(g)

    def solves() -> None:
        for metric, v in zip(metrics, vectors):
            metric.solve(v)

    def inverses() -> None:
        for metric in metrics:
            damped_inverse(metric.a, metric.a_shift, damping)
            damped_inverse(metric.g, metric.g_shift, damping)

    def adaptation() -> None:
        with torch.no_grad():
            for _ in range(2):
                task.loss(model(rows), rows)
            for metric, v in zip(metrics, vectors):
                metric.mul(v)

    parts: dict[str, Part] = {
        "K-FAC sampled-Fisher pass": (sampled, cfg.factor_update_freq),
        "K-FAC factor products": (products, cfg.factor_update_freq),
        "K-FAC solves": (solves, 1),
    }
    period = cfg.inverse_update_freq
    if cfg.adaptive_damping:
        period = cfg.damping_adaptation_freq
        parts[f"K-FAC damping adaptation / {period}"] = (adaptation, period)
    return {**parts, f"K-FAC Cholesky inverses / {period}": (inverses, period)}


def shampoo_parts(model: nn.Module, group: dict[str, Any]) -> dict[str, Part]:
    """Shampoo's unavoidable work per step beyond the forward and backward."""
    beta2, epsilon, period = group["betas"][1], group["epsilon"], group["precondition_frequency"]
    alpha = 1.0 - beta2 if beta2 < 1.0 else 1.0
    stacks: dict[tuple[int, int], int] = {}
    for p in model.parameters():
        if p.ndim >= 2:
            for rows, cols in block_pairs(matrix_shape(p.shape), group["max_preconditioner_dim"]):
                shape = (rows.stop - rows.start, cols.stop - cols.start)
                stacks[shape] = stacks.get(shape, 0) + 1
    batches = []
    for (r, c), k in stacks.items():
        g = torch.randn(k, r, c)
        left, right = torch.bmm(g, g.transpose(1, 2)), torch.bmm(g.transpose(1, 2), g)
        batches.append((g, left, right))

    def factors() -> None:
        for g, left, right in batches:
            left.baddbmm_(g, g.transpose(1, 2), beta=beta2, alpha=alpha)
            right.baddbmm_(g.transpose(1, 2), g, beta=beta2, alpha=alpha)

    def directions() -> None:
        for g, left, right in batches:
            torch.bmm(torch.bmm(left, g), right)

    def roots() -> None:
        for _, left, right in batches:
            batched_inverse_root(left, epsilon)
            batched_inverse_root(right, epsilon)

    return {
        "Shampoo factor products": (factors, 1),
        "Shampoo root products": (directions, 1),
        f"Shampoo eigh and roots / {period}": (roots, period),
    }


def _time(part: Part, repeats: int) -> float:
    """Milliseconds per step: per call, divided by the steps the work is spread over."""
    work, spread = part
    work()
    start = time.perf_counter()
    for _ in range(repeats):
        work()
    return (time.perf_counter() - start) / repeats * 1e3 / spread


def floor_benchmark(rounds: int, batch_size: int, repeats: int = 10) -> dict[str, float]:
    """``{part: median ms per step}`` over ``rounds`` alternating rounds."""
    if rounds < 1 or repeats < 1:
        raise ValueError(f"--curves-floor needs --rounds >= 1, got {rounds}")
    task = make_task("curves", 0)
    model = task.make_model(0)
    settings = curves_settings(model)
    subsample = settings.fisher_subsample
    if batch_size < subsample or batch_size % subsample:
        raise ValueError(
            f"--curves-floor needs --batch-size a positive multiple of {subsample} "
            f"(K-FAC's fisher_subsample), got {batch_size}"
        )
    x = task.train.inputs[:batch_size]
    adam = Adam(model.parameters(), lr=3e-3)

    def forward_backward() -> None:
        model.zero_grad(set_to_none=True)
        task.loss(model(x), x).backward()

    forward_backward()
    parts: dict[str, Part] = {
        "forward and backward": (forward_backward, 1),
        "Adam update": (adam.step, 1),
        **kfac_parts(model, x, task, settings.kfac, subsample),
        **shampoo_parts(model, settings.shampoo),
    }
    times: dict[str, list[float]] = {name: [] for name in parts}
    for _ in range(rounds):
        for name, part in parts.items():
            times[name].append(_time(part, repeats))
    return {name: statistics.median(values) for name, values in times.items()}


def report(ms: dict[str, float], batch_size: int, rounds: int) -> str:
    """A Markdown table of the parts and the least step ratio to Adam each method allows."""
    base = ms["forward and backward"]
    adam = base + ms["Adam update"]
    lines = [
        f"CURVES, batch {batch_size}, medians of {rounds} alternating rounds",
        "",
        "| part | ms per step | / forward and backward |",
        "|---|---|---|",
        *(f"| {name} | {value:.2f} | {value / base:.2f} |" for name, value in ms.items()),
        "",
    ]
    for method in ("K-FAC", "Shampoo"):
        floor = sum(v for name, v in ms.items() if name.startswith(method + " "))
        lines.append(
            f"- {method}: {floor:.1f} ms per step beyond the forward and backward; its step is at "
            f"least {(base + floor) / adam:.2f}x Adam's ({adam:.1f} ms)"
        )
    return "\n".join(lines)
