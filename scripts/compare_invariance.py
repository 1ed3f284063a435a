"""``scripts/compare.py --experiment invariance``: the table, ``invariance.md`` and the bar chart
of :func:`rl_ig.geometry.invariance.invariance_experiment`."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from compare_report import write_bytes, write_text  # noqa: E402

from rl_ig.geometry.invariance import (  # noqa: E402
    InvarianceConfig,
    InvarianceResult,
    StepResult,
    invariance_experiment,
)

FLOOR = 1e-33
"""Bars below this (a KL of exactly 0 included) are drawn at it: the log axis has no zero."""
HEADER = (
    "Step",
    "KL(π_A' ‖ π_B')",
    "‖φ(θ_B') − θ_A'‖ / ‖Δ_A‖",
    "KL(π ‖ π_A')",
    "KL(π ‖ π_B')",
    "Step size",
)


def table_rows(result: InvarianceResult) -> list[list[str]]:
    """One row per step type (see :data:`HEADER`)."""

    def row(name: str, step: StepResult) -> list[str]:
        return [
            name,
            f"{step.kl_between:.2e}",
            f"{step.mismatch:.2e}",
            f"{step.kl_a:.4f}",
            f"{step.kl_b:.4f}",
            f"{step.step_size:.4g}",
        ]

    return [row("natural F⁻¹g", result.natural), row("plain g", result.plain)]


def text_table(result: InvarianceResult) -> str:
    """The table for the terminal."""
    rows = [list(HEADER), *table_rows(result)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def markdown(result: InvarianceResult, config: InvarianceConfig, png: str) -> str:
    """``invariance.md``."""
    rows = table_rows(result)
    lines = [
        "# Parameterisation invariance of the natural gradient",
        "",
        f"One Gaussian policy (tanh MLP {config.obs_dim} → {config.hidden} → {config.act_dim}, "
        f"state-independent log-std; {result.n_params} parameters, float64) in two coordinate "
        "systems: A = (W₁, b₁, W₂, b₂, log σ) and B with W₁ = D U₁, b₁ = D c₁, W₂ = U₂ M, "
        f"log σ = {config.log_std_scale:g} ρ (D diagonal in [1/{config.scale_range:g}, "
        f"{config.scale_range:g}], M = I + {config.mixing:g}·R/√{config.hidden}). Before the "
        f"step both define the same policy (KL {result.initial_kl:.1e}). On one batch of "
        f"{config.n_states} states (seed {config.seed}) each takes one natural step "
        "(F⁻¹g by undamped conjugate gradient, relative residual "
        f"{result.cg_residual:.1e}) and one plain-gradient step; each step type has one step "
        f"size for both systems, set so that A's step moves the policy by KL {config.target_kl}.",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|---|" + "---:|" * (len(HEADER) - 1),
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
        f"![KL between the two stepped policies]({png})",
        "",
        "The natural step lands on the same policy in both coordinate systems (to round-off); "
        "the plain step of the same size does not.",
        "",
    ]
    return "\n".join(lines)


def bar_chart(result: InvarianceResult) -> bytes:
    """KL(π_A' ‖ π_B') per step type on a log axis, with the step's own KL for scale."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    values = [result.natural.kl_between, result.plain.kl_between]
    bars = ax.bar(
        ["natural F⁻¹g", "plain g"], [max(v, FLOOR) for v in values], color=["tab:blue", "tab:gray"]
    )
    for bar, value in zip(bars, values):
        inside = bar.get_height() > 1e-20  # a tall bar: its label below the dashed line
        ax.annotate(
            f"{value:.1e}",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="top" if inside else "bottom",
            xytext=(0, -4 if inside else 3),
            textcoords="offset points",
            color="white" if inside else "black",
        )
    ax.axhline(
        result.natural.kl_a,
        color="black",
        linestyle="--",
        linewidth=1,
        label=f"KL of each step from π ({result.natural.kl_a:.2g})",
    )
    ax.set_yscale("log")
    ax.set_ylim(FLOOR / 10, 1.0)
    ax.set(title="Same step in two parameterisations", ylabel="KL(π_A' ‖ π_B') (nats)")
    ax.legend(loc="upper left", bbox_to_anchor=(0.0, -0.12), frameon=False)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def run_invariance(out: Path, config: InvarianceConfig | None = None) -> list[Path]:
    """Run the experiment, print its table and write ``invariance.md`` and the PNG to ``out``."""
    config = config or InvarianceConfig()
    result = invariance_experiment(config)
    print(text_table(result))
    out.mkdir(parents=True, exist_ok=True)
    png, md = out / "invariance.png", out / "invariance.md"
    write_bytes(png, bar_chart(result))
    write_text(md, markdown(result, config, png.name))
    print(f"report: {md}")
    return [md, png]
