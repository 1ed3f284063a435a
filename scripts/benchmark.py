"""Benchmarks: rl-ig against its Stable-Baselines3 / sb3-contrib counterpart at equal settings.

    python scripts/benchmark.py --algo trpo --env HalfCheetah            # throughput
    python scripts/benchmark.py --algo trpo --env HalfCheetah --returns --seeds 3 --steps 1e6
    python scripts/benchmark.py --fvp                                      # Fisher-vector products
    python scripts/benchmark.py --curves --target 60 --out docs/benchmarks/curves   # to a loss
    python scripts/benchmark.py --optim-step                       # Shampoo step time, memory
    python scripts/benchmark.py --curves-step --rounds 4           # CURVES training-step time
    python scripts/benchmark.py --curves-floor --rounds 5          # what no step can skip

Throughput runs each library in its own fresh process, alternating rl-ig and the reference for
``--rounds`` rounds, and reports steps/s for each and the ratio of medians. ``--returns`` trains
both to ``--steps`` on each seed, evaluates the final policies and draws learning curves.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmark_summary import REFERENCE_NAMES, summarize, summarize_all

from agents.hyperparams import parse_overrides

REFERENCE = REFERENCE_NAMES
"""What each rl-ig agent is measured against. NPG has no SB3 counterpart; TRPO is its nearest.
ACKTR's reference is SB3 A2C (SB3 has no ACKTR) with ACKTR's ``n_envs`` and ``n_steps``."""


LIBS = ("rl-ig", "sb3")

RL_IG_ONLY = frozenset({"compile"})
"""Settings of how rl-ig computes, not of what: the reference has no counterpart to pass."""


def zoo_settings(
    algo: str, env: str, overrides: dict[str, Any] | None = None
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """The env id, run settings and agent hyperparameters of the tuned defaults, with
    ``overrides`` (``--hp``) merged over them as ``scripts/train.py`` merges its own."""
    import envs
    from agents import ALGOS
    from agents.hyperparams import (
        default_hyperparameters,
        merge_hyperparameters,
        split_hyperparameters,
    )

    env_id = envs.resolve_env_id(env)
    hp = default_hyperparameters(algo, env_id)
    if overrides:
        cls = ALGOS[algo]
        hp = merge_hyperparameters(hp, overrides, cls.aliases, cls.conventions)
    run, agent_hp = split_hyperparameters(hp)
    return env_id, run.__dict__, agent_hp


def check_overrides(algo: str, env: str, items: list[str]) -> None:
    """Raise the agent's own one-line error if ``--hp`` items do not make a valid config."""
    import envs
    from agents import ALGOS
    from agents.common.config import build_config

    env_id, _, hp = zoo_settings(algo, env, parse_overrides(items))
    cls = ALGOS[algo]
    hp = cls.resolve_hyperparameters(hp, envs.action_space(env_id))
    build_config(cls.config_class, hp, aliases=cls.aliases)


def _sb3_schedule(value: Any) -> Any:
    """rl-zoo's ``lin_X`` as SB3's callable of the remaining progress."""
    if isinstance(value, str) and value.startswith("lin_"):
        start = float(value[4:])
        return lambda progress: progress * start
    return value


def _sb3_policy_kwargs(policy: dict[str, Any]) -> dict[str, Any]:
    """rl-zoo's parsed ``policy_kwargs`` with the activation name turned into the class."""
    from torch import nn

    kw = dict(policy)
    if "activation_fn" in kw:
        kw["activation_fn"] = getattr(nn, str(kw["activation_fn"]).split(".")[-1])
    return kw


def _sb3_kwargs(algo: str, env: str, hp: dict[str, Any]) -> dict[str, Any]:
    """The reference's keyword arguments for the same settings (zoo names are SB3's)."""
    if algo == "acktr":
        # SB3 A2C at ACKTR's rollout size: the A2C settings with ACKTR's n_steps.
        hp = {**zoo_settings("a2c", env)[2], "n_steps": hp.get("n_steps", 5)}
    names = {"cg_iters": "cg_max_steps"}
    out = {names.get(k, k): _sb3_schedule(v) for k, v in hp.items() if k not in RL_IG_ONLY}
    if "policy_kwargs" in out:
        out["policy_kwargs"] = _sb3_policy_kwargs(out["policy_kwargs"])
    return out


