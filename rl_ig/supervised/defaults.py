"""Per-task defaults of ``scripts/train_supervised.py``: batch size, step budget, evaluation
cadence, and the learning rate and hyperparameters of each optimizer.

* ``curves``: batch 1000, the K-FAC paper's (Martens & Grosse 2015, §13) starting minibatch size
  on this autoencoder; 2000 steps (100 epochs of the 20,000 images).
* ``digits-mlp`` / ``digits-cnn``: batch 128 of the 1,438 training images; 500 steps (about 45
  epochs), by which both networks are past 95% test accuracy with Adam.
* ``teacher``: batch 256 of 8,192 examples; 2000 steps.

Learning rates: Adam's 1e-3 (Kingma & Ba 2015); Shampoo's is the step size of its grafted Adam,
hence also 1e-3; SGD (momentum 0.9) 0.05 on the mean losses, 1e-3 on the CURVES loss, which is
a sum over 784 pixels and so has gradients hundreds of times larger. K-FAC takes lr 0.1. Its
factors come from the minibatch loss gradients (the empirical Fisher), and on the digits MLP its
first steps diverge at damping 1e-3 and 1e-2 unless the ``kl_clip=1e-3`` trust region of Ba et
al. (2017) bounds them, hence ``damping=1e-2, kl_clip=1e-3`` on the mean losses. On CURVES the
summed loss makes the factors hundreds of times larger, so the same clip binds on every step
(150 steps of batch 500 ended at loss 254 against Adam's 124); ``damping=1`` without a clip
reached 126. Shampoo on CURVES takes ``epsilon=1e-6`` (151 after those 150 steps, against 296
with Distributed Shampoo's 1e-12). These are short checks of stability and early progress, not
tuned values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rl_ig.supervised.tasks import check_task_name

KFAC_HP: Mapping[str, Any] = {"damping": 1e-2, "kl_clip": 1e-3}


@dataclass(frozen=True)
class TaskDefaults:
    """Defaults of one task (see the module docstring for the reasons)."""

    batch_size: int
    steps: int
    eval_every: int
    lr: Mapping[str, float]
    hp: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: {"kfac": KFAC_HP})


_MEAN_LOSS_LR = {"kfac": 0.1, "shampoo": 1e-3, "adam": 1e-3, "sgd": 0.05}

DEFAULTS: dict[str, TaskDefaults] = {
    "curves": TaskDefaults(
        batch_size=1000,
        steps=2000,
        eval_every=100,
        lr={**_MEAN_LOSS_LR, "sgd": 1e-3},
        hp={"kfac": {"damping": 1.0}, "shampoo": {"epsilon": 1e-6}},
    ),
    "digits-mlp": TaskDefaults(batch_size=128, steps=500, eval_every=50, lr=_MEAN_LOSS_LR),
    "digits-cnn": TaskDefaults(batch_size=128, steps=500, eval_every=50, lr=_MEAN_LOSS_LR),
    "teacher": TaskDefaults(batch_size=256, steps=2000, eval_every=100, lr=_MEAN_LOSS_LR),
}


def task_defaults(task: str) -> TaskDefaults:
    """The defaults of ``task``; a one-line ``ValueError`` for an unknown name."""
    return DEFAULTS[check_task_name(task)]


def optimizer_settings(
    task: str, optim: str, overrides: Mapping[str, Any]
) -> tuple[float, dict[str, Any]]:
    """``(lr, hp)`` for ``optim`` on ``task``: the defaults with ``overrides`` on top."""
    defaults = task_defaults(task)
    return defaults.lr[optim], {**defaults.hp.get(optim, {}), **overrides}
