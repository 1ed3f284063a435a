"""Every optimizer on every task, and the one-line errors of bad hyperparameters."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rl_ig.optim import KFAC, Adam, Shampoo
from rl_ig.supervised.curves import curves_task
from rl_ig.supervised.defaults import optimizer_settings
from rl_ig.supervised.digits import digits_cnn_task, digits_mlp_task
from rl_ig.supervised.optimizers import (
    OPTIMIZERS,
    check_hyperparameters,
    hyperparameter_defaults,
    make_optimizer,
    parse_override,
    resolved_hyperparameters,
)
from rl_ig.supervised.task import Task
from rl_ig.supervised.tasks import TASKS, make_task
from rl_ig.supervised.teacher import teacher_task

STEPS = 3


@pytest.fixture(scope="module")
def tiny_tasks() -> dict[str, Task]:
    return {
        "curves": curves_task(0, n_train=32, n_test=8),
        "digits-mlp": digits_mlp_task(0),
        "digits-cnn": digits_cnn_task(0),
        "teacher": teacher_task(0, n_train=64, n_test=8),
    }


def test_registry_lists_the_four_tasks_and_names_unknown_ones() -> None:
    assert list(TASKS) == ["curves", "digits-mlp", "digits-cnn", "teacher"]
    assert OPTIMIZERS == ("kfac", "shampoo", "adam", "sgd")
    with pytest.raises(ValueError, match=r"unknown task 'digits'; did you mean digits-mlp"):
        make_task("digits")


@pytest.mark.parametrize("optim", OPTIMIZERS)
@pytest.mark.parametrize("task_name", list(TASKS))
def test_every_optimizer_trains_every_parameter_of_every_task(
    tiny_tasks: dict[str, Task], task_name: str, optim: str
) -> None:
    task = tiny_tasks[task_name]
    model = task.make_model(0)
    # A plain loop: K-FAC reads its factors from this loss's own backward (the empirical Fisher;
    # the sampled one needs the training loop's capture, see test_sampled_fisher.py).
    hp = {"damping": 1e-2, "kl_clip": 1e-3, "fisher": "empirical"} if optim == "kfac" else {}
    opt = make_optimizer(optim, model, 1e-3, hp)
    before = [p.detach().clone() for p in model.parameters()]
    x, y = task.train.head(16)
    for _ in range(STEPS):
        opt.zero_grad()
        task.loss(model(x), y).backward()
        opt.step()

    assert sum(len(g["params"]) for g in opt.param_groups) == len(before)
    for (name, p), old in zip(model.named_parameters(), before):
        assert torch.isfinite(p).all(), name
        # Sparse init leaves most weights at 0 with a zero gradient; the rest must move.
        assert not torch.equal(p, old), f"{optim} did not update {name}"
    if optim == "kfac":
        assert opt.last_step_info["skipped_layers"] == 0  # every Linear/Conv2d preconditioned


def test_optimizers_are_the_rl_ig_classes_with_overrides_applied() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    kfac = make_optimizer("kfac", model, 0.2, {"damping": 0.05, "inverse_update_freq": 3})
    shampoo = make_optimizer("shampoo", model, 1e-2, {"epsilon": 1e-6, "betas": [0.5, 0.99]})
    adam = make_optimizer("adam", model, 1e-2, {"eps": 1e-5})
    sgd = make_optimizer("sgd", model, 0.1)

    assert isinstance(kfac, KFAC) and isinstance(shampoo, Shampoo) and isinstance(adam, Adam)
    assert kfac.param_groups[0]["damping"] == 0.05 and kfac.config.inverse_update_freq == 3
    assert shampoo.param_groups[0]["epsilon"] == 1e-6
    assert adam.param_groups[0]["eps"] == 1e-5 and adam.param_groups[0]["lr"] == 1e-2
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["momentum"] == 0.9
    assert make_optimizer("sgd", model, 0.1, {"momentum": 0.0}).param_groups[0]["momentum"] == 0
    assert hyperparameter_defaults("sgd")["momentum"] == 0.9


def test_kfac_fisher_setting_picks_the_capture_mode() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    default = make_optimizer("kfac", model, 0.1)
    sampled = make_optimizer("kfac", model, 0.1, {"fisher": "sampled"})
    empirical = make_optimizer("kfac", model, 0.1, {"fisher": "empirical", "damping": 0.1})

    assert isinstance(default, KFAC) and isinstance(sampled, KFAC) and isinstance(empirical, KFAC)
    assert default.config.capture == sampled.config.capture == "explicit"
    assert empirical.config.capture == "auto" and empirical.param_groups[0]["damping"] == 0.1
    defaults = hyperparameter_defaults("kfac")
    assert defaults["fisher"] == "sampled" and "capture" not in defaults
    assert "fisher" not in hyperparameter_defaults("adam")
    assert resolved_hyperparameters("kfac", {"damping": 0.1}) == {
        "damping": 0.1,
        "fisher": "sampled",
    }
    assert resolved_hyperparameters("adam", {"eps": 1e-5}) == {"eps": 1e-5}


BAD_HP = [
    (
        "kfac",
        {"dampning": 1.0},
        "unknown hyperparameter 'dampning' for optim kfac; did you mean damping?",
    ),
    ("kfac", {"damping": 0.0}, "damping must be a finite number > 0, got 0.0"),
    (
        "kfac",
        {"inverse_update_freq": 2.5},
        "hyperparameter inverse_update_freq must be an integer, got 2.5",
    ),
    ("shampoo", {"epsilon": 0}, "epsilon must be a finite number > 0, got 0"),
    ("shampoo", {"betas": [0.9, 1.5]}, "betas[1] (beta2) must be in (0, 1], got 1.5"),
    ("adam", {"betas": [1.5, 0.9]}, "optim adam with betas=[1.5, 0.9]: Invalid beta parameter"),
    ("adam", {"amsgrad": "yes"}, "hyperparameter amsgrad must be true or false, got 'yes'"),
    ("sgd", {"momentum": "fast"}, "hyperparameter momentum must be a number, got 'fast'"),
    ("sgd", {"lr": 0.1}, "set the learning rate with --lr, not --hp lr=0.1"),
    ("adam", {"fisher": "sampled"}, "hyperparameter fisher applies to optim kfac only, not adam"),
    ("shampoo", {"fisher": "empirical"}, "hyperparameter fisher applies to optim kfac only"),
    (
        "kfac",
        {"fisher": "true"},
        "hyperparameter fisher must be 'sampled' or 'empirical', got 'true'",
    ),
    ("kfac", {"fisher": None}, "hyperparameter fisher must be 'sampled' or 'empirical', got None"),
    ("kfac", {"capture": "auto"}, "hyperparameter capture of optim kfac follows from fisher"),
    ("kfac", {"fisher_subsample": 0}, "fisher_subsample must be an integer >= 1, got 0"),
    ("kfac", {"fisher_subsample": 1.5}, "fisher_subsample must be an integer, got 1.5"),
    (
        "kfac",
        {"fisher": "empirical", "fisher_subsample": 2},
        "fisher_subsample applies to the sampled Fisher only",
    ),
    ("adam", {"fisher_subsample": 2}, "fisher_subsample applies to optim kfac only, not adam"),
]


@pytest.mark.parametrize(("optim", "hp", "message"), BAD_HP)
def test_bad_hyperparameters_are_one_line_errors_naming_the_key(
    optim: str, hp: dict[str, object], message: str
) -> None:
    model = nn.Sequential(nn.Linear(3, 2))
    with pytest.raises(ValueError) as info:
        make_optimizer(optim, model, 1e-3, hp)
    text = str(info.value)
    assert message in text and "\n" not in text


@pytest.mark.parametrize("lr", [0.0, -1e-3, float("nan"), float("inf")])
def test_learning_rate_must_be_positive_and_finite(lr: float) -> None:
    with pytest.raises(ValueError, match="lr must be a finite number > 0"):
        make_optimizer("adam", nn.Linear(2, 2), lr)


def test_kfac_on_a_model_without_linear_or_conv_layers_is_a_one_line_error() -> None:
    model = nn.Sequential(nn.LayerNorm(4))
    with pytest.raises(ValueError, match=r"^optim kfac: KFAC: model has no nn.Linear or nn.Conv2d"):
        make_optimizer("kfac", model, 0.1)


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("damping=1e-2", ("damping", 0.01)),
        ("betas=[0.9, 0.99]", ("betas", [0.9, 0.99])),
        ("kl_clip=null", ("kl_clip", None)),
        ("amsgrad=true", ("amsgrad", True)),
        (" precondition_frequency = 20", ("precondition_frequency", 20)),
    ],
)
def test_overrides_are_parsed_as_yaml(item: str, expected: tuple[str, object]) -> None:
    assert parse_override(item) == expected


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("damping", "--hp 'damping' is not of the form key=value"),
        ("=3", "--hp '=3' is not of the form key=value"),
        ("betas=[0.9", "--hp betas: value '[0.9' is not valid YAML"),
    ],
)
def test_malformed_overrides_are_one_line_errors(item: str, message: str) -> None:
    with pytest.raises(ValueError, match=r"^" + message.replace("[", r"\[")):
        parse_override(item)


def test_the_curves_default_fisher_subsample_gives_way_to_the_empirical_fisher() -> None:
    _, sampled = optimizer_settings("curves", "kfac", {})
    _, empirical = optimizer_settings("curves", "kfac", {"fisher": "empirical"})
    _, explicit = optimizer_settings(
        "curves", "kfac", {"fisher": "empirical", "fisher_subsample": 2}
    )

    assert sampled["fisher_subsample"] == 4
    assert "fisher_subsample" not in empirical
    check_hyperparameters("kfac", empirical)
    with pytest.raises(ValueError, match="fisher_subsample applies to the sampled Fisher only"):
        check_hyperparameters("kfac", explicit)
