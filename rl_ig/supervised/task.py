"""What a supervised task is: data, a seeded model factory, a loss and metrics."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

import torch
from torch import Tensor, nn

Loss = Callable[[Tensor, Tensor], Tensor]
"""``loss(outputs, targets)``: a scalar, the mean over the batch of a per-example loss."""

Metrics = Callable[[Tensor, Tensor], dict[str, Tensor]]
"""``metrics(outputs, targets)``: named scalars, each a mean over the batch of per-example values
(so that means over chunks, weighted by chunk size, give the mean over a whole data set)."""

SampleTargets = Callable[[Tensor, torch.Generator], Tensor]
"""``sample_targets(outputs, generator)``: targets drawn from the model's predictive
distribution, the one whose negative log-likelihood the task's loss is, shaped and typed as the
loss expects its targets. With targets drawn this way the loss gradients give the true Fisher
(Martens & Grosse 2015, §5) instead of the empirical one.

Contract: the random numbers drawn from ``generator`` depend only on the shape, dtype and device
of ``outputs``, never on its values, and row ``i`` of the result depends only on row ``i`` of
``outputs`` and row ``i`` of those draws. Then rows can be sampled as part of any larger tensor
and give the same result, which is how the ranks of a data-parallel run draw exactly the targets
that one process would draw for the whole batch."""

ModelT = TypeVar("ModelT", bound=nn.Module)

EVAL_CHUNK = 4096
"""Examples per forward pass when evaluating on a whole data set."""


class Data(NamedTuple):
    """Inputs ``(N, ...)`` and targets ``(N, ...)`` with the same first dimension."""

    inputs: Tensor
    targets: Tensor

    @property
    def size(self) -> int:
        return int(self.inputs.shape[0])

    def to(self, device: torch.device | str) -> Data:
        return Data(self.inputs.to(device), self.targets.to(device))

    def head(self, n: int) -> Data:
        """The first ``n`` examples (all of them if there are fewer)."""
        return Data(self.inputs[:n], self.targets[:n])


@dataclass(frozen=True, eq=False)
class Task:
    """A supervised problem.

    Attributes:
        name: the registry name (``curves``, ``digits-mlp``, ...).
        make_model: ``make_model(seed)``: a freshly initialised model; the same seed gives the
            same parameters.
        train: the training set.
        test: the held-out set.
        loss: see :data:`Loss`.
        metrics: see :data:`Metrics`.
        spec: how the data was built (JSON-serialisable), so a checkpoint can tell whether it
            belongs to the same task.
        sample_targets: see :data:`SampleTargets`; None if the loss is not the negative
            log-likelihood of a distribution that can be sampled (then K-FAC can only use the
            empirical Fisher).
    """

    name: str
    make_model: Callable[[int], nn.Module]
    train: Data
    test: Data
    loss: Loss
    metrics: Metrics
    spec: Mapping[str, Any] = field(default_factory=dict)
    sample_targets: SampleTargets | None = None

    def to(self, device: torch.device | str) -> Task:
        """This task with its data on ``device``."""
        return Task(
            self.name,
            self.make_model,
            self.train.to(device),
            self.test.to(device),
            self.loss,
            self.metrics,
            self.spec,
            self.sample_targets,
        )


def seeded_model(build: Callable[[], ModelT], seed: int) -> ModelT:
    """``build()`` under ``torch.manual_seed(seed)``, leaving the global RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


@torch.no_grad()
def evaluate(model: nn.Module, task: Task, data: Data, chunk: int = EVAL_CHUNK) -> dict[str, float]:
    """``{"loss": ..., **metrics}``, each the mean over all examples of ``data``.

    The model is put in eval mode for the passes and its previous mode restored.
    """
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    try:
        for start in range(0, data.size, chunk):
            x, y = data.inputs[start : start + chunk], data.targets[start : start + chunk]
            out = model(x)
            values = {"loss": task.loss(out, y), **task.metrics(out, y)}
            for key, value in values.items():
                sums[key] = sums.get(key, 0.0) + float(value) * x.shape[0]
    finally:
        model.train(was_training)
    return {key: total / max(data.size, 1) for key, total in sums.items()}