def _sb3_class(algo: str) -> type:
    if algo in ("trpo", "npg"):
        from sb3_contrib import TRPO

        return TRPO
    from stable_baselines3 import A2C, PPO

    return PPO if algo == "ppo" else A2C


def build(
    lib: str,
    algo: str,
    env: str,
    seed: int,
    threads: int,
    overrides=None,
    geometry_every: int | None = None,
):
    """An agent of ``lib`` ("rl-ig" or "sb3") with the tuned settings, and its env.

    ``geometry_every`` sets how often an rl-ig agent measures its step's geometry (None: the
    agents' default); the reference measures nothing."""
    env_id, run, hp = zoo_settings(algo, env, overrides)
    if lib == "rl-ig":
        import envs
        from agents import ALGOS
        from agents.common.runtime import configure_runtime

        configure_runtime(threads)
        venv = envs.make_vec_env(
            env_id,
            run["n_envs"],
            seed,
            normalize_obs=run["normalize_obs"],
            normalize_reward=run["normalize_reward"],
            gamma=hp.get("gamma", 0.99),
        )
        extra = {} if geometry_every is None else {"geometry_every": geometry_every}
        return ALGOS[algo](venv, seed=seed, **hp, **extra), run
    import torch
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    torch.set_num_threads(threads)
    if os.environ.get("RL_IG_BENCH_REFERENCE_HEAP"):
        from agents.common.runtime import retain_heap

        retain_heap()  # give the reference rl-ig's allocator setting too
    venv = make_vec_env(env_id, n_envs=run["n_envs"], seed=seed)
    if run["normalize_obs"] or run["normalize_reward"]:
        venv = VecNormalize(
            venv,
            norm_obs=run["normalize_obs"],
            norm_reward=run["normalize_reward"],
            gamma=hp.get("gamma", 0.99),
        )
    model = _sb3_class(algo)(
        "MlpPolicy", venv, seed=seed, device="cpu", **_sb3_kwargs(algo, env, hp)
    )
    return model, run


def throughput_worker(
    lib: str, algo: str, env: str, steps: int, threads: int, geometry_every: int | None = None
) -> dict:
    """Steps/s of ``learn(steps)`` after one warm-up update (imports, first allocations)."""
    model, run = build(lib, algo, env, 0, threads, geometry_every=geometry_every)
    warm = model.n_steps * run["n_envs"] if lib == "sb3" else model.config.n_steps * run["n_envs"]
    model.learn(warm)
    start = time.perf_counter()
    model.learn(steps, reset_num_timesteps=False)
    return {"lib": lib, "steps_per_s": steps / (time.perf_counter() - start)}


def evaluate(model, lib: str, env_id: str, seed: int, episodes: int) -> list[float]:
    """Deterministic returns on a fresh env whose normalisation is copied and frozen.

    The same function evaluates both libraries, so their figures are comparable.
    """
    import copy

    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    train_env = model.env if lib == "rl-ig" else model.get_env()
    while not isinstance(train_env, VecNormalize) and hasattr(train_env, "venv"):
        train_env = train_env.venv
    eval_env = make_vec_env(env_id, n_envs=1, seed=seed + 1000)
    if isinstance(train_env, VecNormalize):
        eval_env = VecNormalize(
            eval_env, training=False, norm_obs=train_env.norm_obs, norm_reward=False
        )
        eval_env.obs_rms = copy.deepcopy(train_env.obs_rms)
    from agents.training import evaluate as run_episodes

    return list(run_episodes(model, eval_env, episodes).returns)


