"""CURVES-style images (renderer against hand-computed values, determinism, statistics) and the
K-FAC paper's deep autoencoder (architecture, initialisation, loss, a short fit)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from rl_ig.optim import Adam
from rl_ig.supervised.curves import (
    LAYER_SIZES,
    SPARSE_INIT_NONZERO,
    catmull_rom,
    curves_autoencoder,
    curves_task,
    make_curves,
    reconstruction_loss,
    reconstruction_metrics,
    render_strokes,
)


def test_same_seed_same_images_other_seed_other_images() -> None:
    a, b, c = make_curves(200, seed=3), make_curves(200, seed=3), make_curves(200, seed=4)

    assert torch.equal(a, b)
    assert (a - c).abs().mean() > 0.02
    assert torch.equal(make_curves(50, seed=3), a[:50])  # chunking does not change images


def test_images_are_28x28_in_unit_range_and_look_like_thin_curves() -> None:
    images = make_curves(500, seed=0)
    lit = (images > 0.5).float()

    assert images.shape == (500, 784) and images.dtype == torch.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert (images.amax(dim=1) > 0.5).all()  # none blank
    assert 0.02 < lit.mean() < 0.10  # a stroke, not a blob: a few percent of the pixels
    assert 15 <= lit.sum(dim=1).median() <= 80
    # Curves are smooth: most lit pixels have a lit 4-neighbour (no isolated speckle).
    grid = lit.reshape(-1, 28, 28)
    neighbours = F.max_pool2d(grid[:, None], 3, stride=1, padding=1)[:, 0]
    assert (grid * neighbours).sum() / grid.sum() > 0.99
    isolated = grid * (F.conv2d(grid[:, None], torch.ones(1, 1, 3, 3), padding=1)[:, 0] == 1)
    assert isolated.sum() / grid.sum() < 0.02


def test_catmull_rom_passes_through_its_knots() -> None:
    knots = torch.tensor([[[3.0, 4.0], [10.0, 20.0], [22.0, 5.0], [15.0, 15.0]]])
    curve = catmull_rom(knots, samples=8)

    assert curve.shape == (1, 8 * 3 + 1, 2)
    torch.testing.assert_close(curve[0, ::8], knots[0])


def test_straight_stroke_has_unit_core_and_gaussian_profile() -> None:
    """A horizontal stroke along row 14: the pen's Gaussian across it, 1 at the centre."""
    sigma = 0.7
    xs = torch.linspace(4.0, 23.0, 400, dtype=torch.float64)
    line = torch.stack([xs, torch.full_like(xs, 14.0)], dim=1)[None]
    image = render_strokes(line, sigma).reshape(28, 28)

    for offset in (0, 1, 2):
        expected = math.exp(-(offset**2) / (2 * sigma**2))
        torch.testing.assert_close(
            image[14 + offset, 9:19],
            torch.full((10,), expected, dtype=torch.float64),
            atol=2e-3,
            rtol=0,
        )
    assert image[:10].abs().max() < 1e-6 and image[:, :1].abs().max() < 1e-6


def test_autoencoder_is_the_hinton_salakhutdinov_architecture() -> None:
    model = curves_autoencoder()
    linears = [m for m in model if isinstance(m, nn.Linear)]

    assert LAYER_SIZES == (784, 400, 200, 100, 50, 25, 6, 25, 50, 100, 200, 400, 784)
    assert [(m.in_features, m.out_features) for m in linears] == list(
        zip(LAYER_SIZES[:-1], LAYER_SIZES[1:])
    )
    # Logistic units everywhere but the linear 6-unit code and the output logits.
    hidden = [nn.Linear, nn.Sigmoid] * 5
    expected = [*hidden, nn.Linear, *hidden, nn.Linear]
    assert [type(m) for m in model] == expected


def test_sparse_initialisation_has_fifteen_incoming_weights_per_unit() -> None:
    model = curves_task(0, n_train=4, n_test=4).make_model(7)
    for layer in (m for m in model if isinstance(m, nn.Linear)):
        nonzero = (layer.weight != 0).sum(dim=1)
        assert (nonzero == min(SPARSE_INIT_NONZERO, layer.in_features)).all()
        assert (layer.bias == 0).all()
    again = curves_task(0, n_train=4, n_test=4).make_model(7)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), again.parameters()))


def test_loss_is_pixel_summed_batch_averaged_cross_entropy_and_squared_error() -> None:
    logits = torch.randn(3, 784, dtype=torch.float64)
    x = torch.rand(3, 784, dtype=torch.float64)
    p = torch.sigmoid(logits)
    bce = -(x * torch.log(p) + (1 - x) * torch.log(1 - p)).sum(dim=1).mean()

    torch.testing.assert_close(reconstruction_loss(logits, x), bce)
    torch.testing.assert_close(
        reconstruction_metrics(logits, x)["squared_error"], ((p - x) ** 2).sum(dim=1).mean()
    )


def test_adam_reaches_the_mean_image_plateau_in_100_steps() -> None:
    """From ~900 nats (random sparse init) to the loss of predicting the mean image: the first
    plateau of this autoencoder (Hinton & Salakhutdinov 2006)."""
    task = curves_task(0, n_train=256, n_test=16)
    x = task.train.inputs
    mean = x.mean(dim=0).clamp(1e-4, 1 - 1e-4)
    plateau = float(reconstruction_loss(torch.logit(mean).expand_as(x), x))
    model = task.make_model(0)
    opt = Adam(model.parameters(), lr=1e-3)
    batches = torch.Generator().manual_seed(0)
    with torch.no_grad():
        start = float(task.loss(model(x), x))
    for _ in range(100):
        idx = torch.randint(0, 256, (64,), generator=batches)
        opt.zero_grad()
        task.loss(model(x[idx]), x[idx]).backward()
        opt.step()
    with torch.no_grad():
        end = float(task.loss(model(x), x))

    assert start > 3 * plateau
    assert end < 1.02 * plateau
