"""The report of ``scripts/compare.py``: ``OUT/report/report.md``, a self-contained
``report.html`` (figures as base64 data URIs, inline CSS) and the figures as PNG files.

Statistics over seeds come from :mod:`rl_ig.run.stats`; the figures from
:mod:`compare_figures`. Every file is written atomically (a temporary file renamed).
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from compare_figures import CONFIDENCE, FigureResult, make_figures
from compare_runs import STEP, RunData, by_algo

from rl_ig.checkpoint import atomic_write
from rl_ig.run.stats import BOOTSTRAP_SEED, N_RESAMPLES, bootstrap_ci, iqm, share_above

NONE = "—"
SUMMARY_HEADER = (
    "Algorithm",
    "Runs (completed)",
    "Actor / critic",
    f"Final return: mean [{CONFIDENCE:.0%} CI]",
    "IQM",
    "Wall time (s)",
    "Steps/s",
    "Updates with KL > bound",
)
RUN_HEADER = ("Run", "Status", "Steps", "Wall time (s)", "Final return", "From", "Geometry log")
CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222;
       padding: 0 1em; line-height: 1.45; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th { background: #f2f2f2; } td:first-child, th:first-child { text-align: left; }
table.settings td { text-align: left; }
figure { margin: 1.5em 0; } img { max-width: 100%; }
figcaption, .note { color: #555; font-size: 0.92em; } code { background: #f4f4f4; }
"""


@dataclass(frozen=True)
class AlgoSummary:
    """The summary row of one algorithm, over its seeds."""

    algo: str
    runs: int
    completed: int
    network: str
    finals: tuple[float, ...]
    wall_times: tuple[float, ...]
    steps_per_s: tuple[float, ...]
    kl_exceed: float | None
    measured: int
    kl_logged: int


def _network(run: RunData) -> str:
    """``64-64 / 64-64``: the hidden sizes of a run's actor and critic, from its summary."""
    policy = run.summary.get("hyperparameters", {}).get("policy", {})
    if not isinstance(policy, dict) or "pi" not in policy:
        return "?"
    return " / ".join(
        "-".join(str(n) for n in policy.get(k) or []) or "linear" for k in ("pi", "vf")
    )


def _kl_pairs(runs: Sequence[RunData]) -> tuple[np.ndarray, np.ndarray]:
    """``geometry/kl_mean`` and ``geometry/kl_bound`` of every measured update of ``runs``."""
    pairs = [
        (r.geometry["geometry/kl_mean"], r.geometry["geometry/kl_bound"])
        for r in runs
        if "geometry/kl_mean" in r.geometry and "geometry/kl_bound" in r.geometry
    ]
    if not pairs:
        return np.empty(0), np.empty(0)
    return np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])


def summarise(algo: str, runs: Sequence[RunData]) -> AlgoSummary:
    """The summary of one algorithm's runs."""
    finals = [f[0] for f in (r.final_return() for r in runs) if f is not None]
    walls = [(r.wall_time(), r.steps) for r in runs]
    kl, bound = _kl_pairs(runs)
    return AlgoSummary(
        algo=algo,
        runs=len(runs),
        completed=sum(r.status == "completed" for r in runs),
        network=", ".join(dict.fromkeys(_network(r) for r in runs)),
        finals=tuple(finals),
        wall_times=tuple(w for w, _ in walls if w is not None),
        steps_per_s=tuple(s / w for w, s in walls if w and s is not None),
        kl_exceed=share_above(kl, bound),
        measured=int(np.sum(np.isfinite(kl) & np.isfinite(bound))),
        kl_logged=int(np.sum(np.isfinite(kl))),
    )


def _number(value: float | None, digits: int = 1) -> str:
    return NONE if value is None or not math.isfinite(value) else f"{value:,.{digits}f}"


