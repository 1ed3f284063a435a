"""Teacher-student regression: a random tanh MLP (the teacher, seeded) labels Gaussian inputs;
a student MLP of a given width learns it under the mean squared error.

With ``student_width == TEACHER_WIDTH`` the student has the teacher's architecture, so zero
training loss (up to the label noise) is reachable. Targets are scaled to unit variance over the
training set before the noise is added, so a constant predictor has loss about
``1 + noise_std²``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rl_ig.supervised.task import Data, Task, seeded_model

IN_DIM, OUT_DIM = 16, 4
TEACHER_WIDTH, DEPTH = 64, 2
TEACHER_GAIN = 2.0
"""Teacher weights are N(0, gain²/fan_in): pre-activations of std about 2, so the tanh units
saturate and the function is far from linear."""
N_TRAIN, N_TEST = 8192, 2048
NOISE_STD = 0.1


def tanh_mlp(
    width: int, depth: int = DEPTH, in_dim: int = IN_DIM, out_dim: int = OUT_DIM
) -> nn.Sequential:
    """``in_dim``-``width``×``depth``-``out_dim`` with tanh hidden units (PyTorch's init)."""
    if width < 1 or depth < 1:
        raise ValueError(f"width and depth must be >= 1, got width={width}, depth={depth}")
    sizes = [in_dim, *([width] * depth)]
    layers: list[nn.Module] = []
    for d_in, d_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(d_in, d_out), nn.Tanh()]
    return nn.Sequential(*layers, nn.Linear(sizes[-1], out_dim))


def make_teacher(seed: int) -> nn.Sequential:
    """The teacher: :func:`tanh_mlp` of ``TEACHER_WIDTH`` with weights N(0, gain²/fan_in) and
    biases N(0, 0.1²), from ``seed``."""

    def build() -> nn.Sequential:
        model = tanh_mlp(TEACHER_WIDTH)
        with torch.no_grad():
            for layer in (m for m in model if isinstance(m, nn.Linear)):
                layer.weight.normal_(0.0, TEACHER_GAIN / math.sqrt(layer.in_features))
                layer.bias.normal_(0.0, 0.1)
        return model.requires_grad_(False)

    return seeded_model(build, seed)


def teacher_data(seed: int, n_train: int, n_test: int, noise_std: float) -> tuple[Data, Data]:
    """Inputs ``(N, IN_DIM)`` ~ N(0, I) and targets ``(N, OUT_DIM)`` = scaled teacher outputs
    plus N(0, noise_std²) noise, for the training and the test set."""
    if noise_std < 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std!r}")
    generator = torch.Generator().manual_seed(seed)
    teacher = make_teacher(seed)
    x = torch.randn(n_train + n_test, IN_DIM, generator=generator)
    with torch.no_grad():
        clean = teacher(x)
    clean = clean / clean[:n_train].std()
    y = clean + noise_std * torch.randn(clean.shape, generator=generator)
    return Data(x[:n_train], y[:n_train]), Data(x[n_train:], y[n_train:])


def mse(outputs: Tensor, targets: Tensor) -> Tensor:
    """Mean over the batch and the ``OUT_DIM`` outputs of the squared error."""
    return F.mse_loss(outputs, targets)


def predictive_variance(out_dim: int) -> float:
    """The variance ``σ² = out_dim / 2`` of the Gaussian ``N(f, σ²I)`` whose negative
    log-likelihood is :func:`mse`'s per-example loss up to a constant.

    Per example, :func:`mse` is ``(1/K) Σ_k (y_k − f_k)²`` with ``K = out_dim`` (a mean over the
    outputs), and ``−log N(y; f, σ²I) = Σ_k (y_k − f_k)² / (2σ²) + const``; the two agree for
    ``2σ² = K``. (With one output this is the familiar ``N(f, ½)`` of an unhalved squared error;
    a halved one, ``½(y − f)²``, would be ``N(f, 1)``.) At this scale the Fisher of targets drawn
    from it equals the loss's Hessian in the outputs, ``(2/K)·I``, so the sampled-Fisher
    factors are the Gauss-Newton ones. Another ``σ²`` would multiply the Fisher by
    ``σ²·4/K²``, which K-FAC would see as the damping and learning rate divided by that factor.
    """
    return out_dim / 2


def sample_noisy_outputs(outputs: Tensor, generator: torch.Generator) -> Tensor:
    """``outputs + N(0, σ²I)`` with ``σ² =`` :func:`predictive_variance` of the last dimension:
    targets from the Gaussian whose negative log-likelihood :func:`mse` is. ``generator`` must
    be on the device of ``outputs``."""
    std = math.sqrt(predictive_variance(outputs.shape[-1]))
    noise = torch.randn(
        outputs.shape, generator=generator, dtype=outputs.dtype, device=outputs.device
    )
    return outputs.detach() + std * noise


def teacher_task(
    data_seed: int = 0,
    *,
    student_width: int = TEACHER_WIDTH,
    noise_std: float = NOISE_STD,
    n_train: int = N_TRAIN,
    n_test: int = N_TEST,
) -> Task:
    """Teacher-student regression; the student is :func:`tanh_mlp` of ``student_width``.

    Metric ``r2``: ``1 − mse / Var(targets)``, the variance taken over the training targets
    (a constant of the task, so the metric is a mean over examples like the loss).
    """
    train, test = teacher_data(data_seed, n_train, n_test, noise_std)
    variance = float(train.targets.var())

    def metrics(outputs: Tensor, targets: Tensor) -> dict[str, Tensor]:
        return {"r2": 1.0 - mse(outputs, targets) / variance}

    return Task(
        name="teacher",
        make_model=lambda seed: seeded_model(lambda: tanh_mlp(student_width), seed),
        train=train,
        test=test,
        loss=mse,
        metrics=metrics,
        spec={
            "data_seed": data_seed,
            "student_width": student_width,
            "noise_std": noise_std,
            "n_train": n_train,
            "n_test": n_test,
        },
        sample_targets=sample_noisy_outputs,
    )
