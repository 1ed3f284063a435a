"""K-FAC's sampled Fisher on the supervised tasks: each task's predictive distribution, the
target sampler of the training loop, and the factors it records against the analytic Fisher."""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from rl_ig.optim import KFAC
from rl_ig.supervised.curves import curves_task, sample_images
from rl_ig.supervised.digits import digits_cnn_task, digits_mlp_task, sample_labels
from rl_ig.supervised.fisher import TargetSampler, stream_seed
from rl_ig.supervised.sampler import MinibatchSampler
from rl_ig.supervised.task import Data, Task
from rl_ig.supervised.teacher import predictive_variance, sample_noisy_outputs, teacher_task
from rl_ig.supervised.trainer import SupervisedRun, TrainConfig

DRAWS = 40_000


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -- each task's predictive distribution -------------------------------------------------------


def test_curves_targets_are_bernoulli_of_the_sigmoid_of_the_logits() -> None:
    logits = torch.tensor([[-4.0, -1.0, 0.0, 0.5, 2.0, 6.0]])
    samples = sample_images(logits.expand(DRAWS, -1), _generator())
    p = torch.sigmoid(logits[0])

    assert samples.shape == (DRAWS, 6) and samples.dtype == torch.float32
    assert set(samples.unique().tolist()) <= {0.0, 1.0}
    standard_error = (p * (1 - p) / DRAWS).sqrt()
    assert ((samples.mean(dim=0) - p).abs() <= 5 * standard_error + 1e-6).all()


def test_digits_targets_are_class_indices_drawn_from_the_softmax() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0, 1.0, -3.0]])
    samples = sample_labels(logits.expand(DRAWS, -1), _generator())
    p = torch.softmax(logits[0], dim=0)

    assert samples.shape == (DRAWS,) and samples.dtype == torch.int64
    frequencies = torch.bincount(samples, minlength=5).float() / DRAWS
    standard_error = (p * (1 - p) / DRAWS).sqrt()
    assert ((frequencies - p).abs() <= 5 * standard_error).all(), (frequencies, p)


def test_teacher_targets_are_the_gaussian_whose_nll_is_the_mse() -> None:
    outputs = torch.tensor([[0.5, -1.0, 2.0, 0.0]])
    samples = sample_noisy_outputs(outputs.expand(DRAWS, -1), _generator())
    variance = predictive_variance(4)

    assert variance == 2.0  # 2σ² = K: Σ_k (y − f)²/(2σ²) is the mean of the K squared errors
    assert samples.shape == (DRAWS, 4)
    torch.testing.assert_close(
        samples.mean(dim=0), outputs[0], atol=5 * (2.0 / DRAWS) ** 0.5, rtol=0
    )
    torch.testing.assert_close(
        samples.var(dim=0),
        torch.full((4,), variance),
        atol=5 * variance * (2 / DRAWS) ** 0.5,
        rtol=0,
    )
    # The mean of the squared errors' gradient outer products is the loss's Hessian, (2/K)·I.
    g = 2 / 4 * (outputs - samples)
    torch.testing.assert_close(g.T @ g / DRAWS, 0.5 * torch.eye(4), atol=0.02, rtol=0)


SAMPLERS = {"curves": sample_images, "digits": sample_labels, "teacher": sample_noisy_outputs}


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_ranks_draw_the_rows_one_process_draws_for_the_whole_batch(name: str) -> None:
    """The sampler contract: draws depend on the shape only and row i on row i only."""
    outputs = torch.randn(12, 7, generator=_generator(1))
    whole = TargetSampler(SAMPLERS[name], seed=3).sample(outputs)
    parts = [
        TargetSampler(SAMPLERS[name], seed=3, rank=r, world_size=3).sample(
            outputs[4 * r : 4 * r + 4]
        )
        for r in range(3)
    ]

    assert torch.equal(torch.cat(parts), whole)
    other_seed = TargetSampler(SAMPLERS[name], seed=4).sample(outputs)
    assert not torch.equal(other_seed, whole)