def summary_cells(s: AlgoSummary) -> list[str]:
    """The formatted cells of one summary row (see :data:`SUMMARY_HEADER`)."""
    if s.finals:
        low, high = bootstrap_ci(s.finals, CONFIDENCE)
        interval = f"[{_number(low)}, {_number(high)}]" if len(s.finals) > 1 else "(one seed)"
        final, middle = f"{_number(float(np.mean(s.finals)))} {interval}", _number(iqm(s.finals))
    else:
        final = middle = NONE
    walls, rates = s.wall_times, s.steps_per_s
    if s.kl_exceed is not None:
        exceed = f"{s.kl_exceed:.1%} of {s.measured}"
    else:
        exceed = f"{NONE} (no bound)" if s.kl_logged else "not measured"
    return [
        s.algo,
        f"{s.runs} ({s.completed})",
        s.network,
        final,
        middle,
        _number(float(np.mean(walls)) if walls else None, 0),
        _number(float(np.mean(rates)) if rates else None, 0),
        exceed,
    ]


def run_cells(run: RunData) -> list[str]:
    """The formatted cells of one run (see :data:`RUN_HEADER`)."""
    final = run.final_return()
    return [
        run.path.name,
        run.status,
        NONE if run.steps is None else f"{run.steps:,}",
        _number(run.wall_time(), 0),
        NONE if final is None else _number(final[0]),
        NONE if final is None else final[1],
        run.geometry_source or NONE,
    ]


def _final_note(runs: Sequence[RunData]) -> str:
    sources = [f[1] for f in (r.final_return() for r in runs) if f is not None]
    evaluated, trained = sources.count("evaluation"), sources.count("training")
    return (
        f"Final return: the mean return of the last evaluation in `evaluations.csv` "
        f"(deterministic policy) for {evaluated} run(s); the mean of `rollout/ep_rew_mean` over "
        f"the last 10% of `progress.csv` rows (stochastic training policy) for {trained} run(s)."
    )


def notes(runs: Sequence[RunData]) -> list[str]:
    """How every number of the summary table is computed."""
    return [
        _final_note(runs),
        f"CI: {CONFIDENCE:.0%} percentile bootstrap of the mean over seeds ({N_RESAMPLES:,} "
        f"resamples of whole seeds, `numpy.random.default_rng({BOOTSTRAP_SEED})`).",
        "IQM: interquartile mean over seeds, `scipy.stats.trim_mean(x, 0.25)`; it cuts "
        "⌊n/4⌋ seeds from each end, so with fewer than 4 seeds it equals the mean.",
        "Wall time: training seconds (`time/time_elapsed` of the last update, summed over "
        "resumed segments; geometry measurements included), mean over seeds. Steps/s: "
        "environment steps / wall time, mean over seeds.",
        "KL > bound: share of measured updates whose `geometry/kl_mean` exceeds "
        f"`geometry/kl_bound`, all seeds pooled; {NONE} when the algorithm has no bound, "
        "not measured when no run logged both columns.",
    ]


@dataclass(frozen=True)
class Report:
    """Everything the report shows."""

    title: str
    settings: list[tuple[str, str]]
    summary: list[list[str]]
    runs: list[list[str]]
    notes: list[str]
    figures: list[FigureResult]


def build_report(runs: list[RunData], settings: list[tuple[str, str]], title: str) -> Report:
    """The report of ``runs``; ``settings`` are shown as given."""
    groups = by_algo(runs)
    return Report(
        title=title,
        settings=settings,
        summary=[summary_cells(summarise(a, rs)) for a, rs in groups.items()],
        runs=[run_cells(r) for r in runs],
        notes=notes(runs),
        figures=make_figures(groups),
    )


def _md_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], numbers: bool = True
) -> list[str]:
    """A markdown table; ``numbers``: every column but the first right-aligned."""

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    align = ["---"] + ["---:" if numbers else "---"] * (len(header) - 1)
    return [line(header), "|" + "|".join(align) + "|", *(line(r) for r in rows)]


