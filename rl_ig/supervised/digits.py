"""scikit-learn's bundled handwritten digits (1,797 8×8 images, 10 classes; no download) with
an MLP and a small CNN classifier."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rl_ig.supervised.task import Data, Task, seeded_model

N_CLASSES = 10
IMAGE_SIDE = 8
TEST_FRACTION = 0.2
_MAX_PIXEL = 16.0  # load_digits intensities are integers 0..16


def digits_split(seed: int, test_fraction: float = TEST_FRACTION) -> tuple[Data, Data]:
    """A shuffled train/test split of the digits: inputs ``(N, 64)`` float32 in ``[0, 1]``,
    labels ``(N,)`` int64. The same seed gives the same split; the two parts are disjoint and
    cover all 1,797 images."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    from sklearn.datasets import load_digits  # imported here: scikit-learn is slow to import

    bunch = load_digits()
    inputs = torch.as_tensor(bunch.data, dtype=torch.float32) / _MAX_PIXEL
    labels = torch.as_tensor(bunch.target, dtype=torch.int64)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    n_test = round(test_fraction * len(labels))
    test, train = order[:n_test], order[n_test:]
    return Data(inputs[train], labels[train]), Data(inputs[test], labels[test])


def digits_mlp() -> nn.Sequential:
    """64-128-128-10 with ReLU hidden units; returns logits ``(B, 10)`` for inputs ``(B, 64)``."""
    return nn.Sequential(
        nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, N_CLASSES)
    )


def digits_cnn() -> nn.Sequential:
    """Two 3×3 convolutions (16 and 32 channels, no padding: 8×8 → 6×6 → 4×4, ReLU) and a
    linear layer; returns logits ``(B, 10)`` for inputs ``(B, 64)``."""
    return nn.Sequential(
        nn.Unflatten(1, (1, IMAGE_SIDE, IMAGE_SIDE)),
        nn.Conv2d(1, 16, kernel_size=3),
        nn.ReLU(),
        nn.Conv2d(16, 32, kernel_size=3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, N_CLASSES),
    )


def cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean over the batch of ``−log softmax(logits)[label]``."""
    return F.cross_entropy(logits, labels)


def sample_labels(logits: Tensor, generator: torch.Generator) -> Tensor:
    """Class indices ``(B,)`` int64 drawn from softmax(logits), the distribution whose negative
    log-likelihood :func:`cross_entropy` is (Gumbel-max: the arg-max of ``logits`` plus
    standard Gumbel noise, one uniform draw per logit). ``generator`` must be on the device of
    ``logits``."""
    uniform = torch.rand(
        logits.shape, generator=generator, dtype=logits.dtype, device=logits.device
    )
    tiny = torch.finfo(logits.dtype).tiny
    gumbel = -torch.log(-torch.log(uniform.clamp_(min=tiny)))
    return (logits.detach() + gumbel).argmax(dim=1)


def accuracy(logits: Tensor, labels: Tensor) -> dict[str, Tensor]:
    """``accuracy``: the fraction of the batch whose arg-max logit is the label."""
    return {"accuracy": (logits.argmax(dim=1) == labels).float().mean()}


def _digits_task(name: str, build: Callable[[], nn.Module], data_seed: int) -> Task:
    train, test = digits_split(data_seed)
    return Task(
        name=name,
        make_model=lambda seed: seeded_model(build, seed),
        train=train,
        test=test,
        loss=cross_entropy,
        metrics=accuracy,
        spec={"data_seed": data_seed, "test_fraction": TEST_FRACTION},
        sample_targets=sample_labels,
    )


def digits_mlp_task(data_seed: int = 0) -> Task:
    """Digits classification with :func:`digits_mlp`."""
    return _digits_task("digits-mlp", digits_mlp, data_seed)


def digits_cnn_task(data_seed: int = 0) -> Task:
    """Digits classification with :func:`digits_cnn`."""
    return _digits_task("digits-cnn", digits_cnn, data_seed)