def test_the_sampler_state_continues_its_stream() -> None:
    sampler = TargetSampler(sample_noisy_outputs, seed=0)
    outputs = torch.zeros(5, 4)
    sampler.sample(outputs)
    state = sampler.state_dict()
    ahead = sampler.sample(outputs)
    restored = TargetSampler(sample_noisy_outputs, seed=99)
    restored.load_state_dict(state)

    assert torch.equal(restored.sample(outputs), ahead)
    assert stream_seed(0) != 0 and stream_seed(0) != stream_seed(1)


# -- the factors the training loop records -----------------------------------------------------


def _bias_only_task(task: Task, n: int, bias: Tensor) -> Task:
    """``task`` with a zero-weight ``nn.Linear`` whose outputs are ``bias`` for every input, so
    that the analytic Fisher of its output layer is known in closed form."""
    in_dim = task.train.inputs.shape[1]

    def make_model(seed: int) -> nn.Module:
        layer = nn.Linear(in_dim, bias.numel())
        with torch.no_grad():
            layer.weight.zero_()
            layer.bias.copy_(bias)
        return layer

    return replace(task, make_model=make_model, train=task.train.head(n), test=task.test.head(8))


def _factors_after_one_step(task: Task, tmp_path: Path, **hp: Any) -> tuple[Tensor, Tensor]:
    """``(A, G)`` of the first layer after one step on the whole training set (the first factor
    update sets the factors to the batch's statistics)."""
    config = TrainConfig(
        optim="kfac",
        lr=1e-6,
        hp={"damping": 1e-2, **hp},
        steps=1,
        batch_size=task.train.size,
        logdir=tmp_path,
        eval_every=0,
        eval_train_size=8,
        progress=False,
    )
    run = SupervisedRun(task, config)
    run.run()
    assert isinstance(run.optimizer, KFAC)
    (a, g), *_ = run.optimizer.factors().values()
    return a, g


def _analytic_g(name: str, bias: Tensor) -> Tensor:
    if name == "curves":  # Σ_pixels Bernoulli NLL: diag(p(1 − p))
        p = torch.sigmoid(bias)
        return torch.diag(p * (1 - p))
    if name == "digits":  # categorical NLL: diag(p) − p pᵀ
        p = torch.softmax(bias, dim=0)
        return torch.diag(p) - torch.outer(p, p)
    return torch.eye(bias.numel()) * 2 / bias.numel()  # the MSE's Hessian (2/K)·I


def _empirical_g(name: str, bias: Tensor, targets: Tensor) -> Tensor:
    """``(1/N) Σ_i g_i g_iᵀ`` of the loss gradients at the true targets."""
    if name == "curves":
        g = torch.sigmoid(bias) - targets
    elif name == "digits":
        g = torch.softmax(bias, dim=0) - nn.functional.one_hot(targets, bias.numel()).float()
    else:
        g = 2 / bias.numel() * (bias - targets)
    return g.T @ g / g.shape[0]


@pytest.mark.parametrize(
    ("name", "n", "tolerance"),
    [("curves", 2000, 0.04), ("digits", 1438, 0.03), ("teacher", 4096, 0.05)],
)
def test_sampled_fisher_g_is_the_analytic_fisher_not_the_empirical_one(
    tmp_path: Path, name: str, n: int, tolerance: float
) -> None:
    task = {
        "curves": lambda: curves_task(0, n_train=n, n_test=8),
        "digits": lambda: digits_mlp_task(0),
        "teacher": lambda: teacher_task(0, n_train=n, n_test=8),
    }[name]()
    out_dim = task.make_model(0)(task.train.inputs[:1]).shape[1]
    bias = torch.linspace(-3.0, 3.0, out_dim)
    task = _bias_only_task(task, n, bias)
    _, sampled = _factors_after_one_step(task, tmp_path / "sampled")
    _, empirical = _factors_after_one_step(task, tmp_path / "empirical", fisher="empirical")

    analytic, expected_empirical = (
        _analytic_g(name, bias),
        _empirical_g(name, bias, task.train.targets),
    )
    # Each entry of the sampled G is a mean of n products, within ~5 standard errors of the
    # analytic Fisher's entry.
    assert (sampled - analytic).abs().max() < tolerance
    torch.testing.assert_close(empirical, expected_empirical, rtol=1e-4, atol=1e-5)
    assert (empirical - analytic).abs().max() > 3 * tolerance


