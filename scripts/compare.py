"""Compare policy-update geometries: train every (algorithm, seed) pair and report.

``--env HalfCheetah --algos trpo,npg,ppo,acktr,a2c --seeds 3 --steps 1e6 --out DIR`` runs
``scripts/train.py`` for each pair, ``--jobs`` at a time, into ``DIR/runs/<algo>-s<seed>/``, on
the same seeds (0 .. N-1) and the same hidden layer sizes (``--net-arch``, for actor and critic;
each agent keeps its tuned activation and initialisation and all its other tuned
hyperparameters), then writes ``DIR/report/`` (``report.md``, a self-contained ``report.html``
and the figures as PNG files). Runs already completed are skipped and interrupted ones resume
from their checkpoint, so the same command resumes a comparison; Ctrl-C stops every run after
its current update and saves it.

``--report-only DIR`` rebuilds the report from existing runs; ``--experiment invariance``
measures that the natural gradient does not depend on the parameterisation
(:mod:`rl_ig.geometry.invariance`). Every bad input is one line ``error: ...`` with exit code 2.
"""

from __future__ import annotations

import argparse
import difflib
import json
import shlex
import signal
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import gymnasium
from compare_invariance import run_invariance
from compare_jobs import Action, Outcome, Pool, RunSpec, plan
from compare_report import build_report, settings_from_runs, write_report
from compare_runs import discover_runs, read_json, run_name

import envs
from agents import ALGOS
from agents.common.config import build_config
from agents.hyperparams import (
    default_hyperparameters,
    merge_hyperparameters,
    parse_overrides,
    split_hyperparameters,
    zoo_literal,
)
from rl_ig.run import (
    EXIT_ABORTED,
    OneLineParser,
    parse_steps,
    report_early_interrupt,
    report_usage_error,
    writable_dir,
    write_json,
)

SCRIPT = "scripts/compare.py"
EXIT_FAILED = 1
"""Exit code when some run failed (the report is still written from the others)."""
SETTINGS_FILE = "compare.json"
INVARIANCE_OUT = "runs/invariance"


def build_parser() -> argparse.ArgumentParser:
    """The command line; see ``--help``."""
    p = OneLineParser(description=__doc__.splitlines()[0], hint=f"see {SCRIPT} --help")
    p.add_argument("--env", help="short name (HalfCheetah) or gymnasium id")
    p.add_argument("--algos", default=",".join(ALGOS), help="comma-separated (default: all five)")
    p.add_argument("--seeds", type=int, default=3, metavar="N", help="seeds 0..N-1 (default: 3)")
    p.add_argument("--steps", default="1e6", help="environment steps per run (default: 1e6)")
    p.add_argument("--jobs", type=int, default=2, metavar="N", help="runs at a time (default: 2)")
    p.add_argument(
        "--out", metavar="DIR", help=f"output directory (--experiment: {INVARIANCE_OUT})"
    )
    p.add_argument(
        "--net-arch",
        default="64,64",
        metavar="SIZES",
        help="hidden sizes of every actor and critic (default: 64,64; tuned: each agent's own)",
    )
    p.add_argument(
        "--geometry-every", type=int, metavar="N", help="measure every N-th update (train.py's)"
    )
    p.add_argument(
        "--hp", action="append", default=[], metavar="ALGO:KEY=VALUE", help="override, repeatable"
    )
    p.add_argument("--report-only", metavar="DIR", help="rebuild DIR/report without training")
    p.add_argument("--experiment", choices=("invariance",), help="run an experiment instead")
    return p


@dataclass(frozen=True)
class CompareConfig:
    """A validated comparison: what to train and where."""

    env: str
    algos: tuple[str, ...]
    seeds: int
    steps: int
    jobs: int
    out: Path
    net_arch: tuple[int, ...] | None
    geometry_every: int | None
    hp: dict[str, tuple[str, ...]]
    hyperparameters: dict[str, dict[str, Any]] = field(default_factory=dict)


def parse_algos(text: str) -> tuple[str, ...]:
    """``--algos`` as known names, in order, without repeats; one-line ``ValueError``."""
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    if not names:
        raise ValueError(f"--algos is empty; pass some of: {', '.join(ALGOS)}")
    for name in names:
        if name not in ALGOS:
            close = difflib.get_close_matches(name, list(ALGOS), n=2)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(
                f"unknown algo {name!r} in --algos{hint} (choose from: {', '.join(ALGOS)})"
            )
    return tuple(dict.fromkeys(names))


