"""What the distributed tests run: small models, a fixed stream of global batches, the
optimizers under test, and the worker that trains them on several ranks with DDP.

The worker saves, per rank, everything the tests compare with one-process runs of the same
global batches: final parameters, mid-run checkpoints, runs resumed from a one-process
checkpoint, and a control run whose K-FAC factors stay rank-local.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from rl_ig.optim import KFAC, Shampoo

GLOBAL_BATCH = 16
STEPS = 20
SAVE_AT = 10  # checkpoints are taken after this many steps
SCENARIOS = (
    "kfac_mlp", "kfac_cnn", "kfac_adaptive", "kfac_factored", "shampoo_mlp", "shampoo_cnn"
)  # fmt: skip
DTYPES = ("float32", "float64")
RUNS = tuple(f"{name}-{dtype}" for dtype in DTYPES for name in SCENARIOS)  # "kfac_mlp-float32"


def build_model(run: str, device: torch.device) -> nn.Module:
    """The run's model (``"…cnn-…"``: a CNN on ``(2, 6, 6)`` images, else an MLP), seeded."""
    name, dtype = run.split("-")
    torch.manual_seed(0)
    if name.endswith("cnn"):
        model: nn.Module = nn.Sequential(
            nn.Conv2d(2, 4, 3), nn.Tanh(), nn.Conv2d(4, 4, 3, padding=1), nn.Tanh(),
            nn.Flatten(), nn.Linear(64, 3),
        )  # fmt: skip
    else:
        model = nn.Sequential(
            nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 12), nn.Tanh(), nn.Linear(12, 4)
        )
    return model.to(device=device, dtype=getattr(torch, dtype))


def build_optimizer(name: str, model: nn.Module, group: Any = None) -> torch.optim.Optimizer:
    if name.startswith("shampoo"):
        # Blocks of at most 4: 23 blocks in the MLP, 31 in the CNN, spread over the ranks.
        return Shampoo(
            model.parameters(), lr=1e-2, precondition_frequency=3, start_preconditioning_step=2,
            max_preconditioner_dim=4, process_group=group,
        )  # fmt: skip
    extra: dict[str, Any] = {"kl_clip": 1e-2, "momentum": 0.5}
    if name.startswith("kfac_adaptive"):
        extra = {"adaptive_damping": True, "damping_adaptation_freq": 2}
    if name.startswith("kfac_factored"):  # Cholesky inverses, redone as the damping adapts
        extra = {"damping_mode": "factored", "adaptive_damping": True, "damping_adaptation_freq": 2}
    return KFAC(
        model, lr=0.05, damping=1e-2, factor_decay=0.9, inverse_update_freq=3,
        process_group=group, **extra,
    )  # fmt: skip


