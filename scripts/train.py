"""Train an agent with its tuned defaults, e.g. ``--algo trpo --env HalfCheetah``.

Hyperparameters come from ``agents/hyperparams.yaml`` (rl-baselines3-zoo names) and are
overridden by ``--hp key=value``. Logs (TensorBoard, ``progress.csv``, ``geometry.csv``: the
step geometry of every ``--geometry-every``-th update, ``evaluations.csv``), ``checkpoint.pt``,
``final.pt`` and ``run_summary.json`` go to ``--logdir``. Ctrl-C stops after
the current update and saves ``checkpoint.pt``; ``--resume`` continues from it. Every bad input
is reported as one line ``error: ...`` on stderr with exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import json
import sys
from pathlib import Path
from typing import Any

import gymnasium
from stable_baselines3.common.vec_env import VecEnv

import envs
from agents import ALGOS, CheckpointError, OnPolicyAgent
from agents.common.checkpoint import load_checkpoint
from agents.common.config import build_config
from agents.common.geometry import DEFAULT_GEOMETRY_EVERY
from agents.common.runtime import configure_runtime
from agents.hyperparams import (
    RunSettings,
    default_hyperparameters,
    merge_hyperparameters,
    parse_overrides,
    split_hyperparameters,
)
from agents.training import RunResult, TrainingConfig, TrainingRun
from rl_ig.run import (
    EXIT_ABORTED,
    CsvLogError,
    OneLineParser,
    parse_steps,
    prepare_logdir,
    report_early_interrupt,
    report_usage_error,
    resume_command,
)

SCRIPT = "scripts/train.py"
STEPS_EXAMPLES = "1000000 or 1e6"
_META_KEYS = ("algo", "seed", "config", "num_timesteps", "n_updates", "env")


def geometry_every(text: str) -> int:
    """``--geometry-every`` as an int >= 0; argparse turns the error into one line."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(
            f"must be a whole number of updates >= 0 such as 10 (0: never), got {text!r}"
        )
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command line; see ``--help``."""
    p = OneLineParser(description=__doc__.splitlines()[0], hint=f"see {SCRIPT} --help")
    p.add_argument("--algo", required=True, help=f"one of: {', '.join(ALGOS)}")
    p.add_argument("--env", required=True, help="short name (HalfCheetah) or gymnasium id")
    p.add_argument("--steps", help="total environment steps, e.g. 1e6 (default: tuned value)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-envs", type=int, help="parallel environments (default: tuned value)")
    p.add_argument("--logdir", help="output directory (default: runs/{algo}-{env}-s{seed})")
    p.add_argument(
        "--hp", action="append", default=[], metavar="KEY=VALUE", help="override (repeatable)"
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--eval-every", type=int, default=0, help="steps; 0: only at the end")
    p.add_argument("--eval-episodes", type=int, default=5)
    p.add_argument("--save-every", type=int, default=100_000, help="checkpoint cadence in steps")
    p.add_argument(
        "--geometry-every",
        type=geometry_every,
        metavar="N",
        help="measure the step geometry (geometry.csv) every N updates; 0: never "
        f"(default: {DEFAULT_GEOMETRY_EVERY}, or the checkpoint's with --resume)",
    )
    p.add_argument("--resume", metavar="PATH", help="continue training from this checkpoint")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def algo_class(name: str) -> type[OnPolicyAgent]:
    """The agent class for ``--algo``; a one-line error with close names otherwise."""
    if name in ALGOS:
        return ALGOS[name]
    close = difflib.get_close_matches(name.lower(), list(ALGOS), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"unknown algo {name!r}{hint} (choose from: {', '.join(ALGOS)})")


def env_label(name: str, env_id: str) -> str:
    """The env part of the default logdir: the short name, or the id as typed."""
    if name in gymnasium.envs.registry:
        return env_id.replace("/", "_")
    return env_id.rsplit("-v", 1)[0]


def make_env(env_id: str, run: RunSettings, gamma: float, n_envs: int, seed: int) -> VecEnv:
    """An environment with the run's settings; ``functools.partial`` it into a factory."""
    return envs.make_vec_env(
        env_id,
        n_envs,
        seed,
        normalize_obs=run.normalize_obs,
        normalize_reward=run.normalize_reward,
        gamma=gamma,
    )


def read_resume_meta(path: str, algo: str) -> dict[str, Any]:
    """The metadata of the checkpoint ``--resume`` names, checked to be a whole ``algo`` one.

    Raises:
        CheckpointError: for a missing, corrupt, foreign or damaged file.
        ValueError: for a checkpoint of another algorithm.
    """
    meta, _ = load_checkpoint(path)
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path} is a damaged rl-ig checkpoint (bad metadata)")
    if meta.get("algo") != algo:
        raise ValueError(
            f"checkpoint {path} holds a {meta.get('algo')!r} agent, not {algo!r}; "
            f"pass --algo {meta.get('algo')}"
        )
    missing = [k for k in _META_KEYS if k not in meta]
    if missing or not isinstance(meta["config"], dict) or not isinstance(meta["env"], dict):
        raise CheckpointError(
            f"{path} is a damaged rl-ig checkpoint (no {', '.join(missing) or 'config'})"
        )
    return meta


