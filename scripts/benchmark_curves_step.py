"""Training-step time on the CURVES autoencoder, alternating (``benchmark.py --curves-step``).

Each round runs every optimizer at the middle setting of its sweep
(:data:`benchmark_curves.SWEEP`, the task's defaults otherwise) in a fresh
``train_supervised.py`` process for ``steps + 1`` steps, and takes the mean time of steps 2 to
``steps + 1``: the first pays for warm-up, and with ``steps`` a multiple of 10 every run holds the
same share of the refreshes that K-FAC and Shampoo make every 10 steps. The time is the training
step only (sampled-Fisher pass, forward, backward, optimizer step), as in ``--curves``. Rounds
alternate the optimizers, so the drift of a shared machine falls on all of them alike.
"""

from __future__ import annotations

import csv
import statistics
import subprocess
import tempfile
from pathlib import Path

from benchmark_curves import LABELS, SWEEP, train_command


def one_run(optim: str, steps: int, batch_size: int, threads: int) -> float:
    """Mean milliseconds of steps 2 to ``steps + 1`` of one fresh run."""
    point = SWEEP[optim][len(SWEEP[optim]) // 2]
    args = {"steps": steps + 1, "eval_every": steps + 1, "batch_size": batch_size}
    with tempfile.TemporaryDirectory() as logdir:
        cmd = train_command(optim, point, {**args, "threads": threads}, Path(logdir))
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        with (Path(logdir) / "progress.csv").open() as f:
            seconds = [float(row["time/step_s"]) for row in csv.DictReader(f)]
    return 1e3 * statistics.fmean(seconds[1:])


def step_time_benchmark(
    optims: list[str], rounds: int, steps: int, batch_size: int, threads: int
) -> dict[str, list[float]]:
    """``{optimizer: [ms per step of each round]}``, the optimizers alternating in each round."""
    unknown = [o for o in optims if o not in SWEEP]
    if unknown:
        raise ValueError(f"--optims takes {', '.join(SWEEP)}, got {', '.join(unknown)}")
    if steps < 10 or steps % 10:
        raise ValueError(f"--curves-step needs --steps a positive multiple of 10, got {steps}")
    times: dict[str, list[float]] = {o: [] for o in optims}
    for round_ in range(rounds):
        for optim in optims:
            times[optim].append(one_run(optim, steps, batch_size, threads))
            print(f"round {round_ + 1}/{rounds} {optim}: {times[optim][-1]:.1f} ms", flush=True)
    return times


def report(times: dict[str, list[float]], steps: int, batch_size: int) -> str:
    """A Markdown table: mean and range over the rounds, and the ratio to Adam's mean."""
    adam = statistics.fmean(times["adam"]) if "adam" in times else None
    lines = [
        f"CURVES training step, batch {batch_size}, {steps} steps per run, "
        f"{len(next(iter(times.values())))} alternating rounds",
        "",
        "| optimizer | setting | ms per step (mean) | range over rounds | / Adam |",
        "|---|---|---|---|---|",
    ]
    for optim, values in times.items():
        mean = statistics.fmean(values)
        ratio = "-" if adam is None else f"{mean / adam:.2f}x"
        point = SWEEP[optim][len(SWEEP[optim]) // 2]
        lines.append(
            f"| {LABELS[optim]} | {point.label} | {mean:.1f} | {min(values):.1f}–{max(values):.1f}"
            f" | {ratio} |"
        )
    return "\n".join(lines)
