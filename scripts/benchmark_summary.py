"""Tables and learning-curve figures from the ``--returns`` runs of ``benchmark.py``.

Each run is a JSON file ``{lib}-{algo}-{env}-s{seed}.json`` holding its training curve
``[(steps, seconds, mean return of the last 100 episodes), ...]``, its wall time and the
returns of 10 deterministic evaluation episodes of the final policy.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

REFERENCE_NAMES = {
    "trpo": "sb3-contrib TRPO",
    "npg": "sb3-contrib TRPO",
    "ppo": "SB3 PPO",
    "a2c": "SB3 A2C",
    "acktr": "SB3 A2C",
}
ORDER = ("trpo", "npg", "ppo", "acktr", "a2c")


def _runs(out_dir: Path, lib: str, algo: str, env: str) -> list[dict[str, Any]]:
    paths = sorted(out_dir.glob(f"{lib}-{algo}-{env}-s*.json"))
    return [json.loads(p.read_text()) for p in paths]


def _label(lib: str, algo: str) -> str:
    return f"rl-ig {algo.upper()}" if lib == "rl-ig" else REFERENCE_NAMES[algo]


def _row(lib: str, algo: str, runs: list[dict[str, Any]]) -> str:
    # No speed column: these runs share the machine with each other, so their wall times say
    # little; throughput is measured separately, alternating fresh processes.
    finals = [statistics.fmean(r["eval"]) for r in runs]
    return (
        f"| {_label(lib, algo)} | {len(runs)} | {statistics.fmean(finals):.0f} ± "
        f"{statistics.pstdev(finals):.0f} | {', '.join(str(round(f)) for f in finals)} |"
    )


def _plot_curves(ax, runs: list[dict[str, Any]], label: str, colour: str, style: str) -> None:
    import numpy as np

    grid = np.linspace(0, max(r["steps"] for r in runs), 101)
    ys = np.array(
        [np.interp(grid, [c[0] for c in r["curve"]], [c[2] for c in r["curve"]]) for r in runs]
    )
    ax.plot(grid, ys.mean(0), style, color=colour, label=f"{label} ({len(runs)} seeds)")
    ax.fill_between(grid, ys.min(0), ys.max(0), color=colour, alpha=0.15)


def _figure(title: str):  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.8))
    ax.set_xlabel("environment steps")
    ax.set_ylabel("training episode return (mean of last 100)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return fig, ax


def save_report(fig, lines: list[str], png: Path, table: Path) -> None:  # type: ignore[no-untyped-def]
    """Write the figure and the table, each atomically (write, then rename), and print it."""
    if not fig.get_constrained_layout():
        fig.tight_layout()
    tmp_png = png.with_name(f".{png.name}.tmp")
    fig.savefig(tmp_png, dpi=120, format="png")
    tmp_png.replace(png)
    lines = [*lines, "", f"curves: {png}"]
    tmp_table = table.with_name(f".{table.name}.tmp")
    tmp_table.write_text("\n".join(lines) + "\n")
    tmp_table.replace(table)
    print("\n".join(lines))


TABLE_HEAD = [
    "| agent | seeds | final return, mean ± sd | per seed |",
    "|---|---|---|---|",
]


def summarize(out_dir: Path, algo: str, env: str) -> None:
    """One agent against its reference: ``{algo}-{env}-summary.md`` and the curves PNG."""
    fig, ax = _figure(f"{algo.upper()} on {env}: mean and range over seeds")
    lines = [f"{algo.upper()} {env}: final evaluation (10 deterministic episodes per seed)", ""]
    lines += TABLE_HEAD
    for lib, colour in (("rl-ig", "tab:blue"), ("sb3", "tab:orange")):
        runs = _runs(out_dir, lib, algo, env)
        if runs:
            lines.append(_row(lib, algo, runs))
            _plot_curves(ax, runs, _label(lib, algo), colour, "-")
    ax.legend(loc="upper left")
    png, table = out_dir / f"{algo}-{env}-curves.png", out_dir / f"{algo}-{env}-summary.md"
    save_report(fig, lines, png, table)


def summarize_all(root: Path, env: str) -> None:
    """Every agent's runs under ``root/{algo}-{env lower}/``: one table and one figure."""
    colours = dict(zip(ORDER, ("tab:blue", "tab:purple", "tab:green", "tab:red", "tab:gray")))
    fig, ax = _figure(f"{env}: the five update geometries (mean and range over seeds)")
    lines = [f"{env}: final evaluation (10 deterministic episodes per seed)", "", *TABLE_HEAD]
    for algo in ORDER:
        folder = root / f"{algo}-{env.lower()}"
        for lib, style in (("rl-ig", "-"), ("sb3", "--")):
            runs = _runs(folder, lib, algo, env) if folder.is_dir() else []
            if runs and not (lib == "sb3" and algo in ("npg", "acktr")):
                lines.append(_row(lib, algo, runs))
                _plot_curves(ax, runs, _label(lib, algo), colours[algo], style)
    ax.legend(loc="upper left", fontsize=8)
    name = env.lower()
    save_report(fig, lines, root / f"{name}-all-curves.png", root / f"{name}-all-summary.md")