@pytest.mark.parametrize("fisher", ["sampled", "empirical"])
def test_sampled_factors_do_not_depend_on_the_true_targets(tmp_path: Path, fisher: str) -> None:
    task = digits_mlp_task(0)
    shuffled = (task.train.targets + 1 + task.train.targets % 3) % 10
    other = replace(task, train=Data(task.train.inputs, shuffled))
    a1, g1 = _factors_after_one_step(task, tmp_path / "true", fisher=fisher)
    a2, g2 = _factors_after_one_step(other, tmp_path / "other", fisher=fisher)

    assert torch.equal(a1, a2)
    if fisher == "sampled":
        assert torch.equal(g1, g2)  # same generator state, same samples, same G
    else:
        assert not torch.allclose(g1, g2)


@pytest.mark.parametrize("subsample", [1, 4])
def test_fisher_subsample_reads_the_factors_from_every_nth_example_of_the_batch(
    tmp_path: Path, subsample: int
) -> None:
    """A is the inputs' second moment over the strided rows of the step's batch, and G that of
    the gradients at targets drawn for those rows only (the bias-only model's outputs are its
    bias for every input, so they are known)."""
    n = 400
    bias = torch.linspace(-3.0, 3.0, 784)
    task = _bias_only_task(curves_task(0, n_train=n, n_test=8), n, bias)
    a, g = _factors_after_one_step(task, tmp_path, fisher_subsample=subsample)

    rows = MinibatchSampler(n, n, seed=0).next()[::subsample]
    x = torch.cat([task.train.inputs[rows], torch.ones(len(rows), 1)], dim=1)
    sampled = TargetSampler(task.sample_targets, seed=0).sample(bias.expand(len(rows), -1))
    grads = torch.sigmoid(bias) - sampled
    torch.testing.assert_close(a, x.T @ x / len(rows))
    torch.testing.assert_close(g, grads.T @ grads / len(rows))


def test_fisher_subsample_must_divide_the_batch_of_each_process(tmp_path: Path) -> None:
    task = digits_mlp_task(0)
    config = TrainConfig(
        optim="kfac", lr=0.1, hp={"fisher_subsample": 3}, steps=1, batch_size=32, logdir=tmp_path
    )
    with pytest.raises(ValueError, match=r"fisher_subsample=3 must divide .* \(32\); pass a"):
        SupervisedRun(task, config)


@pytest.mark.parametrize(
    "make", [curves_task, digits_mlp_task, digits_cnn_task, teacher_task], ids=lambda f: f.__name__
)
def test_kfac_with_the_sampled_fisher_preconditions_every_layer_of_every_task(
    tmp_path: Path, make: Any
) -> None:
    task = make(0) if make in (digits_mlp_task, digits_cnn_task) else make(0, n_train=64, n_test=8)
    config = TrainConfig(
        optim="kfac",
        lr=0.1,
        hp={"damping": 1e-2, "kl_clip": 1e-3, "factor_update_freq": 2},
        steps=3,
        batch_size=16,
        logdir=tmp_path,
        eval_every=0,
        eval_train_size=16,
        progress=False,
    )
    run = SupervisedRun(task, config)
    before = [p.detach().clone() for p in run.model.parameters()]
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        run.run()
    assert not [w for w in record if "no factors" in str(w.message)]
    assert isinstance(run.optimizer, KFAC)
    assert run.optimizer.last_step_info["skipped_layers"] == 0
    n_layers = sum(isinstance(m, (nn.Linear, nn.Conv2d)) for m in run.model.modules())
    assert len(run.optimizer.factors()) == n_layers
    moved = [not torch.equal(p, old) for p, old in zip(run.model.parameters(), before)]
    assert any(moved)


def test_a_task_without_a_predictive_distribution_needs_the_empirical_fisher(
    tmp_path: Path,
) -> None:
    task = replace(teacher_task(0, n_train=32, n_test=8), sample_targets=None)
    settings: dict[str, Any] = {"optim": "kfac", "lr": 0.1, "steps": 1, "batch_size": 8}
    with pytest.raises(
        ValueError, match="no predictive distribution .* pass --hp fisher=empirical"
    ):
        SupervisedRun(task, TrainConfig(**settings, logdir=tmp_path))
    SupervisedRun(task, TrainConfig(**settings, hp={"fisher": "empirical"}, logdir=tmp_path))
