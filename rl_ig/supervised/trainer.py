"""The supervised training loop behind ``scripts/train_supervised.py``.

:class:`SupervisedRun` takes ``config.steps`` optimizer steps on seeded minibatches
(:class:`~rl_ig.supervised.sampler.MinibatchSampler`) and, on rank 0,

1. logs every step (``train/loss``, the mean minibatch loss over all ranks; ``time/step_s``;
   ``time/train_s``, the cumulative time spent in optimizer steps; ``time/steps_per_s``; the
   optimizer's ``last_step_info`` as ``optim/*``) to TensorBoard at ``x = step`` and as a row of
   ``progress.csv``, so that "steps and seconds to reach a training loss" can be read off it;
2. evaluates at step 0, every ``eval_every`` steps and at the end: loss and metrics on a fixed
   subset of the training set (its first ``eval_train_size`` examples) and on the test set,
   as ``eval/*`` in TensorBoard and ``evaluations.csv``;
3. every ``save_every`` steps writes ``checkpoint.pt`` atomically; at the end ``final.pt``
   (same format) and ``run_summary.json``.

The first Ctrl-C stops the run after the current step and saves ``checkpoint.pt``; a second one
aborts at once without saving. ``resume=PATH`` continues a checkpoint bit for bit.

Under ``torchrun`` every rank builds the same model and sampler, takes its ``1/world_size`` slice
of each global batch, and trains ``DistributedDataParallel(model)`` (gradients averaged across
ranks in ``backward``); the optimizer is built on the unwrapped model. Ranks agree on Ctrl-C at
every step, so they stop together.

K-FAC with ``fisher="sampled"`` (the default; see :mod:`rl_ig.supervised.optimizers`) reads its
factors from a second backward pass that shares the step's forward: on the steps whose factors
are due, the forward runs inside ``capture_factors()`` and the loss on targets drawn from the
model's predictive distribution (:class:`~rl_ig.supervised.fisher.TargetSampler`) is
differentiated there before the real loss is. With ``fisher_subsample=s > 1`` the factors come
from a forward and that backward on every ``s``-th example of the batch instead, and the step's
forward runs outside the capture. Each rank takes every ``s``-th example of its own slice, which
together are the examples one process would take, so the factors do not depend on the number of
ranks.

K-FAC with ``adaptive_damping=True`` gets a closure that re-evaluates the loss (no backward) on
the examples the factors come from (this rank's slice, every ``fisher_subsample``-th example),
which it calls before and after the update on the steps that adapt the damping.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from rl_ig.optim import KFAC
from rl_ig.run import CsvLog, RunPaths, announce_stop, stop_on_sigint, write_json
from rl_ig.supervised.checkpoint import load_checkpoint, save_checkpoint
from rl_ig.supervised.fisher import TargetSampler
from rl_ig.supervised.optimizers import (
    check_optimizer_name,
    fisher_subsample,
    kfac_fisher,
    make_optimizer,
    resolved_hyperparameters,
)
from rl_ig.supervised.parallel import (
    DistContext,
    init_process_group,
    max_param_difference,
    resolve_device,
    wrap_model,
)
from rl_ig.supervised.resume import check_resume, restore_training_state, training_state
from rl_ig.supervised.sampler import MinibatchSampler
from rl_ig.supervised.task import Task, evaluate

EVAL_TRAIN_SIZE = 4096


@dataclass(kw_only=True, frozen=True)
class TrainConfig:
    """How to train.

    Attributes:
        optim: ``kfac``, ``shampoo``, ``adam`` or ``sgd``.
        lr: learning rate > 0.
        hp: the optimizer's other keyword arguments (for K-FAC also ``fisher``, see
            :mod:`rl_ig.supervised.optimizers`).
        steps: optimizer steps to reach (counting those a resumed checkpoint already has).
        batch_size: global minibatch size (split evenly over the ranks).
        logdir: output directory (see :class:`~rl_ig.run.outputs.RunPaths`).
        seed: model initialisation and minibatch order.
        eval_every: steps between evaluations; 0: only at the start and the end.
        save_every: steps between checkpoints; 0: only on Ctrl-C (and ``final.pt``).
        eval_train_size: examples of the fixed training subset evaluated.
        device: ``cpu`` or ``cuda[:N]``.
        progress: show a progress bar (on a terminal).
    """

    optim: str
    lr: float
    steps: int
    batch_size: int
    logdir: Path
    hp: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    eval_every: int = 100
    save_every: int = 0
    eval_train_size: int = EVAL_TRAIN_SIZE
    device: str = "cpu"
    progress: bool = True

    def __post_init__(self) -> None:
        check_optimizer_name(self.optim)
        for name, low in (
            ("steps", 1),
            ("batch_size", 1),
            ("eval_every", 0),
            ("save_every", 0),
            ("eval_train_size", 1),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


@dataclass(frozen=True)
class RunResult:
    """How a run ended: ``status`` is ``completed``, ``interrupted`` (saved) or ``aborted``."""

    status: str
    step: int
    final_eval: dict[str, float] | None
    wall_time_s: float
    train_time_s: float
    paths: RunPaths


def _due(step: int, every: int) -> bool:
    return every > 0 and step % every == 0


class SupervisedRun:
    """One training run of ``task`` under ``config``; see the module docstring.

    Building it validates everything (and joins the process group under ``torchrun``), so that
    errors come before any output is written.

    Args:
        task: the problem (data on any device; it is moved to ``config.device``).
        config: see :class:`TrainConfig`.
        ctx: this process's rank (default: a plain process).
        resume: a checkpoint to continue.

    Raises:
        ValueError: one line, for any invalid setting or a checkpoint that does not continue
            this run (:class:`~rl_ig.supervised.checkpoint.CheckpointError` for unreadable ones).
    """

    def __init__(
        self,
        task: Task,
        config: TrainConfig,
        *,
        ctx: DistContext | None = None,
        resume: str | Path | None = None,
    ) -> None:
        self.config, self.ctx = config, ctx or DistContext()
        self.device = resolve_device(config.device, self.ctx)
        self.local_batch = self.ctx.local_batch_size(config.batch_size)
        self.task = task.to(self.device)
        self.sampler = MinibatchSampler(task.train.size, config.batch_size, config.seed)
        # Optimizers that share work across ranks look for the process group when built.
        init_process_group(self.ctx, self.device)
        self.model = task.make_model(config.seed).to(self.device)
        self.optimizer = make_optimizer(config.optim, self.model, config.lr, config.hp)
        self.target_sampler = self._make_target_sampler()
        self.fisher_subsample = self._check_fisher_subsample()
        self.paths = RunPaths(Path(config.logdir))
        self.step, self.train_time_s = 0, 0.0
        self.resumed_from = str(resume) if resume is not None else None
        if self.resumed_from is not None:
            self._restore(self.resumed_from)
        self.start_step, self._start_train_time = self.step, self.train_time_s
        self.net = wrap_model(self.model, self.ctx, self.device)
        self.stop_requested = False
        self.last_eval: dict[str, float] | None = None
        self._last_eval_step = -1

    # ------------------------------------------------------------------ setup

    def _make_target_sampler(self) -> TargetSampler | None:
        """The sampler of K-FAC's sampled-Fisher targets; None for other Fisher estimates and
        optimizers."""
        if kfac_fisher(self.config.optim, self.config.hp) != "sampled":
            return None
        if self.task.sample_targets is None:
            raise ValueError(
                f"task {self.task.name} has no predictive distribution to sample targets from, "
                "so K-FAC cannot use the sampled Fisher; pass --hp fisher=empirical"
            )
        return TargetSampler(
            self.task.sample_targets,
            self.config.seed,
            self.device,
            rank=self.ctx.rank,
            world_size=self.ctx.world_size,
        )

    def _check_fisher_subsample(self) -> int:
        subsample = fisher_subsample(self.config.optim, self.config.hp)
        if self.local_batch % subsample:
            raise ValueError(
                f"hyperparameter fisher_subsample={subsample} must divide the batch size per "
                f"process ({self.local_batch}); pass a --batch-size that is a multiple of "
                f"{subsample * self.ctx.world_size}"
            )
        return subsample

    def meta(self) -> dict[str, Any]:
        """What identifies this run in a checkpoint (and what resuming checks)."""
        cfg = self.config
        return {
            "task": self.task.name,
            "task_spec": dict(self.task.spec),
            "optim": cfg.optim,
            "lr": cfg.lr,
            "hp": resolved_hyperparameters(cfg.optim, cfg.hp),
            "seed": cfg.seed,
            "batch_size": cfg.batch_size,
            "step": self.step,
            "train_time_s": self.train_time_s,
            "world_size": self.ctx.world_size,
        }

    def _restore(self, path: str) -> None:
        meta, state = load_checkpoint(path)
        check_resume(meta, path, self.meta(), self.config.steps)
        restore_training_state(
            state, path, self.model, self.optimizer, self.sampler, self.target_sampler
        )
        self.step = int(meta["step"])
        self.train_time_s = float(meta.get("train_time_s", 0.0))

    def save(self, path: Path) -> None:
        """Write a checkpoint of the current state from rank 0.

        Under ``torchrun`` every rank must call it: each builds the state (an optimizer that
        shards its state across ranks gathers it in ``state_dict()``), rank 0 writes it.
        """
        state = training_state(self.model, self.optimizer, self.sampler, self.target_sampler)
        if self.ctx.is_main:
            save_checkpoint(path, self.meta(), state)

    # ------------------------------------------------------------------ the run

    def run(self) -> RunResult:
        """Train to ``config.steps``, then save, evaluate and summarise."""
        self._start_time = time.perf_counter()
        self._open_outputs()
        try:
            return self._train_and_finish()
        finally:
            self._close_outputs()

    def request_stop(self) -> None:
        """Stop after the current step and save a checkpoint (what the first Ctrl-C does)."""
        self.stop_requested = True
        if self.ctx.is_main:
            announce_stop("step")

    def _train_and_finish(self) -> RunResult:
        stop = False
        try:
            with stop_on_sigint(self.request_stop):
                if self.step == 0:
                    self._evaluate()
                while self.step < self.config.steps and not stop:
                    stop = self._train_step()
        except KeyboardInterrupt:
            return self._finish("aborted")
        if stop and self.step < self.config.steps:
            self.save(self.paths.checkpoint)
            return self._finish("interrupted")
        self.save(self.paths.final_model)
        if self._last_eval_step != self.step:
            self._evaluate()
        return self._finish("completed")

    def _train_step(self) -> bool:
        """One optimizer step with its logging, checkpoint and evaluation; True to stop."""
        start = time.perf_counter()
        loss = self._optimizer_step()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - start
        self.step += 1
        self.train_time_s += seconds
        loss = loss.float()
        flags = torch.stack([loss, loss.new_tensor(float(self.stop_requested))])
        total = self.ctx.all_sum(flags).tolist()
        self._log_step(total[0] / self.ctx.world_size, seconds)
        if _due(self.step, self.config.save_every):
            self.save(self.paths.checkpoint)
        if _due(self.step, self.config.eval_every):
            self._evaluate()
        return total[1] > 0

    def _optimizer_step(self) -> Tensor:
        """Forward, backward and ``optimizer.step()`` on this rank's slice of the next batch."""
        index = self.ctx.shard(self.sampler.next()).to(self.device)
        inputs, targets = self.task.train.inputs[index], self.task.train.targets[index]
        self.net.train()
        self.optimizer.zero_grad(set_to_none=True)
        if self.target_sampler is None:
            loss = self.task.loss(self.net(inputs), targets)
        else:
            loss = self._loss_after_sampled_fisher(inputs, targets, self.target_sampler)
        loss.backward()
        if isinstance(self.optimizer, KFAC) and self.optimizer.config.adaptive_damping:
            rows = slice(None, None, self.fisher_subsample)
            x, y = inputs[rows], targets[rows]
            self.optimizer.step(lambda: float(self.task.loss(self.net(x), y)))
        else:
            self.optimizer.step()
        return loss.detach()

    def _loss_after_sampled_fisher(
        self, inputs: Tensor, targets: Tensor, target_sampler: TargetSampler
    ) -> Tensor:
        """The minibatch loss, from a forward run inside K-FAC's ``capture_factors()``; on the
        steps whose factors are due, the loss on sampled targets is differentiated there first,
        so that K-FAC records ``A`` and ``G`` from it.

        That backward is ``torch.autograd.grad`` with respect to the K-FAC layers' outputs
        (``captured_outputs``), whose result is dropped: it computes no weight gradients,
        leaves ``.grad`` alone and does not fire DDP's gradient hooks, so the backward of the
        real loss is the one DDP all-reduces. (``ddp.no_sync()`` around the
        sampled backward alone would not do: DDP decides in the forward whether the next
        backward synchronises, so the sampled backward would all-reduce and the real one not.)
        """
        optimizer = self.optimizer
        assert isinstance(optimizer, KFAC)
        if self.fisher_subsample > 1:
            if optimizer.factors_due:
                with optimizer.capture_factors():
                    outputs = self.model(inputs[:: self.fisher_subsample])
                    self._sampled_fisher_backward(outputs, target_sampler, optimizer)
            return self.task.loss(self.net(inputs), targets)
        with optimizer.capture_factors():
            outputs = self.net(inputs)
            if optimizer.factors_due:
                self._sampled_fisher_backward(outputs, target_sampler, optimizer, retain=True)
        return self.task.loss(outputs, targets)

    def _sampled_fisher_backward(
        self, outputs: Tensor, target_sampler: TargetSampler, optimizer: KFAC, retain: bool = False
    ) -> None:
        """The backward of the loss on targets drawn for ``outputs``, to the captured layer
        outputs only (no weight gradients); ``retain`` keeps the graph for the real loss."""
        fisher_loss = self.task.loss(outputs, target_sampler.sample(outputs))
        layers = optimizer.captured_outputs()
        if layers:
            torch.autograd.grad(fisher_loss, layers, retain_graph=retain, allow_unused=True)

    # ------------------------------------------------------------------ outputs

    def _open_outputs(self) -> None:
        if not self.ctx.is_main:
            return
        resumed = self.resumed_from is not None
        keep = self.step if resumed else None
        purge = self.step + 1 if resumed else None
        self.writer = SummaryWriter(log_dir=str(self.paths.logdir), purge_step=purge)
        self.progress_log = CsvLog(self.paths.progress, keep_until=keep)
        self.eval_log = CsvLog(self.paths.evaluations, keep_until=keep)
        self.bar = tqdm(
            total=self.config.steps,
            initial=self.step,
            unit="step",
            disable=None if self.config.progress else True,  # None: only on a terminal
            dynamic_ncols=True,
        )

    def _close_outputs(self) -> None:
        if self.ctx.is_main:
            self.bar.close()
            self.writer.close()

    def _log_step(self, loss: float, seconds: float) -> None:
        if not self.ctx.is_main:
            return
        elapsed = self.train_time_s - self._start_train_time
        info = getattr(self.optimizer, "last_step_info", None) or {}
        row = {
            "step": self.step,
            "train/loss": loss,
            "time/step_s": seconds,
            "time/train_s": self.train_time_s,
            "time/wall_s": time.perf_counter() - self._start_time,
            "time/steps_per_s": (self.step - self.start_step) / elapsed if elapsed else math.nan,
            **{f"optim/{key}": float(value) for key, value in info.items()},
        }
        self._write("progress", row)
        self.bar.update(self.step - self.bar.n)
        self.bar.set_postfix(loss=f"{loss:.4g}", refresh=False)

    def _write(self, log: str, row: Mapping[str, float]) -> None:
        for key, value in row.items():
            if key != "step":
                self.writer.add_scalar(key, value, self.step)
        (self.progress_log if log == "progress" else self.eval_log).write(row)

    def _evaluate(self) -> None:
        """Evaluate on rank 0 (after checking, under torchrun, that the replicas agree)."""
        params = list(self.model.parameters())
        drift = max_param_difference(self.ctx, params) if self.ctx.launched else None
        self._last_eval_step = self.step
        if not self.ctx.is_main:
            return
        size = min(self.config.eval_train_size, self.task.train.size)
        train = evaluate(self.model, self.task, self.task.train.head(size))
        test = evaluate(self.model, self.task, self.task.test)
        result = {
            **{f"eval/train_{key}": value for key, value in train.items()},
            **{f"eval/test_{key}": value for key, value in test.items()},
        }
        if drift is not None:
            result["dist/max_param_diff"] = drift
        self._write("eval", {"step": self.step, "time/train_s": self.train_time_s, **result})
        self.writer.flush()
        self.last_eval = result

    def _finish(self, status: str) -> RunResult:
        result = RunResult(
            status=status,
            step=self.step,
            final_eval=self.last_eval,
            wall_time_s=time.perf_counter() - self._start_time,
            train_time_s=self.train_time_s,
            paths=self.paths,
        )
        if self.ctx.is_main:
            write_json(self.paths.summary, self.summary(result))
        return result

    def summary(self, result: RunResult) -> dict[str, Any]:
        """What ``run_summary.json`` holds."""
        meta = self.meta()
        return {
            **{key: meta[key] for key in ("task", "task_spec", "optim", "lr", "hp", "seed")},
            "status": result.status,
            "step": result.step,
            "start_step": self.start_step,
            "steps": self.config.steps,
            "batch_size": self.config.batch_size,
            "world_size": self.ctx.world_size,
            "device": str(self.device),
            "n_params": sum(p.numel() for p in self.model.parameters()),
            "wall_time_s": result.wall_time_s,
            "train_time_s": result.train_time_s,
            "final_eval": result.final_eval,
            "resumed_from": self.resumed_from,
            "paths": self.paths.as_dict(),
            "torch_version": torch.__version__,
        }