def returns_worker(
    lib: str,
    algo: str,
    env: str,
    steps: int,
    seed: int,
    threads: int,
    out: Path,
    overrides: dict[str, Any] | None = None,
) -> dict:
    """Train one seed to ``steps``, record the training curve, evaluate, write ``out``."""
    model, _ = build(lib, algo, env, seed, threads, overrides)
    env_id = zoo_settings(algo, env)[0]
    curve: list[tuple[int, float, float]] = []
    start = time.perf_counter()

    def record(timesteps: int, episode_returns) -> None:
        if episode_returns:
            curve.append(
                (timesteps, time.perf_counter() - start, float(statistics.fmean(episode_returns)))
            )

    if lib == "rl-ig":
        model.learn(
            steps, callback=lambda a, _: record(a.num_timesteps, a.collector.episode_returns)
        )
    else:
        from stable_baselines3.common.callbacks import BaseCallback

        class Curve(BaseCallback):
            def _on_step(self) -> bool:
                return True

            def _on_rollout_end(self) -> None:
                record(self.model.num_timesteps, [e["r"] for e in self.model.ep_info_buffer])

        model.learn(steps, callback=Curve())
    wall = time.perf_counter() - start
    result = {
        "lib": lib,
        "algo": algo,
        "env": env_id,
        "seed": seed,
        "steps": steps,
        "wall_s": wall,
        "steps_per_s": steps / wall,
        "hp": overrides or {},
        "curve": curve,
        "eval": evaluate(model, lib, env_id, seed, episodes=10),
    }
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(out)
    return result


