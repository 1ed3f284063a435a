"""Supervised training with the rl-ig optimizers (K-FAC, Shampoo, Adam, SGD), in one process or
data-parallel under ``torchrun``.

Tasks (``TASKS[name](data_seed) -> Task``): ``curves`` (the deep autoencoder of the K-FAC paper
on generated CURVES-style images), ``digits-mlp`` and ``digits-cnn`` (scikit-learn's digits),
``teacher`` (teacher-student regression). :class:`SupervisedRun` trains one with logs,
evaluations and checkpoints; ``scripts/train_supervised.py`` is its command line.
"""

from rl_ig.supervised.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from rl_ig.supervised.curves import curves_autoencoder, curves_task, make_curves
from rl_ig.supervised.defaults import DEFAULTS, TaskDefaults, task_defaults
from rl_ig.supervised.digits import digits_cnn, digits_mlp, digits_split
from rl_ig.supervised.fisher import TargetSampler
from rl_ig.supervised.optimizers import OPTIMIZERS, make_optimizer, parse_overrides
from rl_ig.supervised.parallel import DistContext, context_from_env
from rl_ig.supervised.sampler import MinibatchSampler
from rl_ig.supervised.task import Data, Task, evaluate
from rl_ig.supervised.tasks import TASKS, make_task
from rl_ig.supervised.teacher import make_teacher, tanh_mlp, teacher_task
from rl_ig.supervised.trainer import RunResult, SupervisedRun, TrainConfig

__all__ = [
    "DEFAULTS",
    "OPTIMIZERS",
    "TASKS",
    "CheckpointError",
    "Data",
    "DistContext",
    "MinibatchSampler",
    "RunResult",
    "SupervisedRun",
    "Task",
    "TargetSampler",
    "TaskDefaults",
    "TrainConfig",
    "context_from_env",
    "curves_autoencoder",
    "curves_task",
    "digits_cnn",
    "digits_mlp",
    "digits_split",
    "evaluate",
    "load_checkpoint",
    "make_curves",
    "make_optimizer",
    "make_task",
    "make_teacher",
    "parse_overrides",
    "save_checkpoint",
    "tanh_mlp",
    "task_defaults",
    "teacher_task",
]
