"""CURVES-style images and the deep autoencoder of Hinton & Salakhutdinov (2006), the K-FAC
benchmark of Martens & Grosse (2015, §13).

The original CURVES set (28×28 images of smooth curves through three random points) is not
shipped with any package, so :func:`make_curves` draws a set of the same kind from a seed: each
image is a uniform Catmull-Rom spline through ``points`` random points, stroked with a Gaussian
pen. The stroke is anti-aliased: pixel ``(i, j)`` gets ``∫ φ_σ(i − y(s)) φ_σ(j − x(s)) ds``
along the curve, normalised so that the centre of a straight stroke is 1, then clipped to
``[0, 1]``. The Gaussian is separable, so an image is one ``(28, S) @ (S, 28)`` product over the
``S`` points sampled along the curve.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rl_ig.supervised.task import Data, ModelT, Task, seeded_model

IMAGE_SIZE = 28
LAYER_SIZES = (784, 400, 200, 100, 50, 25, 6, 25, 50, 100, 200, 400, 784)
"""The autoencoder's widths, input to reconstruction; the 6 is the linear code layer."""
CODE_INDEX = LAYER_SIZES.index(6)
N_TRAIN, N_TEST = 20_000, 10_000
"""The sizes of the original CURVES training and test sets."""
SPARSE_INIT_NONZERO = 15
"""Incoming weights per unit under the sparse initialisation (Martens 2010, §4)."""

_SAMPLES_PER_SEGMENT = 40
_MARGIN = 3.0  # control points stay this many pixels inside the border
_CHUNK = 1000  # images rendered at once (keeps the temporaries in cache)


def catmull_rom(points: Tensor, samples: int) -> Tensor:
    """Points along the uniform Catmull-Rom spline through ``points``.

    Args:
        points: ``(n, K, 2)`` knots, ``K >= 2``; the end tangents come from reflected knots.
        samples: points per segment between consecutive knots.

    Returns:
        ``(n, samples·(K − 1) + 1, 2)``, starting at the first knot and ending at the last.
    """
    first = 2 * points[:, :1] - points[:, 1:2]
    last = 2 * points[:, -1:] - points[:, -2:-1]
    p = torch.cat([first, points, last], dim=1)
    t = torch.linspace(0, 1, samples + 1, dtype=points.dtype)[:-1]
    t2, t3 = t * t, t * t * t
    basis = 0.5 * torch.stack(
        [-t3 + 2 * t2 - t, 3 * t3 - 5 * t2 + 2, -3 * t3 + 4 * t2 + t, t3 - t2], dim=1
    )
    segments = torch.stack([p[:, i : i + 4] for i in range(points.shape[1] - 1)], dim=1)
    curve = torch.einsum("sk,nmkd->nmsd", basis, segments).reshape(points.shape[0], -1, 2)
    return torch.cat([curve, points[:, -1:]], dim=1)


def render_strokes(curve: Tensor, pen_width: float, size: int = IMAGE_SIZE) -> Tensor:
    """Anti-aliased images of polylines drawn with a Gaussian pen of std ``pen_width`` pixels.

    Args:
        curve: ``(n, S, 2)`` points ``(x, y)`` in pixel coordinates (pixel centres 0..size-1).

    Returns:
        ``(n, size·size)`` intensities in ``[0, 1]``, row-major (``y`` is the row).
    """
    step = (curve[:, 1:] - curve[:, :-1]).norm(dim=-1)
    ds = torch.zeros(curve.shape[:2], dtype=curve.dtype)
    ds[:, 1:] += step / 2
    ds[:, :-1] += step / 2
    grid = torch.arange(size, dtype=curve.dtype)
    c = -0.5 / pen_width**2
    gx = (curve[..., 0:1] - grid).square_().mul_(c).exp_()
    gy = (curve[..., 1:2] - grid).square_().mul_(c).exp_()
    gy.mul_((ds / (math.sqrt(2 * math.pi) * pen_width)).unsqueeze(-1))
    return torch.bmm(gy.transpose(1, 2), gx).clamp_(0.0, 1.0).reshape(curve.shape[0], -1)