def returns(
    algo: str,
    env: str,
    steps: int,
    seeds: int,
    jobs: int,
    threads: int,
    out_dir: Path,
    libs: tuple[str, ...] = LIBS,
    hp_items: tuple[str, ...] = (),
) -> None:
    """Every (library, seed) run, ``jobs`` at a time; finished runs are kept (resumable)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    pending = []
    for seed in range(seeds):
        for lib in libs:
            path = out_dir / f"{lib}-{algo}-{env}-s{seed}.json"
            if not path.exists():
                pending.append((lib, seed, path))
    running: list[subprocess.Popen] = []
    for lib, seed, path in pending:
        while len(running) >= jobs:
            running = [p for p in running if p.poll() is None]
            time.sleep(2)
        print(f"start {lib} seed {seed}", flush=True)
        running.append(
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    *_worker_args("returns", lib, algo, env, steps, threads),
                    "--seed",
                    str(seed),
                    "--out",
                    str(path),
                    *(f"--hp={item}" for item in hp_items),
                ]
            )
        )
    for p in running:
        p.wait()
    missing = [path.name for _, _, path in pending if not path.exists()]
    if missing:
        print(f"runs that failed (see their output above): {', '.join(missing)}", flush=True)
    summarize(out_dir, algo, env)


def fvp_timing(rounds: int, threads: int) -> None:
    """Gauss-Newton against double-backprop Fisher-vector products on the HalfCheetah policy."""
    import gymnasium as gym
    import torch

    from agents.common.networks import PolicyConfig, make_actor
    from agents.common.runtime import configure_runtime
    from rl_ig.fisher import PolicyFisher

    configure_runtime(threads)
    torch.manual_seed(0)
    actor = make_actor(gym.spaces.Box(-1, 1, (17,)), gym.spaces.Box(-1, 1, (6,)), PolicyConfig())
    obs = torch.randn(2048, 17)
    fisher = PolicyFisher(actor)
    v = torch.randn(fisher.dim)
    times: dict[str, list[float]] = {"gauss-newton": [], "double-backprop": []}
    for _ in range(rounds):
        for method, samples in times.items():
            op = fisher.operator(obs, method=method)
            op(v)
            start = time.perf_counter()
            for _ in range(50):
                op(v)
            samples.append((time.perf_counter() - start) / 50 * 1e3)
    print(
        "Fisher-vector product, 17-64-64-6 tanh policy, 2,048 states, float32, "
        f"{threads} thread(s), median of {rounds} rounds of 50:"
    )
    for method, samples in times.items():
        print(f"  {method:16s} {statistics.median(samples):6.2f} ms")


def _worker_args(kind: str, lib: str, algo: str, env: str, steps: int, threads: int) -> list[str]:
    return [
        "--worker",
        kind,
        "--lib",
        lib,
        "--algo",
        algo,
        "--env",
        env,
        "--steps",
        str(steps),
        "--threads",
        str(threads),
    ]


def _spawn(args: list[str]) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"benchmark worker failed: {out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def throughput(
    algo: str, env: str, steps: int, rounds: int, threads: int, geometry_every: int | None = None
) -> None:
    """Alternate fresh rl-ig and reference processes and report the ratio of medians."""
    rates: dict[str, list[float]] = {"rl-ig": [], "sb3": []}
    geometry = [] if geometry_every is None else [f"--geometry-every={geometry_every}"]
    for r in range(rounds):
        for lib in ("rl-ig", "sb3") if r % 2 == 0 else ("sb3", "rl-ig"):
            res = _spawn([*_worker_args("throughput", lib, algo, env, steps, threads), *geometry])
            rates[lib].append(res["steps_per_s"])
            print(f"round {r + 1}/{rounds} {lib:6s} {res['steps_per_s']:8.0f} steps/s", flush=True)
    ours, ref = statistics.median(rates["rl-ig"]), statistics.median(rates["sb3"])
    measured = "the agents' default" if geometry_every is None else str(geometry_every)
    print(
        f"\n{algo.upper()} {env}, {steps} steps x {rounds} rounds, {threads} thread(s), "
        f"rl-ig geometry every {measured} updates:"
    )
    print(f"  rl-ig             {ours:8.0f} steps/s (median)")
    print(f"  {REFERENCE[algo]:17s} {ref:8.0f} steps/s (median)")
    print(f"  ratio             {ours / ref:8.2f}x")


def optimizer_benchmarks(p: argparse.ArgumentParser, a: argparse.Namespace) -> int:
    """``--curves`` (time to a target loss) and ``--optim-step`` (step time, state memory)."""
    import torch

    torch.set_num_threads(a.threads)
    torch.set_flush_denormal(True)  # as train_supervised.py does, for every contender
    if a.curves_step:
        return _curves_step(p, a)
    if a.curves_floor:
        return _curves_floor(p, a)
    if a.optim_step:
        import benchmark_optim

        steps = int(a.steps or 50)
        try:
            results = benchmark_optim.optimizer_step_benchmark(
                rounds=a.rounds, steps=steps, batch_size=a.batch_size
            )
        except ValueError as exc:
            p.error(str(exc))
        print(benchmark_optim.report(results, frequency=10, batch_size=a.batch_size))
        return 0
    import benchmark_curves

    if a.target is None or not a.target > 0:
        p.error("--curves needs --target LOSS > 0 (the training loss every optimizer aims for)")
    settings = {
        "steps": int(a.steps or 2000),
        "eval_every": a.eval_every,
        "batch_size": a.batch_size,
        "threads": a.threads,
    }
    optims = [o.strip() for o in a.optims.split(",") if o.strip()]
    try:
        benchmark_curves.curves_benchmark(a.out, optims, a.target, settings, a.jobs)
    except ValueError as exc:
        p.error(str(exc))
    return 0


def _curves_step(p: argparse.ArgumentParser, a: argparse.Namespace) -> int:
    import benchmark_curves_step as bench

    optims = [o.strip() for o in a.optims.split(",") if o.strip()]
    steps = int(a.steps or 30)
    try:
        times = bench.step_time_benchmark(optims, a.rounds, steps, a.batch_size, a.threads)
    except ValueError as exc:
        p.error(str(exc))
    print(bench.report(times, steps, a.batch_size))
    return 0


def _curves_floor(p: argparse.ArgumentParser, a: argparse.Namespace) -> int:
    import benchmark_curves_floor as bench

    try:
        ms = bench.floor_benchmark(a.rounds, a.batch_size)
    except ValueError as exc:
        p.error(str(exc))
    print(bench.report(ms, a.batch_size, a.rounds))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--algo", default="trpo", choices=sorted(REFERENCE))
    p.add_argument("--env", default="HalfCheetah")
    p.add_argument(
        "--steps",
        type=float,
        default=None,
        help="environment steps (default 20480), or optimizer steps for --curves (2000) and "
        "--optim-step (50)",
    )
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--geometry-every",
        type=int,
        default=None,
        help="throughput: rl-ig measures its step geometry every N updates (0: never; "
        "default: the agents' own default)",
    )
    p.add_argument(
        "--reference-heap",
        action="store_true",
        help="also retain the heap in the reference's processes (rl-ig's configure_runtime)",
    )
    p.add_argument("--returns", action="store_true", help="train to --steps and evaluate")
    p.add_argument("--fvp", action="store_true", help="time the two Fisher-vector products")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--jobs", type=int, default=2, help="runs in parallel for --returns")
    p.add_argument("--out", type=Path, default=Path("bench-out"))
    p.add_argument("--summarize", action="store_true", help="redraw the --returns summary")
    p.add_argument(
        "--summarize-all",
        action="store_true",
        help="one table and figure for every agent's runs under --out/{algo}-{env}/",
    )
    p.add_argument(
        "--libs", default=",".join(LIBS), help="for --returns: rl-ig, sb3 or both (rl-ig,sb3)"
    )
    p.add_argument(
        "--hp",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="for --returns --libs rl-ig: override a tuned setting (repeatable), as in train.py",
    )
    p.add_argument("--curves", action="store_true", help="CURVES autoencoder: time to --target")
    p.add_argument(
        "--curves-step",
        action="store_true",
        help="CURVES autoencoder: training-step time of each optimizer, alternating runs",
    )
    p.add_argument(
        "--curves-floor",
        action="store_true",
        help="CURVES autoencoder: the kernels K-FAC and Shampoo cannot skip, against Adam's step",
    )
    p.add_argument("--optims", default="kfac,shampoo,adam,sgd", help="for --curves")
    p.add_argument("--target", type=float, default=None, help="for --curves: training loss")
    p.add_argument("--batch-size", type=int, default=1000, help="for --curves, --optim-step")
    p.add_argument("--eval-every", type=int, default=20, help="for --curves")
    p.add_argument(
        "--optim-step",
        action="store_true",
        help="Shampoo against pytorch-optimizer's, and against Adam: step time, state memory",
    )
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--worker", choices=["throughput", "returns"], help=argparse.SUPPRESS)
    p.add_argument("--lib", choices=["rl-ig", "sb3"], help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.reference_heap:
        os.environ["RL_IG_BENCH_REFERENCE_HEAP"] = "1"  # inherited by the worker processes
    if a.worker == "throughput":
        steps = int(a.steps or 20480)
        print(
            json.dumps(throughput_worker(a.lib, a.algo, a.env, steps, a.threads, a.geometry_every))
        )
        return 0
    if a.worker == "returns":
        overrides = parse_overrides(a.hp)
        steps = int(a.steps or 20480)
        returns_worker(a.lib, a.algo, a.env, steps, a.seed, a.threads, a.out, overrides)
        return 0
    if a.summarize:
        summarize(a.out, a.algo, a.env)
        return 0
    if a.summarize_all:
        summarize_all(a.out, a.env)
        return 0
    if a.fvp:
        fvp_timing(a.rounds * 3, a.threads)
        return 0
    if a.curves or a.curves_step or a.curves_floor or a.optim_step:
        return optimizer_benchmarks(p, a)
    if a.returns:
        libs = tuple(x.strip() for x in a.libs.split(","))
        if not libs or any(x not in LIBS for x in libs):
            p.error(f"--libs takes rl-ig, sb3 or rl-ig,sb3, got {a.libs!r}")
        if a.hp and libs != ("rl-ig",):
            p.error("--hp overrides rl-ig's settings only; add --libs rl-ig")
        try:
            check_overrides(a.algo, a.env, a.hp)
        except (TypeError, ValueError) as exc:
            p.error(str(exc))
        steps = int(a.steps or 20480)
        returns(a.algo, a.env, steps, a.seeds, a.jobs, a.threads, a.out, libs, tuple(a.hp))
        return 0
    if a.geometry_every is not None and a.geometry_every < 0:
        p.error(f"--geometry-every must be an integer >= 0 (0: never), got {a.geometry_every}")
    throughput(a.algo, a.env, int(a.steps or 20480), a.rounds, a.threads, a.geometry_every)
    return 0


if __name__ == "__main__":
    sys.exit(main())