def markdown(report: Report) -> str:
    """``report.md``: tables and notes, figures linked to the PNG files beside it."""
    settings = _md_table(("Setting", "Value"), report.settings, numbers=False)
    lines = [f"# {report.title}", "", *settings, ""]
    lines += ["## Summary", "", *_md_table(SUMMARY_HEADER, report.summary), ""]
    lines += [f"- {note}" for note in report.notes]
    lines += ["", "## Runs", "", *_md_table(RUN_HEADER, report.runs), "", "## Figures", ""]
    for fig in report.figures:
        lines += [f"### {fig.title}", ""]
        if fig.png is not None:
            lines += [f"![{fig.title}]({fig.name})", ""]
        lines += [fig.caption if fig.png is not None else f"*{fig.caption}*", ""]
    return "\n".join(lines)


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]], css_class: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    attribute = f' class="{css_class}"' if css_class else ""
    return f"<table{attribute}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html_figure(fig: FigureResult) -> str:
    parts = [f"<h3>{html.escape(fig.title)}</h3>"]
    if fig.png is None:
        return parts[0] + f'<p class="note"><em>{html.escape(fig.caption)}</em></p>'
    data = base64.b64encode(fig.png).decode("ascii")
    alt = html.escape(fig.title, quote=True)
    parts.append(
        f'<figure><img alt="{alt}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(fig.caption)}</figcaption></figure>"
    )
    return "".join(parts)


def _inline_code(text: str) -> str:
    """Escape ``text`` and turn its ``code`` spans into ``<code>`` elements."""
    pieces = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(pieces))


def to_html(report: Report) -> str:
    """``report.html``: the same content, self-contained (no external resource)."""
    title = html.escape(report.title)
    notes_html = "".join(f"<li>{_inline_code(n)}</li>" for n in report.notes)
    body = [
        f"<h1>{title}</h1>",
        _html_table(("Setting", "Value"), report.settings, "settings"),
        "<h2>Summary</h2>",
        _html_table(SUMMARY_HEADER, report.summary),
        f"<ul>{notes_html}</ul>",
        "<h2>Runs</h2>",
        _html_table(RUN_HEADER, report.runs),
        "<h2>Figures</h2>",
        *(_html_figure(fig) for fig in report.figures),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title><style>{CSS}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


FILE_MODE = 0o644
"""Report files are readable by all, like any other written file (not the 0600 of a
temporary file)."""


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (a temporary file renamed onto it)."""

    def write(tmp: Path) -> None:
        tmp.write_bytes(data)
        tmp.chmod(FILE_MODE)

    atomic_write(path, write)


def write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_report(report: Report, out: Path) -> list[Path]:
    """Write the PNGs, ``report.md`` and ``report.html`` into ``out``; the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for fig in report.figures:
        if fig.png is not None:
            write_bytes(out / fig.name, fig.png)
            written.append(out / fig.name)
        else:
            (out / fig.name).unlink(missing_ok=True)  # a figure of an earlier report
    write_text(out / "report.md", markdown(report))
    write_text(out / "report.html", to_html(report))
    return [*written, out / "report.md", out / "report.html"]


def settings_from_runs(runs: Sequence[RunData], saved: dict[str, Any]) -> list[tuple[str, str]]:
    """The settings table: those ``compare.py`` saved, completed from the runs' summaries."""
    summaries = [r.summary for r in runs if r.summary]
    envs = sorted({str(s.get("env_id")) for s in summaries if s.get("env_id")})
    totals = sorted({int(s["total_timesteps"]) for s in summaries if "total_timesteps" in s})
    last_steps = [
        r.progress[STEP][-1] for r in runs if STEP in r.progress and r.progress[STEP].size
    ]
    steps = saved.get("steps") or (totals[0] if len(totals) == 1 else None)
    rows = [
        ("Environment", saved.get("env") or ", ".join(envs) or NONE),
        ("Algorithms", ", ".join(dict.fromkeys(r.algo for r in runs))),
        ("Seeds", ", ".join(str(s) for s in sorted({r.seed for r in runs}))),
        ("Steps per run", f"{int(steps):,}" if steps else _steps_range(totals, last_steps)),
        ("Network (hidden sizes, actor and critic)", str(saved.get("net_arch", NONE))),
        ("Hyperparameter overrides", ", ".join(saved.get("hp", [])) or "none"),
        ("Geometry measured every", _every(saved.get("geometry_every"))),
    ]
    if saved.get("command"):
        rows.append(("Command", str(saved["command"])))
    return rows


def _steps_range(totals: list[int], last: list[float]) -> str:
    values = totals or [int(v) for v in last if math.isfinite(v)]
    return NONE if not values else f"{min(values):,} to {max(values):,}"


def _every(value: Any) -> str:
    if value is None:
        return "train.py's default"
    return f"{value} updates"
