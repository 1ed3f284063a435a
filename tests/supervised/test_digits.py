"""scikit-learn digits: the seeded split, the two classifiers, and a short fit."""

from __future__ import annotations

from collections import Counter

import torch
from torch import nn

from rl_ig.optim import Adam
from rl_ig.supervised.digits import (
    accuracy,
    digits_cnn,
    digits_cnn_task,
    digits_mlp,
    digits_mlp_task,
    digits_split,
)


def _rows(inputs: torch.Tensor, labels: torch.Tensor) -> Counter[tuple[float, ...]]:
    return Counter(tuple([*x.tolist(), float(y)]) for x, y in zip(inputs, labels))


def test_split_is_seeded_disjoint_and_covers_the_data_set() -> None:
    from sklearn.datasets import load_digits

    train, test = digits_split(seed=5)
    again, _ = digits_split(seed=5)
    other, _ = digits_split(seed=6)
    bunch = load_digits()
    everything = _rows(torch.as_tensor(bunch.data) / 16.0, torch.as_tensor(bunch.target))

    assert (train.size, test.size) == (1438, 359)
    assert torch.equal(train.inputs, again.inputs) and torch.equal(train.targets, again.targets)
    assert not torch.equal(train.targets, other.targets)
    assert _rows(*train) + _rows(*test) == everything
    assert train.inputs.dtype == torch.float32 and train.targets.dtype == torch.int64
    assert train.inputs.min() == 0.0 and train.inputs.max() == 1.0
    assert set(test.targets.tolist()) == set(range(10))


def test_mlp_and_cnn_map_a_batch_of_images_to_ten_logits() -> None:
    x = torch.rand(5, 64)
    mlp, cnn = digits_mlp(), digits_cnn()

    assert mlp(x).shape == (5, 10) and cnn(x).shape == (5, 10)
    assert [(m.in_features, m.out_features) for m in mlp if isinstance(m, nn.Linear)] == [
        (64, 128),
        (128, 128),
        (128, 10),
    ]
    convs = [m for m in cnn if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (1, 16, (3, 3)),
        (16, 32, (3, 3)),
    ]
    assert all(c.padding == (0, 0) for c in convs)  # what K-FAC's Conv2d reader supports


def test_accuracy_counts_argmax_hits() -> None:
    logits = torch.tensor([[0.0, 2.0], [3.0, 1.0], [0.0, 1.0], [5.0, 4.0]])
    assert float(accuracy(logits, torch.tensor([1, 0, 0, 1]))["accuracy"]) == 0.5


def test_models_are_seeded() -> None:
    for task in (digits_mlp_task(0), digits_cnn_task(0)):
        a, b, c = task.make_model(1), task.make_model(1), task.make_model(2)
        assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
        assert not torch.equal(next(a.parameters()), next(c.parameters()))


def test_mlp_learns_the_digits_in_150_adam_steps() -> None:
    task = digits_mlp_task(0)
    model = task.make_model(0)
    opt = Adam(model.parameters(), lr=1e-3)
    batches = torch.Generator().manual_seed(0)
    x, y = task.train
    for _ in range(150):
        idx = torch.randint(0, task.train.size, (64,), generator=batches)
        opt.zero_grad()
        task.loss(model(x[idx]), y[idx]).backward()
        opt.step()
    with torch.no_grad():
        test_accuracy = float(task.metrics(model(task.test.inputs), task.test.targets)["accuracy"])

    assert test_accuracy > 0.85  # chance is 0.1
