"""Optimizer step time and state memory on the CURVES autoencoder (``benchmark.py --optim-step``).

Every contender trains a fresh copy of the same autoencoder (same seed, same batches of
generated CURVES images). Rounds alternate the contenders' order; each round times ``steps``
full training steps (forward, backward, ``optimizer.step``) after ``warmup`` steps, and also
the ``optimizer.step`` calls alone. ``steps`` is a multiple of the root-recomputation period, so
the amortised eigendecompositions are counted in proportion.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from rl_ig.optim import Adam, Shampoo
from rl_ig.supervised.curves import curves_autoencoder, make_curves, reconstruction_loss

OptimizerFactory = Callable[[nn.Module], torch.optim.Optimizer]


def contenders(lr: float, frequency: int, epsilon: float) -> dict[str, OptimizerFactory]:
    """The optimizers compared, at equal settings where they share one.

    ``rl-ig Shampoo (matched)`` and ``pytorch-optimizer Shampoo`` both take plain Shampoo steps
    (no grafting, no momentum, summed factors, no blocking below 1,024) with roots recomputed
    every ``frequency`` steps; ``rl-ig Shampoo`` is the default (Adam grafting, momentum 0.9).
    """
    from pytorch_optimizer import Shampoo as ReferenceShampoo

    def matched(m: nn.Module) -> torch.optim.Optimizer:
        return Shampoo(
            m.parameters(),
            lr=lr,
            betas=(0.0, 1.0),
            epsilon=epsilon,
            precondition_frequency=frequency,
            start_preconditioning_step=1,
            grafting="none",
        )

    def reference(m: nn.Module) -> torch.optim.Optimizer:
        return ReferenceShampoo(
            m.parameters(), lr=lr, momentum=0.0, preconditioning_compute_steps=frequency,
            matrix_eps=epsilon,
        )  # fmt: skip

    def default(m: nn.Module, block: int = 1024) -> torch.optim.Optimizer:
        return Shampoo(
            m.parameters(),
            lr=lr,
            epsilon=epsilon,
            precondition_frequency=frequency,
            max_preconditioner_dim=block,
        )

    return {
        "rl-ig Shampoo (matched)": matched,
        "pytorch-optimizer Shampoo": reference,
        "rl-ig Shampoo": default,
        "rl-ig Shampoo (blocks 256)": lambda m: default(m, 256),
        "rl-ig Shampoo (blocks 128)": lambda m: default(m, 128),
        "rl-ig Adam": lambda m: Adam(m.parameters(), lr=lr),
    }


def state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of every tensor held in ``optimizer.state`` (nested dicts and lists included)."""

    def size(value: Any) -> int:
        if isinstance(value, torch.Tensor):
            return value.numel() * value.element_size()
        if isinstance(value, dict):
            return sum(size(v) for v in value.values())
        if isinstance(value, (list, tuple)):
            return sum(size(v) for v in value)
        return 0

    return sum(size(state) for state in optimizer.state.values())


@dataclass
class Timings:
    """Per-contender measurements over the rounds."""

    step_s: list[float] = field(default_factory=list)
    optimizer_s: list[float] = field(default_factory=list)
    state_mib: float = 0.0
    final_loss: float = float("nan")


def time_one(
    factory: OptimizerFactory, batches: list[torch.Tensor], warmup: int, seed: int
) -> tuple[float, float, float, float]:
    """(seconds per step, seconds per ``optimizer.step``, state MiB, last loss) of one run."""
    torch.manual_seed(seed)
    model = curves_autoencoder()
    optimizer = factory(model)
    step_total = opt_total = 0.0
    timed = max(len(batches) - warmup, 1)
    loss = torch.tensor(float("nan"))
    for i, x in enumerate(batches):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = reconstruction_loss(model(x), x)
        loss.backward()
        opt_start = time.perf_counter()
        optimizer.step()
        end = time.perf_counter()
        if i >= warmup:
            step_total += end - start
            opt_total += end - opt_start
    return step_total / timed, opt_total / timed, state_bytes(optimizer) / 2**20, loss.item()


def optimizer_step_benchmark(
    rounds: int = 3,
    steps: int = 50,
    warmup: int = 10,
    batch_size: int = 1000,
    frequency: int = 10,
    lr: float = 1e-4,
    epsilon: float = 1e-6,
) -> dict[str, Timings]:
    """Alternate the contenders for ``rounds`` rounds; see the module docstring."""
    if steps % frequency:
        raise ValueError(f"--steps must be a multiple of the period {frequency}, got {steps}")
    pool = 8
    images = make_curves(batch_size * pool, seed=0)
    batches = [
        images[(i % pool) * batch_size : (i % pool + 1) * batch_size] for i in range(warmup + steps)
    ]
    names = contenders(lr, frequency, epsilon)
    results = {name: Timings() for name in names}
    for r in range(rounds):
        sequence = list(names) if r % 2 == 0 else list(reversed(names))
        for name in sequence:
            step_s, opt_s, mib, loss = time_one(names[name], batches, warmup, seed=r)
            res = results[name]
            res.step_s.append(step_s)
            res.optimizer_s.append(opt_s)
            res.state_mib, res.final_loss = mib, loss
            print(f"round {r + 1}/{rounds} {name:27s} {1e3 * step_s:8.1f} ms/step", flush=True)
    return results


def report(results: dict[str, Timings], frequency: int, batch_size: int) -> str:
    """A Markdown table of medians and the two ratios the targets are stated in."""
    med = {name: statistics.median(r.step_s) for name, r in results.items()}
    opt = {name: statistics.median(r.optimizer_s) for name, r in results.items()}
    lines = [
        f"CURVES autoencoder, batch {batch_size}, roots every {frequency} steps, "
        f"{len(next(iter(results.values())).step_s)} rounds (medians)",
        "",
        "| optimizer | ms per step | ms in optimizer.step | state MiB | last loss |",
        "|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {1e3 * med[name]:.1f} | {1e3 * opt[name]:.1f} | "
            f"{r.state_mib:.1f} | {r.final_loss:.1f} |"
        )
    ours, ref = "rl-ig Shampoo (matched)", "pytorch-optimizer Shampoo"
    lines += [
        "",
        f"- step time, pytorch-optimizer / rl-ig (matched): {med[ref] / med[ours]:.2f}x; "
        f"optimizer.step alone: {opt[ref] / opt[ours]:.2f}x",
        f"- state memory, pytorch-optimizer / rl-ig (matched): "
        f"{results[ref].state_mib / results[ours].state_mib:.2f}x",
        f"- rl-ig Shampoo (default) step time / rl-ig Adam: "
        f"{med['rl-ig Shampoo'] / med['rl-ig Adam']:.2f}x",
    ]
    return "\n".join(lines)
