"""Teacher-student regression: seeded data, scaled targets, a student that fits."""

from __future__ import annotations

import torch

from rl_ig.optim import Adam
from rl_ig.supervised.teacher import (
    IN_DIM,
    OUT_DIM,
    TEACHER_WIDTH,
    make_teacher,
    tanh_mlp,
    teacher_task,
)


def test_data_is_seeded() -> None:
    a, b = teacher_task(1, n_train=64, n_test=8), teacher_task(1, n_train=64, n_test=8)
    c = teacher_task(2, n_train=64, n_test=8)

    assert torch.equal(a.train.inputs, b.train.inputs) and torch.equal(
        a.test.targets, b.test.targets
    )
    assert not torch.equal(a.train.targets, c.train.targets)
    assert a.train.inputs.shape == (64, IN_DIM) and a.train.targets.shape == (64, OUT_DIM)


def test_targets_are_the_scaled_teacher_plus_noise() -> None:
    task = teacher_task(0, n_train=4096, n_test=16, noise_std=0.0)
    with torch.no_grad():
        raw = make_teacher(0)(task.train.inputs)

    torch.testing.assert_close(task.train.targets, raw / raw.std())
    noisy = teacher_task(0, n_train=4096, n_test=16, noise_std=0.5)
    residual = noisy.train.targets - task.train.targets
    assert abs(float(residual.std()) - 0.5) < 0.02


def test_teacher_is_far_from_linear() -> None:
    """The best linear fit leaves a fifth of the variance: the task needs the hidden layers."""
    task = teacher_task(0, n_train=4096, n_test=16, noise_std=0.0)
    x = torch.cat([task.train.inputs, torch.ones(4096, 1)], dim=1).double()
    y = task.train.targets.double()
    fit = torch.linalg.lstsq(x, y).solution
    residual = float(((x @ fit - y) ** 2).mean() / y.var())

    assert residual > 0.15


def test_student_with_the_teachers_architecture_fits() -> None:
    task = teacher_task(0, n_train=2048, n_test=512, noise_std=0.1)
    model = task.make_model(3)
    assert [p.shape for p in model.parameters()] == [
        p.shape for p in tanh_mlp(TEACHER_WIDTH).parameters()
    ]
    opt = Adam(model.parameters(), lr=3e-3)
    batches = torch.Generator().manual_seed(0)
    x, y = task.train
    with torch.no_grad():
        start = float(task.loss(model(x), y))
    for _ in range(300):
        idx = torch.randint(0, 2048, (128,), generator=batches)
        opt.zero_grad()
        task.loss(model(x[idx]), y[idx]).backward()
        opt.step()
    with torch.no_grad():
        r2 = float(task.metrics(model(task.test.inputs), task.test.targets)["r2"])

    assert start > 0.9  # about Var(targets) = 1 + 0.1² for an untrained student
    assert r2 > 0.75