def check_resume(
    meta: dict[str, Any],
    path: str,
    *,
    env_id: str,
    seed: int,
    run: RunSettings,
    config: Any,
    total: int,
) -> None:
    """Check that the checkpoint continues the run these settings describe.

    Raises:
        ValueError: naming the first setting that differs and the flag that fixes it.
    """
    env = meta["env"]
    norm = [env.get("normalize_obs"), env.get("normalize_reward")]
    saved = {
        "environment": (env.get("id"), env_id, f"--env {env.get('id')}"),
        "seed": (meta["seed"], seed, f"--seed {meta['seed']}"),
        "n_envs": (env.get("n_envs"), run.n_envs, f"--n-envs {env.get('n_envs')}"),
        "normalize": (
            norm,
            [run.normalize_obs, run.normalize_reward],
            f"--hp normalize={{norm_obs: {norm[0]}, norm_reward: {norm[1]}}}",
        ),
    }
    for what, (was, now, fix) in saved.items():
        if was != now:
            raise ValueError(
                f"checkpoint {path} was trained with {what} {was!r}, not {now!r}; pass {fix}"
            )
    wanted = json.loads(json.dumps(dataclasses.asdict(config)))
    differ = [
        f"{k}={v!r} (not {wanted.get(k)!r})"
        for k, v in meta["config"].items()
        if wanted.get(k) != v
    ]
    if differ:
        raise ValueError(
            f"checkpoint {path} was trained with {', '.join(differ)}; resume with the "
            "hyperparameters it was trained with (the same --hp)"
        )
    if meta["num_timesteps"] >= total:
        raise ValueError(
            f"checkpoint {path} already has {meta['num_timesteps']} steps, not fewer than "
            f"--steps {total}; pass a larger --steps"
        )


def setup(args: argparse.Namespace) -> TrainingRun:
    """Validate every input and build the agent and its run; raises one-line errors."""
    configure_runtime(args.threads)
    cls = algo_class(args.algo)
    env_id = envs.resolve_env_id(args.env)
    overrides = parse_overrides(args.hp)
    hp = merge_hyperparameters(
        default_hyperparameters(args.algo, env_id), overrides, cls.aliases, cls.conventions
    )
    run, agent_hp = split_hyperparameters(hp)
    agent_hp = cls.resolve_hyperparameters(agent_hp, envs.action_space(env_id))
    if args.n_envs is not None:
        run = dataclasses.replace(run, n_envs=args.n_envs)
    config = build_config(cls.config_class, agent_hp, aliases=cls.aliases)
    total = parse_steps(args.steps, STEPS_EXAMPLES) if args.steps is not None else run.n_timesteps
    label = env_label(args.env, env_id)
    logdir = prepare_logdir(args.logdir or f"runs/{args.algo}-{label}-s{args.seed}")
    factory = functools.partial(make_env, env_id, run, config.gamma)
    if args.resume:
        meta = read_resume_meta(args.resume, args.algo)
        check_resume(
            meta, args.resume, env_id=env_id, seed=args.seed, run=run, config=config, total=total
        )
        env = factory(run.n_envs, args.seed)
        every = args.geometry_every  # None: the checkpoint's
        agent = cls.load(args.resume, env=env, device=args.device, geometry_every=every)
    else:
        every = DEFAULT_GEOMETRY_EVERY if args.geometry_every is None else args.geometry_every
        env = factory(run.n_envs, args.seed)
        agent = cls(env, seed=args.seed, device=args.device, geometry_every=every, **agent_hp)
    training = TrainingConfig(
        logdir=logdir,
        total_timesteps=total,
        save_every=args.save_every,
        eval_every=args.eval_every,
        eval_episodes=args.eval_episodes,
        progress=not args.no_progress,
        continue_logs=bool(args.resume),
        resumed_from=Path(args.resume) if args.resume else None,
    )
    return TrainingRun(agent, training, factory)


def report(result: RunResult, argv: list[str]) -> None:
    """Tell the user where everything went and the final evaluation."""
    paths = result.paths
    print(
        f"logs:        {paths.logdir} (tensorboard --logdir {paths.logdir}; {paths.progress.name})"
    )
    if paths.evaluations.is_file():
        print(f"evaluations: {paths.evaluations}")
    print(f"summary:     {paths.summary}")
    if result.status == "completed":
        print(f"final model: {paths.final_model}")
        if paths.checkpoint.is_file():
            print(f"checkpoint:  {paths.checkpoint} (saved during training)")
    if result.status == "interrupted":
        print(f"interrupted at step {result.num_timesteps}; checkpoint saved to {paths.checkpoint}")
        print(f"resume with: {resume_command(SCRIPT, argv, paths.checkpoint)}")
    if result.status == "aborted":
        print(
            f"aborted at step {result.num_timesteps} without saving; earlier checkpoints (if "
            f"any) are in {paths.logdir}"
        )
    evaluation = result.final_eval
    if evaluation is None:
        print("final eval return: none (no evaluation ran)")
    else:
        print(
            f"final eval return: {evaluation.mean_reward:.2f} +/- {evaluation.std_reward:.2f} "
            f"over {len(evaluation.returns)} episodes"
        )


def main(argv: list[str] | None = None) -> int:
    """Parse, set up, train, report; returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    try:
        training = setup(args)
    except (ValueError, TypeError, OSError, CheckpointError, gymnasium.error.Error) as exc:
        return report_usage_error(exc)
    except KeyboardInterrupt:
        return report_early_interrupt()
    try:
        result = training.run()
    except CsvLogError as exc:  # a log in the logdir of a resumed run that cannot be continued
        return report_usage_error(exc)
    except KeyboardInterrupt:  # a second Ctrl-C while the logs were being opened
        return report_early_interrupt()
    finally:
        training.agent.env.close()
    report(result, argv)
    return EXIT_ABORTED if result.status == "aborted" else 0


if __name__ == "__main__":
    sys.exit(main())