def parse_net_arch(text: str) -> tuple[int, ...] | None:
    """``--net-arch 64,64`` as sizes; ``tuned`` (each agent's own network) as ``None``."""
    if text.strip().lower() == "tuned":
        return None
    try:
        sizes = tuple(int(s) for s in text.split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise ValueError(
            f"--net-arch must be hidden layer sizes such as 64,64 (or 'tuned'), got {text!r}"
        )
    return sizes


def parse_hp(items: list[str], algos: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """``--hp algo:key=value`` items as ``{algo: ("key=value", ...)}``."""
    out: dict[str, list[str]] = {algo: [] for algo in algos}
    for item in items:
        algo, sep, setting = item.partition(":")
        if not sep or "=" not in setting:
            raise ValueError(
                f"--hp {item!r} is not of the form algo:key=value (e.g. --hp trpo:max_kl=0.02)"
            )
        if algo.strip().lower() not in out:
            raise ValueError(
                f"--hp {item!r} names algo {algo!r}, which is not in --algos "
                f"{','.join(algos)}; add it to --algos or drop the --hp"
            )
        out[algo.strip().lower()].append(setting)
    return {algo: tuple(values) for algo, values in out.items()}


def check_positive(flag: str, value: int | None, low: int = 1) -> None:
    """One-line ``ValueError`` unless ``value`` is ``None`` or ``>= low``."""
    if value is not None and value < low:
        raise ValueError(f"{flag} must be an integer >= {low}, got {value}")


def check_writable(flag: str, path: Path) -> Path:
    """Create ``path`` and check that files can be written in it; one-line ``OSError``."""
    return writable_dir(path, flag, flag)


def validate(args: argparse.Namespace) -> CompareConfig:
    """Every flag of a comparison checked; raises one-line ``ValueError``/``OSError``."""
    if not args.env:
        raise ValueError("pass --env, e.g. --env HalfCheetah (or --report-only DIR)")
    if not args.out:
        raise ValueError("pass --out DIR, the directory for the runs and the report")
    algos = parse_algos(args.algos)
    check_positive("--seeds", args.seeds)
    check_positive("--jobs", args.jobs)
    check_positive("--geometry-every", args.geometry_every, low=0)
    config = CompareConfig(
        env=envs.resolve_env_id(args.env),
        algos=algos,
        seeds=args.seeds,
        steps=parse_steps(args.steps, "1000000 or 1e6"),
        jobs=args.jobs,
        out=check_writable("--out", Path(args.out)),
        net_arch=parse_net_arch(args.net_arch),
        geometry_every=args.geometry_every,
        hp=parse_hp(args.hp, algos),
    )
    space = envs.action_space(config.env)
    built = {a: check_hyperparameters(a, config.env, space, overrides(config, a)) for a in algos}
    return replace(config, hyperparameters=built)


def shared_network(algo: str, env: str, sizes: tuple[int, ...]) -> str:
    """``policy_kwargs=...`` giving ``algo`` hidden ``sizes`` for actor and critic and keeping
    the rest of its tuned network settings (activation, initialisation)."""
    defaults = default_hyperparameters(algo, env)
    policy = defaults.get("policy_kwargs", defaults.get("policy"))
    if isinstance(policy, str) and "policy_kwargs" in defaults:
        policy = zoo_literal("policy_kwargs", policy)
    kept = dict(policy) if isinstance(policy, dict) else {}
    kept.pop("net_arch", None)
    return "policy_kwargs=" + json.dumps({**kept, "pi": list(sizes), "vf": list(sizes)})


def overrides(config: CompareConfig, algo: str) -> list[str]:
    """The ``key=value`` settings passed to ``algo``'s runs: the shared network (unless the
    user set ``algo``'s network with ``--hp``), then the user's ``--hp``."""
    own = list(config.hp.get(algo, ()))
    sets_network = any(item.split("=", 1)[0].strip() in ("policy", "policy_kwargs") for item in own)
    if config.net_arch is None or sets_network:
        return own
    return [shared_network(algo, config.env, config.net_arch), *own]


def check_hyperparameters(
    algo: str, env: str, space: gymnasium.Space, items: list[str]
) -> dict[str, Any]:
    """Build ``algo``'s configuration as ``train.py`` would, to catch bad ``--hp`` early.

    Returns:
        The configuration as ``run_summary.json`` records it (``hyperparameters``).
    """
    cls = ALGOS[algo]
    try:
        hp = merge_hyperparameters(
            default_hyperparameters(algo, env), parse_overrides(items), cls.aliases, cls.conventions
        )
        _, agent_hp = split_hyperparameters(hp)
        agent_hp = cls.resolve_hyperparameters(agent_hp, space)
        config: Any = build_config(cls.config_class, agent_hp, aliases=cls.aliases)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"--hp for {algo}: {exc}") from None
    return json.loads(json.dumps(asdict(config)))


def run_specs(config: CompareConfig) -> list[RunSpec]:
    """Every (algorithm, seed) run, seed-major so that early results cover every algorithm."""
    specs = []
    for seed in range(config.seeds):
        for algo in config.algos:
            logdir = config.out / "runs" / run_name(algo, seed)
            args = ["--algo", algo, "--env", config.env, "--seed", str(seed)]
            args += ["--steps", str(config.steps), "--logdir", str(logdir), "--no-progress"]
            for item in overrides(config, algo):
                args += ["--hp", item]
            if config.geometry_every is not None:
                args += ["--geometry-every", str(config.geometry_every)]
            specs.append(RunSpec(algo=algo, seed=seed, logdir=logdir, args=tuple(args)))
    return specs


def save_settings(config: CompareConfig, argv: list[str]) -> None:
    """``OUT/compare.json``: what the report shows as its settings."""
    arch = "each agent's tuned network" if config.net_arch is None else config.net_arch
    hp = [f"{algo}:{item}" for algo, items in config.hp.items() for item in items]
    write_json(
        config.out / SETTINGS_FILE,
        {
            "env": config.env,
            "algos": list(config.algos),
            "seeds": config.seeds,
            "steps": config.steps,
            "net_arch": "-".join(map(str, arch)) if isinstance(arch, tuple) else arch,
            "hp": hp,
            "geometry_every": config.geometry_every,
            "command": shlex.join(["python", SCRIPT, *argv]),
        },
    )


def print_outcome(index: int, total: int, outcome: Outcome) -> None:
    """One line per finished (or skipped) run."""
    width = len(str(total))
    print(f"[{index:>{width}}/{total}] {outcome.spec.name}: {outcome.message}", flush=True)


def make_report(out: Path) -> Path:
    """Build ``out/report`` from ``out/runs``; the path of ``report.md``.

    Raises:
        ValueError: when ``out/runs`` holds no run.
    """
    saved = read_json(out / SETTINGS_FILE)
    order = saved.get("algos") if isinstance(saved.get("algos"), list) else list(ALGOS)
    runs = discover_runs(out / "runs", order)
    if not runs:
        raise ValueError(
            f"{out} has no runs (no {out}/runs/<algo>-s<seed>/ with a progress.csv or "
            "run_summary.json); pass the --out of an earlier compare.py run"
        )
    env = saved.get("env") or next((r.summary.get("env_id") for r in runs if r.summary), "")
    title = f"Comparing policy-update geometries{f' on {env}' if env else ''}"
    report = build_report(runs, settings_from_runs(runs, saved), title)
    written = write_report(report, out / "report")
    return next(p for p in written if p.name == "report.md")


def compare(config: CompareConfig, argv: list[str]) -> int:
    """Train what is missing, then report; the exit code."""
    specs = run_specs(config)
    todo: list[tuple[RunSpec, Action]] = [
        (spec, plan(spec, config.steps, config.hyperparameters.get(spec.algo))) for spec in specs
    ]
    save_settings(config, argv)
    print(f"{len(specs)} runs into {config.out / 'runs'}, {config.jobs} at a time", flush=True)
    pool = Pool(config.jobs, print_outcome)
    outcomes = pool.run(todo)
    if pool.interrupts:
        again = shlex.join(["python", SCRIPT, *argv])
        print(f"interrupted; to resume, run the same command again: {again}")
        return EXIT_ABORTED
    failed = [o.spec.name for o in outcomes if o.status == "failed"]
    try:
        report = make_report(config.out)
    except ValueError as exc:  # every run failed before logging anything
        print(f"no report: {exc}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"interrupted while writing the report; rebuild it with --report-only {config.out}")
        return EXIT_ABORTED
    print(f"report: {report} and {report.with_suffix('.html')}")
    if failed:
        print(f"{len(failed)} run(s) failed: {', '.join(failed)}; see their train.log")
        return EXIT_FAILED
    return 0


def _dispatch(args: argparse.Namespace, argv: list[str]) -> int:
    if args.experiment and args.report_only:
        raise ValueError("pass --experiment or --report-only, not both")
    if args.experiment:
        run_invariance(check_writable("--out", Path(args.out or INVARIANCE_OUT)))
        return 0
    if args.report_only:
        report = make_report(Path(args.report_only))
        print(f"report: {report} and {report.with_suffix('.html')}")
        return 0
    return compare(validate(args), argv)


def main(argv: list[str] | None = None) -> int:
    """Parse, validate, run; returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    # Ctrl-C (SIGINT) stops the runs with a checkpoint even where it was inherited as ignored,
    # as in a background job of a non-interactive shell, in which Python installs no handler.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return _dispatch(args, argv)
    except (ValueError, TypeError, OSError, gymnasium.error.Error) as exc:
        return report_usage_error(exc)
    except KeyboardInterrupt:
        return report_early_interrupt()


if __name__ == "__main__":
    sys.exit(main())