def make_curves(n: int, seed: int, *, points: int = 3, pen_width: float = 0.7) -> Tensor:
    """``n`` images of smooth curves, ``(n, 784)`` float32 in ``[0, 1]``; same seed, same tensor.

    Args:
        n: number of images, >= 0.
        seed: seeds the knots (a private generator; the global RNG is untouched).
        points: knots per curve, >= 2 (three, as in the original CURVES).
        pen_width: std of the Gaussian pen in pixels.
    """
    if n < 0 or points < 2:
        raise ValueError(f"make_curves needs n >= 0 and points >= 2, got n={n}, points={points}")
    generator = torch.Generator().manual_seed(seed)
    span = IMAGE_SIZE - 1 - 2 * _MARGIN
    knots = _MARGIN + span * torch.rand(n, points, 2, generator=generator)
    images = torch.empty(n, IMAGE_SIZE * IMAGE_SIZE)
    for start in range(0, n, _CHUNK):
        curve = catmull_rom(knots[start : start + _CHUNK], _SAMPLES_PER_SEGMENT)
        images[start : start + _CHUNK] = render_strokes(curve, pen_width)
    return images


def sparse_init_(model: ModelT, nonzero: int = SPARSE_INIT_NONZERO) -> ModelT:
    """Martens' (2010) sparse initialisation: each unit of each ``nn.Linear`` gets ``nonzero``
    incoming weights drawn from N(0, 1) (all of them if it has fewer inputs), the rest and the
    biases 0. Uses the global RNG."""
    with torch.no_grad():
        for layer in (m for m in model.modules() if isinstance(m, nn.Linear)):
            out_dim, in_dim = layer.weight.shape
            k = min(nonzero, in_dim)
            chosen = torch.rand(out_dim, in_dim).argsort(dim=1)[:, :k]
            layer.weight.zero_().scatter_(1, chosen, torch.randn(out_dim, k))
            if layer.bias is not None:
                layer.bias.zero_()
    return model


def curves_autoencoder(init: str = "sparse") -> nn.Sequential:
    """784-400-200-100-50-25-6-25-50-100-200-400-784 with logistic hidden units.

    The code layer (6 units) is linear, as in Hinton & Salakhutdinov (2006); the last layer
    returns logits (the reconstruction is their sigmoid). ``init``: ``"sparse"`` (the K-FAC
    paper's setting, see :func:`sparse_init_`) or ``"default"`` (PyTorch's).
    """
    if init not in ("sparse", "default"):
        raise ValueError(f"init must be 'sparse' or 'default', got {init!r}")
    layers: list[nn.Module] = []
    pairs = list(zip(LAYER_SIZES[:-1], LAYER_SIZES[1:]))
    for index, (d_in, d_out) in enumerate(pairs):
        layers.append(nn.Linear(d_in, d_out))
        if index + 1 not in (CODE_INDEX, len(pairs)):
            layers.append(nn.Sigmoid())
    model = nn.Sequential(*layers)
    return sparse_init_(model) if init == "sparse" else model


def reconstruction_loss(logits: Tensor, images: Tensor) -> Tensor:
    """Binary cross-entropy of ``sigmoid(logits)`` against the pixel intensities, **summed over
    the 784 pixels and averaged over the batch** (the K-FAC paper's objective).

    Args:
        logits: ``(B, 784)``.
        images: ``(B, 784)`` in ``[0, 1]``.
    """
    bce = F.binary_cross_entropy_with_logits(logits, images, reduction="sum")
    return bce / logits.shape[0]


def sample_images(logits: Tensor, generator: torch.Generator) -> Tensor:
    """Binary images drawn pixel by pixel from Bernoulli(sigmoid(logits)), the distribution
    whose negative log-likelihood :func:`reconstruction_loss` is; ``(B, 784)`` of 0.0 and 1.0
    in the dtype of ``logits``. ``generator`` must be on the device of ``logits``."""
    uniform = torch.rand(
        logits.shape, generator=generator, dtype=logits.dtype, device=logits.device
    )
    return (uniform < torch.sigmoid(logits)).to(logits.dtype)


def reconstruction_metrics(logits: Tensor, images: Tensor) -> dict[str, Tensor]:
    """``squared_error``: ``Σ_pixels (sigmoid(logits) − x)²``, averaged over the batch (the
    error the K-FAC paper plots)."""
    return {"squared_error": (torch.sigmoid(logits) - images).square().sum(dim=1).mean()}


def curves_task(
    data_seed: int = 0, *, n_train: int = N_TRAIN, n_test: int = N_TEST, init: str = "sparse"
) -> Task:
    """The CURVES autoencoder task: ``n_train + n_test`` images from ``data_seed`` (disjoint
    train/test), targets = inputs."""
    images = make_curves(n_train + n_test, data_seed)
    train, test = images[:n_train], images[n_train:]
    return Task(
        name="curves",
        make_model=lambda seed: seeded_model(lambda: curves_autoencoder(init), seed),
        train=Data(train, train),
        test=Data(test, test),
        loss=reconstruction_loss,
        metrics=reconstruction_metrics,
        spec={"data_seed": data_seed, "n_train": n_train, "n_test": n_test, "init": init},
        sample_targets=sample_images,
    )
