"""Per-task defaults of ``scripts/train_supervised.py``: batch size, step budget, evaluation
cadence, and the learning rate and hyperparameters of each optimizer.

* ``curves``: batch 1000, the K-FAC paper's (Martens & Grosse 2015, §13) starting minibatch size
  on this autoencoder; 2000 steps (100 epochs of the 20,000 images).
* ``digits-mlp`` / ``digits-cnn``: batch 128 of the 1,438 training images; 500 steps (about 45
  epochs), by which both networks are past 95% test accuracy with Adam.
* ``teacher``: batch 256 of 8,192 examples; 2000 steps.

Learning rates: Adam's 1e-3 (Kingma & Ba 2015); Shampoo's is the step size of its grafted Adam,
hence also 1e-3; SGD (momentum 0.9) 0.05 on the mean losses. On CURVES, the best of the
benchmark's sweeps (``scripts/benchmark.py --curves``, README): Adam and Shampoo 3e-3 (of 1e-3,
3e-3, 1e-2), SGD 1e-2 (of 3e-3, 1e-2, 3e-2; the loss is a sum over 784 pixels, so its gradients
are hundreds of times larger than a mean loss's).

K-FAC uses the true Fisher by default (``fisher="sampled"``: factors from targets drawn from the
model, see :mod:`rl_ig.supervised.optimizers`). On the mean losses it takes lr 0.1 with
``damping=1e-2, kl_clip=1e-3``: without the trust region of Ba et al. (2017) its first steps on
the digits MLP diverge at damping 1e-2 and 1e-3, with the sampled Fisher as with the empirical
one. With that clip it reached 98.05% test accuracy on digits-mlp in the default 500 steps
(Adam: 97.2%), a training loss of 0.28 after 25 steps (Adam: 1.78), and 97.5% on digits-cnn;
on the teacher task, test MSE 0.093 after 300 steps (empirical Fisher 0.114, Adam 0.209).

On CURVES, whose summed loss makes the factors hundreds of times larger, K-FAC takes lr 1 with
``damping=0.1, kl_clip=0.01, momentum=0.9``, factored damping, and factors from every 4th
example of the batch (``fisher_subsample=4``); the last two are about the cost of a step
(below). The clip binds on every step, so it, not lr, sets
the step length (the clipped step ``lr·ν·Δ`` does not depend on lr). In 500 steps of batch 1000
(seed 0) that setting first reached a training loss of 65 at step 400-440 (two runs differing
in the rounding of the Fisher backward), against Adam's 1,420 at its best lr. Neighbours were
worse at step 500: ``kl_clip=0.03`` 64.8, ``0.005`` 65.4, ``0.02`` with damping 0.03 105.6,
damping 0.03 87.2, momentum 0.95 98.5, ``kl_clip=0.1`` 99.0, and that clip without momentum
(the previous default) 80.9 after 480 steps. Factors every second step reached 65 at step
460, factored damping at 480, inverses every 20 steps not by 500. Factors from every 4th
example with factored damping (2.2x Adam's step time against 3.1x, 30 steps alternating) reached
65 at step 400 with seed 0 and 420 with seed 1, where the setting without them had not reached
it by step 500 with seed 1 (66.6); exact damping with ``fisher_subsample=4`` took 480 steps,
``fisher_subsample=8`` 460, and ``factor_update_freq=2`` on top of the chosen setting 480.
With the inverses from Cholesky (same setting, 400 steps again), these neighbours were slower
to 65: momentum 0.8 at step 420, ``kl_clip=0.015`` at 440, ``factor_decay=0.98`` at 460, and
inverses every 5 steps, or damping 0.2, not by step 500 (65.6 and 69.2).
K-FAC on CURVES also adapts its damping by the Levenberg-Marquardt rule (Martens & Grosse 2015,
§6.5) with their period T = 5 and ω = (19/20)^5 ≈ 0.774, from 0.1 down to about 1e-3 by step
300; the rule's two loss evaluations run on the factors' quarter of the batch. On an AMD EPYC
CPU that took 340 steps to 65 against 420 without with seed 0 (320 in the benchmark's sweep),
and 440 as without with seed 1; on the whole batch 340 and 380, at a higher cost per step. Runs
that adapted on the first step of each period instead of the last (which costs an inversion
more per period) took 320 and 340 steps on seeds 0 and 1 (without adaptation: 420 and 440);
gentler decays were no better there (ω = 0.95: 400 and 340; 0.9: 340 and 360), and adapting
every 10 steps with ω = 0.6 had not reached 65 by step 400 (66.4). The adaptation costs
about 9% of a step (alternating, one thread: 119.3 ms against 109.8).
Shampoo on CURVES takes
``epsilon=1e-6`` (151 after 150 steps of batch 500, against 296 with Distributed Shampoo's
1e-12) and ``max_preconditioner_dim=128``: blocks of at most 128 (so 784 = 7 × 112,
400 = 4 × 100) take a fifth of the FLOPs of 1024-blocked factor and root products, and at lr 3e-3
the loss after 400 steps was 71.3 against 71.9 unblocked. These are short checks with one
or two seeds, not tuned values.
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
        lr={"kfac": 1.0, "shampoo": 3e-3, "adam": 3e-3, "sgd": 1e-2},
        hp={
            "kfac": {
                "damping": 0.1,
                "kl_clip": 0.01,
                "momentum": 0.9,
                "damping_mode": "factored",
                "fisher_subsample": 4,
                "adaptive_damping": True,
                "damping_adaptation_decay": 0.95**5,
            },
            "shampoo": {"epsilon": 1e-6, "max_preconditioner_dim": 128},
        },
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
    """``(lr, hp)`` for ``optim`` on ``task``: the defaults with ``overrides`` on top.

    A default ``fisher_subsample`` is dropped when the overrides choose the empirical Fisher,
    which it does not apply to (given explicitly, it stays, and is rejected as an error).
    """
    defaults = task_defaults(task)
    hp = {**defaults.hp.get(optim, {}), **overrides}
    if hp.get("fisher") == "empirical" and "fisher_subsample" not in overrides:
        hp.pop("fisher_subsample", None)
    return defaults.lr[optim], hp
