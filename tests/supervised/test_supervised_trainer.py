"""The training loop's pieces that the end-to-end tests cannot see: each rank's slice of a
batch, chunked evaluation, and the validation of its settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rl_ig.supervised.parallel import DistContext
from rl_ig.supervised.sampler import MinibatchSampler
from rl_ig.supervised.task import evaluate
from rl_ig.supervised.teacher import teacher_task
from rl_ig.supervised.trainer import SupervisedRun, TrainConfig


def test_ranks_take_disjoint_slices_that_make_up_the_global_batch() -> None:
    batch = torch.arange(12)
    slices = [DistContext(rank=r, world_size=3).shard(batch) for r in range(3)]

    assert torch.equal(torch.cat(slices), batch)
    with pytest.raises(ValueError, match="batch size 12 is not divisible by the 5 processes"):
        DistContext(rank=0, world_size=5).shard(batch)


def test_a_rank_steps_on_its_own_half_of_the_global_batch(tmp_path: Path) -> None:
    """Rank 1 of 2, one plain SGD step: the gradient of the second half of the first batch."""
    task = teacher_task(0, n_train=64, n_test=8)
    config = TrainConfig(
        optim="sgd", lr=0.1, hp={"momentum": 0.0}, steps=1, batch_size=16, logdir=tmp_path
    )
    run = SupervisedRun(task, config, ctx=DistContext(rank=1, world_size=2))
    run.run()

    model = task.make_model(0)
    half = MinibatchSampler(64, 16, seed=0).next()[8:]
    task.loss(model(task.train.inputs[half]), task.train.targets[half]).backward()
    for p, trained in zip(model.parameters(), run.model.parameters()):
        assert p.grad is not None
        torch.testing.assert_close(trained.detach(), p.detach() - 0.1 * p.grad)
    assert not (tmp_path / "progress.csv").exists()  # only rank 0 writes


def test_chunked_evaluation_equals_one_pass() -> None:
    task = teacher_task(0, n_train=50, n_test=8)
    model = task.make_model(1)
    chunked = evaluate(model, task, task.train, chunk=7)
    with torch.no_grad():
        out = model(task.train.inputs)
        whole = {"loss": float(task.loss(out, task.train.targets))}
        whole |= {k: float(v) for k, v in task.metrics(out, task.train.targets).items()}

    assert chunked.keys() == whole.keys()
    for key, value in whole.items():
        assert chunked[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("steps", 0, "steps must be an integer >= 1, got 0"),
        ("batch_size", 2.5, "batch_size must be an integer >= 1, got 2.5"),
        ("eval_every", -1, "eval_every must be an integer >= 0, got -1"),
        ("optim", "lbfgs", "unknown optim 'lbfgs'"),
    ],
)
def test_config_names_the_bad_field(
    tmp_path: Path, field: str, value: object, message: str
) -> None:
    settings: dict[str, object] = {"optim": "adam", "lr": 1e-3, "steps": 1, "batch_size": 4}
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{**settings, field: value}, logdir=tmp_path)  # type: ignore[arg-type]
