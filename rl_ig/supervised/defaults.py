"""Per-task defaults of ``scripts/train_supervised.py``: batch size, step budget, evaluation
cadence, and the learning rate and hyperparameters of each optimizer.

* ``curves``: batch 1000, the K-FAC paper's (Martens & Grosse 2015, §13) starting minibatch size
  on this autoencoder; 2000 steps (100 epochs of the 20,000 images).
* ``digits-mlp`` / ``digits-cnn``: batch 128 of the 1,438 training images; 500 steps (about 45
  epochs), by which both networks are past 95% test accuracy with Adam.
* ``teacher``: batch 256 of 8,192 examples; 2000 steps.

Learning rates: Adam's 1e-3 (Kingma & Ba 2015); Shampoo's is the step size of its grafted Adam,
hence also 1e-3; SGD (momentum 0.9) 0.05 on the mean losses, 1e-3 on the CURVES loss, which is
a sum over 784 pixels and so has gradients hundreds of times larger.

K-FAC uses the true Fisher by default (``fisher="sampled"``: factors from targets drawn from the
model, see :mod:`rl_ig.supervised.optimizers`). On the mean losses it takes lr 0.1 with
``damping=1e-2, kl_clip=1e-3``: without the trust region of Ba et al. (2017) its first steps on
the digits MLP diverge at damping 1e-2 and 1e-3, with the sampled Fisher as with the empirical
one. With that clip it reached 98.05% test accuracy on digits-mlp in the default 500 steps
(Adam: 97.2%), a training loss of 0.28 after 25 steps (Adam: 1.78), and 97.5% on digits-cnn;
on the teacher task, test MSE 0.093 after 300 steps (empirical Fisher 0.114, Adam 0.209).

On CURVES, whose summed loss makes the factors hundreds of times larger, K-FAC takes lr 1 with
``damping=0.1, kl_clip=0.1``; the clip binds on every step (it scaled the step by 0.07 in the
median), so it, not lr, sets the step length. In 200 steps of batch 500 the runs that do not
diverge first reach the plateau of the mean image (training loss about 125); from there, the
training loss at step 200 was 101.9 with this setting (127 after 25 steps, 116.5 after 100),
against Adam's 117.7 (141, 125.6). ``kl_clip=0.03`` gave 101.5, ``damping=1e-2, kl_clip=0.1``
101.5, and ``damping=1e-2, kl_clip=1e-2`` 94.3 but slower at first (142 after 25 steps);
``kl_clip=0.3`` gave 107.4. Without a clip, damping 1 at lr 0.1 gave 121.0 and every other
damping and lr (damping 1e-2 or 0.1, lr 0.1 to 1; damping 1 at lr 0.3 or 1) stayed on the
plateau or diverged. With batch 1000 the setting reached 98.2 against Adam's 114.7. (The
empirical Fisher at damping 1 and lr 0.1 stayed at 126.2.) Shampoo on CURVES takes
``epsilon=1e-6`` (151 after 150 steps of batch 500, against 296 with Distributed Shampoo's
1e-12). These are short checks of stability and early progress with one seed, not tuned values.
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
        lr={**_MEAN_LOSS_LR, "kfac": 1.0, "sgd": 1e-3},
        hp={"kfac": {"damping": 0.1, "kl_clip": 0.1}, "shampoo": {"epsilon": 1e-6}},
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