def global_batch(name: str, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The global batch of ``step``: ``x: (16, 6)`` or ``(16, 2, 6, 6)``, ``y: (16, out)``."""
    gen = torch.Generator().manual_seed(1000 + step)
    if "cnn" in name:
        return torch.randn(GLOBAL_BATCH, 2, 6, 6, generator=gen), torch.randn(16, 3, generator=gen)
    return torch.randn(GLOBAL_BATCH, 6, generator=gen), torch.randn(16, 4, generator=gen)


def loss_fn(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A mean over the examples of ``½‖out − y‖²``."""
    return 0.5 * (out - y).pow(2).sum(1).mean()


def train(
    name: str,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    steps: range,
    rank: int = 0,
    world: int = 1,
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
    on_step: Callable[[int], None] | None = None,
    infos: list[dict[str, float]] | None = None,
) -> None:
    """Train on this rank's equal share of each global batch (``forward``: the DDP wrapper).

    ``on_step(steps done)`` runs after each step; ``infos`` collects ``last_step_info``.
    """
    like = {"device": next(model.parameters()).device, "dtype": next(model.parameters()).dtype}
    share = GLOBAL_BATCH // world
    for step in steps:
        x, y = global_batch(name, step)
        x, y = x[rank * share : (rank + 1) * share].to(**like), y[rank * share :][:share].to(**like)
        opt.zero_grad()
        loss_fn((forward or model)(x), y).backward()
        if isinstance(opt, KFAC) and opt.config.adaptive_damping:
            opt.step(lambda x=x, y=y: float(loss_fn(model(x), y)))
        else:
            opt.step()
        if infos is not None:
            infos.append(dict(opt.last_step_info))  # type: ignore[attr-defined]
        if on_step is not None:
            on_step(step + 1)


def params(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().cpu().clone() for p in model.parameters()]


def to_cpu(value: Any) -> Any:
    """A state dict with every tensor on the CPU (lists and dicts walked)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, dict):
        return {k: to_cpu(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_cpu(v) for v in value]
    return value


def single_process_runs(out: Path, device: torch.device) -> dict[str, Any]:
    """One process on the whole batch: final parameters, and the step-10 state and checkpoint."""
    results: dict[str, Any] = {}
    for name in RUNS:
        model = build_model(name, device)
        opt = build_optimizer(name, model)
        saved: dict[str, Any] = {}

        def save(done: int, model: nn.Module = model, opt: Any = opt, saved: dict = saved) -> None:
            if done == SAVE_AT:
                saved.update(model=to_cpu(model.state_dict()), opt=to_cpu(opt.state_dict()))

        infos: list[dict[str, float]] = []
        with DecompositionCounter() as counter:
            train(name, model, opt, range(STEPS), on_step=save, infos=infos)
        torch.save(saved, out / f"{name}-single-ckpt.pt")
        results[name] = {"params": params(model), "state": saved["opt"], "infos": infos}
        results[name]["decompositions"] = counter.calls
    return results


class DecompositionCounter:
    """Counts the matrices that ``torch.linalg.eigh`` or ``torch.linalg.cholesky_ex`` decompose
    inside the ``with`` block (a batch ``(k, n, n)`` counts ``k``)."""

    NAMES = ("eigh", "cholesky_ex")

    def __init__(self) -> None:
        self.calls = 0
        self._originals: dict[str, Callable[..., Any]] = {}

    def __enter__(self) -> DecompositionCounter:
        for name in self.NAMES:
            self._originals[name] = original = getattr(torch.linalg, name)
            setattr(torch.linalg, name, self._counted(original))
        return self

    def _counted(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def counted(matrix: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            self.calls += matrix.numel() // (matrix.shape[-1] ** 2) if matrix.numel() else 1
            return original(matrix, *args, **kwargs)

        return counted

    def __exit__(self, *exc: object) -> None:
        for name, original in self._originals.items():
            setattr(torch.linalg, name, original)


# ----------------------------------------------------------------- spawned ranks


def worker(rank: int, world: int, init_file: str, out_dir: str, backend: str) -> None:
    """One rank: every scenario, the checkpoint resumptions and the rank-local control."""
    torch.set_num_threads(1)
    if backend == "nccl":
        torch.cuda.set_device(rank)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    dist.init_process_group(
        backend, init_method=f"file://{init_file}", rank=rank, world_size=world,
        timeout=datetime.timedelta(seconds=120),
    )  # fmt: skip
    device = torch.device("cuda", rank) if backend == "nccl" else torch.device("cpu")
    out = Path(out_dir)
    try:
        results = {name: _run_scenario(name, rank, world, device, out) for name in RUNS}
        for name in RUNS:
            results[name]["resumed"] = _resume(name, rank, world, device, out)
        local = [dist.new_group([r]) for r in range(world)][rank]
        results["rank_local"] = {
            dtype: _rank_local(dtype, rank, world, device, local) for dtype in DTYPES
        }
        torch.save(results, out / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _ddp(model: nn.Module, device: torch.device) -> DDP:
    return DDP(model, device_ids=[device.index] if device.type == "cuda" else None)


def _run_scenario(name: str, rank: int, world: int, device: torch.device, out: Path) -> dict:
    model = build_model(name, device)
    ddp, opt = _ddp(model, device), build_optimizer(name, model)

    def save(done: int) -> None:
        if done == SAVE_AT:  # state_dict() is a collective: every rank calls it
            checkpoint = {"model": to_cpu(model.state_dict()), "opt": to_cpu(opt.state_dict())}
            torch.save(checkpoint, out / f"{name}-rank{rank}-ckpt.pt")

    infos: list[dict[str, float]] = []
    with DecompositionCounter() as counter:
        train(name, model, opt, range(STEPS), rank, world, ddp, on_step=save, infos=infos)
    own = [sum(b is not None for b in s["L"]) for s in opt.state.values() if "L" in s]
    return {
        "params": params(model),
        "decompositions": counter.calls,
        "owned_blocks": sum(own),
        "infos": infos,
    }


def _resume(name: str, rank: int, world: int, device: torch.device, out: Path) -> list:
    """Load the one-process checkpoint of step 10 on every rank and train the last 10 steps."""
    saved = torch.load(out / f"{name}-single-ckpt.pt", weights_only=True)
    model = build_model(name, device)
    model.load_state_dict(saved["model"])
    ddp, opt = _ddp(model, device), build_optimizer(name, model)
    opt.load_state_dict(saved["opt"])
    train(name, model, opt, range(SAVE_AT, STEPS), rank, world, forward=ddp)
    return params(model)


def _rank_local(dtype: str, rank: int, world: int, device: torch.device, local: Any) -> list:
    """K-FAC with a one-rank process group: factors from the local half-batch only."""
    name = f"kfac_mlp-{dtype}"
    model = build_model(name, device)
    ddp, opt = _ddp(model, device), build_optimizer(name, model, group=local)
    train(name, model, opt, range(STEPS), rank, world, forward=ddp)
    return params(model)


def launch(fn: Callable[..., None], world: int, out: Path, backend: str = "gloo") -> None:
    """Run ``fn(rank, world, init_file, out_dir, backend)`` on ``world`` new processes.

    gloo ranks are forked where the platform can (no re-import of torch per rank); NCCL ranks
    are spawned, since CUDA cannot be used in a forked child of a process that used it.
    """
    forkable = backend == "gloo" and "fork" in mp.get_all_start_methods()
    if forkable:
        # DDP imports torch._dynamo on first use; importing it once here spares every rank.
        import torch._dynamo  # noqa: F401
    store = out / f"store-{backend}"
    mp.start_processes(
        fn, args=(world, str(store), str(out), backend), nprocs=world,
        start_method="fork" if forkable else "spawn",
    )  # fmt: skip
