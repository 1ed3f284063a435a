"""Checkpoints of the supervised loop: bit-exact resume, the sampler's state, CSV continuation
and the errors of checkpoints that do not continue the run."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from rl_ig.supervised.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from rl_ig.supervised.outputs import CsvLog
from rl_ig.supervised.sampler import MinibatchSampler
from rl_ig.supervised.task import Task
from rl_ig.supervised.teacher import teacher_task
from rl_ig.supervised.trainer import SupervisedRun, TrainConfig

K = 6
# Refresh K-FAC's eigenbases and Shampoo's roots every few steps so that both happen before and
# after the checkpoint at step K.
HP: dict[str, dict[str, Any]] = {
    "adam": {},
    "sgd": {},
    "kfac": {"damping": 1e-2, "kl_clip": 1e-3, "inverse_update_freq": 4},
    "shampoo": {"precondition_frequency": 4, "start_preconditioning_step": 3},
}
LR = {"adam": 1e-2, "sgd": 0.05, "kfac": 0.1, "shampoo": 1e-2}


@pytest.fixture(scope="module")
def task() -> Task:
    return teacher_task(0, n_train=200, n_test=32)


def _config(
    optim: str, steps: int, logdir: Path, hp: dict[str, Any] | None = None, **kw: Any
) -> TrainConfig:
    return TrainConfig(
        optim=optim,
        lr=LR[optim],
        hp={**HP[optim], **(hp or {})},
        steps=steps,
        batch_size=48,  # 200 = 4 batches of 48 + 8 dropped: epochs turn over before step K
        logdir=logdir,
        eval_every=4,
        eval_train_size=64,
        progress=False,
        **kw,
    )


def _rows(logdir: Path) -> list[dict[str, str]]:
    with (logdir / "progress.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def _losses(logdir: Path) -> dict[int, str]:
    return {int(row["step"]): row["train/loss"] for row in _rows(logdir)}


@pytest.mark.parametrize(
    ("optim", "hp"),
    [
        ("adam", {}),
        ("kfac", {"fisher": "sampled"}),
        ("kfac", {"fisher": "empirical"}),
        ("kfac", {"fisher": "sampled", "adaptive_damping": True, "damping_adaptation_freq": 3}),
        ("shampoo", {}),
        ("sgd", {}),
    ],
    ids=["adam", "kfac-sampled", "kfac-empirical", "kfac-adaptive", "shampoo", "sgd"],
)
def test_resumed_run_equals_an_uninterrupted_one_bit_for_bit(
    task: Task, tmp_path: Path, optim: str, hp: dict[str, Any]
) -> None:
    straight = SupervisedRun(task, _config(optim, 2 * K, tmp_path / "straight", hp)).run()
    first = SupervisedRun(task, _config(optim, K, tmp_path / "split", hp)).run()
    checkpoint = first.paths.final_model
    second = SupervisedRun(
        task, _config(optim, 2 * K, tmp_path / "split", hp), resume=checkpoint
    ).run()

    assert (first.step, second.step, straight.step) == (K, 2 * K, 2 * K)
    _, a = load_checkpoint(straight.paths.final_model)
    _, b = load_checkpoint(second.paths.final_model)
    for name, value in a["model"].items():
        assert torch.equal(value, b["model"][name]), name
    assert torch.equal(a["sampler"]["permutation"], b["sampler"]["permutation"])
    # K-FAC's sampled Fisher draws its targets from a generator the checkpoint carries.
    assert ("target_sampler" in a) == (hp.get("fisher") == "sampled")
    if "target_sampler" in a:
        assert torch.equal(a["target_sampler"]["generator"], b["target_sampler"]["generator"])
    if hp.get("adaptive_damping"):  # adapted at steps 2, 5, 8 and 11, carried by the checkpoint
        dampings = [r["optim/damping"] for r in _rows(tmp_path / "straight")]
        assert len(set(dampings)) > 1
        assert [r["optim/damping"] for r in _rows(tmp_path / "split")] == dampings
    # The logged minibatch losses agree step by step, before and after the resume.
    assert _losses(tmp_path / "split") == _losses(tmp_path / "straight")
    summary = json.loads(second.paths.summary.read_text())
    assert (summary["start_step"], summary["step"], summary["resumed_from"]) == (
        K,
        2 * K,
        str(checkpoint),
    )


def test_resume_refuses_a_checkpoint_of_another_run(task: Task, tmp_path: Path) -> None:
    done = SupervisedRun(task, _config("adam", K, tmp_path)).run().paths.final_model

    with pytest.raises(ValueError, match="trained with optim 'adam', not 'sgd'; pass --optim adam"):
        SupervisedRun(task, _config("sgd", 2 * K, tmp_path), resume=done)
    with pytest.raises(ValueError, match="trained with seed 0, not 1; pass --seed 0"):
        SupervisedRun(task, _config("adam", 2 * K, tmp_path, seed=1), resume=done)
    with pytest.raises(ValueError, match=f"already has {K} steps, not fewer than --steps {K}"):
        SupervisedRun(task, _config("adam", K, tmp_path), resume=done)
    other_data = teacher_task(1, n_train=200, n_test=32)
    with pytest.raises(ValueError, match="trained on teacher data"):
        SupervisedRun(other_data, _config("adam", 2 * K, tmp_path), resume=done)


def test_kfac_checkpoints_record_their_fisher_and_older_ones_count_as_empirical(
    task: Task, tmp_path: Path
) -> None:
    sampled = SupervisedRun(task, _config("kfac", K, tmp_path / "s")).run().paths.final_model
    with pytest.raises(ValueError, match="'fisher': 'sampled'}, not .*'fisher': 'empirical'}"):
        SupervisedRun(
            task, _config("kfac", 2 * K, tmp_path, {"fisher": "empirical"}), resume=sampled
        )

    # A checkpoint whose hp does not name the Fisher was trained with the empirical one.
    empirical = _config("kfac", K, tmp_path / "e", {"fisher": "empirical"})
    path = SupervisedRun(task, empirical).run().paths.final_model
    meta, state = load_checkpoint(path)
    meta["hp"].pop("fisher")
    save_checkpoint(path, meta, state)
    with pytest.raises(ValueError, match="'fisher': 'empirical'}, not .*'fisher': 'sampled'}"):
        SupervisedRun(task, _config("kfac", 2 * K, tmp_path), resume=path)
    resumed = _config("kfac", 2 * K, tmp_path / "e", {"fisher": "empirical"})
    assert SupervisedRun(task, resumed, resume=path).run().step == 2 * K


def test_foreign_and_agent_checkpoints_are_refused(tmp_path: Path) -> None:
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    agent = {"format": "rl-ig-checkpoint", "version": 1, "meta": json.dumps({"algo": "ppo"})}
    torch.save({**agent, "state": {}}, tmp_path / "agent.pt")
    (tmp_path / "corrupt.pt").write_bytes(b"PK\x03\x04 truncated")

    with pytest.raises(CheckpointError, match="is not an rl-ig checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="holds a 'ppo' agent, not a supervised run"):
        load_checkpoint(tmp_path / "agent.pt")
    with pytest.raises(CheckpointError, match="is not a readable rl-ig checkpoint"):
        load_checkpoint(tmp_path / "corrupt.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    path = save_checkpoint(tmp_path / "ok.pt", {"step": 3}, {"x": torch.ones(2)})
    meta, state = load_checkpoint(path)
    assert meta == {"kind": "supervised", "step": 3} and torch.equal(state["x"], torch.ones(2))


def test_sampler_draws_epochs_of_disjoint_batches_and_restores_its_state() -> None:
    sampler = MinibatchSampler(10, 3, seed=0)
    epoch = torch.cat([sampler.next() for _ in range(3)])
    assert len(set(epoch.tolist())) == 9  # three disjoint batches; one example left over
    saved = sampler.state_dict()
    ahead = [sampler.next() for _ in range(5)]  # crosses into the third epoch
    restored = MinibatchSampler(10, 3, seed=99)
    restored.load_state_dict(saved)

    assert all(torch.equal(a, b) for a, b in zip(ahead, [restored.next() for _ in range(5)]))
    assert restored.epoch == sampler.epoch == 2
    with pytest.raises(ValueError, match="batch size 11 must be between 1 and the 10"):
        MinibatchSampler(10, 11, seed=0)


def test_csv_log_continues_up_to_the_checkpoint_and_extends_its_header(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    log = CsvLog(path)
    for step in (1, 2, 3):
        log.write({"step": step, "a": step * 10})
    resumed = CsvLog(path, keep_until=2)
    resumed.write({"step": 3, "a": 33, "b": 1})

    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["step"], r["a"], r["b"]) for r in rows] == [
        ("1", "10", ""),
        ("2", "20", ""),
        ("3", "33", "1"),
    ]
