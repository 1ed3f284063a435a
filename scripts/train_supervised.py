"""Train a supervised task with an rl-ig optimizer, e.g. ``--task curves --optim kfac``.

Tasks: curves (the K-FAC paper's deep autoencoder on CURVES-style images), digits-mlp and
digits-cnn (scikit-learn's 8x8 digits), teacher (teacher-student regression). Optimizers: kfac,
shampoo, adam, sgd. Batch size, steps and each optimizer's learning rate default to the task's
values (``rl_ig.supervised.defaults``); ``--hp key=value`` sets any other optimizer argument.
K-FAC estimates the true Fisher from targets sampled from the model (``--hp fisher=sampled``,
the default) or the empirical Fisher from the training targets (``--hp fisher=empirical``);
``--hp fisher_subsample=4`` reads the sampled Fisher's factors from every 4th example of each
batch, a quarter of the cost, while the gradient still uses the whole batch.

Logs (TensorBoard, ``progress.csv`` per step, ``evaluations.csv``), ``checkpoint.pt``,
``final.pt`` and ``run_summary.json`` go to ``--logdir``. Ctrl-C stops after the current step
and saves ``checkpoint.pt``; ``--resume`` continues from it bit for bit. Under
``torchrun --nproc_per_node=N`` the run is data-parallel (each process takes 1/N of every
batch). Every bad input is reported as one line ``error: ...`` on stderr with exit code 2.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

from rl_ig.run import (
    EXIT_ABORTED,
    OneLineParser,
    parse_steps,
    prepare_logdir,
    report_early_interrupt,
    report_usage_error,
    resume_command,
)
from rl_ig.supervised import OPTIMIZERS, TASKS, SupervisedRun, TrainConfig, make_task
from rl_ig.supervised.defaults import optimizer_settings, task_defaults
from rl_ig.supervised.optimizers import check_optimizer_name, parse_overrides
from rl_ig.supervised.parallel import DistContext, context_from_env, destroy_process_group
from rl_ig.supervised.trainer import RunResult

SCRIPT = "scripts/train_supervised.py"
STEPS_EXAMPLES = "2000 or 2e3"


def build_parser() -> argparse.ArgumentParser:
    """The command line; see ``--help``."""
    p = OneLineParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", required=True, help=f"one of: {', '.join(TASKS)}")
    p.add_argument("--optim", required=True, help=f"one of: {', '.join(OPTIMIZERS)}")
    p.add_argument("--steps", help="optimizer steps, e.g. 2000 or 2e3 (default: the task's)")
    p.add_argument("--batch-size", type=int, help="global minibatch size (default: the task's)")
    p.add_argument("--lr", help="learning rate > 0 (default: the task's for --optim)")
    p.add_argument(
        "--hp", action="append", default=[], metavar="KEY=VALUE", help="optimizer argument"
    )
    p.add_argument("--seed", type=int, default=0, help="model initialisation and batch order")
    p.add_argument("--data-seed", type=int, default=0, help="the data set (split, images)")
    p.add_argument(
        "--logdir",
        help="output directory (default: runs/sup-{task}-{optim}-s{seed}; with --resume, the "
        "checkpoint's directory)",
    )
    p.add_argument("--eval-every", type=int, help="steps; 0: only at start and end")
    p.add_argument("--save-every", type=int, default=500, help="checkpoint cadence in steps")
    p.add_argument("--resume", metavar="PATH", help="continue training from this checkpoint")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def parse_lr(text: str) -> float:
    """A finite learning rate > 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise ValueError(f"--lr must be a number > 0 such as 1e-3, got {text!r}")
    return value


def default_logdir(args: argparse.Namespace) -> str:
    if args.resume:
        return str(Path(args.resume).parent)
    return f"runs/sup-{args.task}-{args.optim}-s{args.seed}"


def build_config(args: argparse.Namespace, ctx: DistContext) -> TrainConfig:
    """The run's settings: the task's defaults under the flags given."""
    defaults = task_defaults(args.task)
    check_optimizer_name(args.optim)
    lr, hp = optimizer_settings(args.task, args.optim, parse_overrides(args.hp))
    logdir = Path(args.logdir or default_logdir(args))
    if ctx.is_main:
        prepare_logdir(logdir)
    return TrainConfig(
        optim=args.optim,
        lr=parse_lr(args.lr) if args.lr is not None else lr,
        hp=hp,
        steps=parse_steps(args.steps, STEPS_EXAMPLES) if args.steps is not None else defaults.steps,
        batch_size=args.batch_size if args.batch_size is not None else defaults.batch_size,
        logdir=logdir,
        seed=args.seed,
        eval_every=args.eval_every if args.eval_every is not None else defaults.eval_every,
        save_every=args.save_every,
        device=args.device,
        progress=not args.no_progress,
    )


def setup(args: argparse.Namespace, ctx: DistContext) -> SupervisedRun:
    """Validate every input and build the run; raises one-line errors."""
    if args.threads < 1:
        raise ValueError(f"--threads must be an integer >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    # Saturated logistic units (the CURVES autoencoder) produce subnormal floats, which x86 CPUs
    # without flush-to-zero handle in microcode: 445 ms against 38 ms per forward and backward
    # pass at batch 1000 on a Xeon. Flushing them to zero changes values below 1e-38 only.
    torch.set_flush_denormal(True)
    config = build_config(args, ctx)
    ctx.local_batch_size(config.batch_size)
    task = make_task(args.task, args.data_seed)
    return SupervisedRun(task, config, ctx=ctx, resume=args.resume)


def report(result: RunResult, argv: list[str]) -> None:
    """Tell the user where everything went and the final evaluation."""
    paths = result.paths
    print(f"logs:        {paths.logdir} (tensorboard --logdir {paths.logdir}; progress.csv)")
    print(f"summary:     {paths.summary}")
    if result.status == "completed":
        print(f"final model: {paths.final_model}")
    if result.status == "interrupted":
        print(f"interrupted at step {result.step}; checkpoint saved to {paths.checkpoint}")
        print(f"resume with: {resume_command(SCRIPT, argv, paths.checkpoint)}")
    if result.status == "aborted":
        print(f"aborted at step {result.step} without saving; earlier checkpoints are kept")
    if result.final_eval:
        text = ", ".join(f"{k.removeprefix('eval/')} {v:.4g}" for k, v in result.final_eval.items())
        print(f"final eval (step {result.step}): {text}")
    print(f"time: {result.train_time_s:.1f} s in optimizer steps, {result.wall_time_s:.1f} s wall")


def main(argv: list[str] | None = None) -> int:
    """Parse, set up, train, report; returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    try:
        ctx = context_from_env()
        run = setup(args, ctx)
    except (ValueError, TypeError, OSError) as exc:
        code = report_usage_error(exc)
        destroy_process_group()
        return code
    except KeyboardInterrupt:
        code = report_early_interrupt()
        destroy_process_group()
        return code
    try:
        result = run.run()
    except BaseException:
        destroy_process_group()
        raise
    destroy_process_group(synchronize=result.status != "aborted")
    if ctx.is_main:
        report(result, argv)
    return EXIT_ABORTED if result.status == "aborted" else 0


if __name__ == "__main__":
    sys.exit(main())
