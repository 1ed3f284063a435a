"""Where a supervised run writes: :mod:`rl_ig.run`'s outputs, re-exported for
``rl_ig.supervised``."""

from rl_ig.run.csvlog import CsvLog
from rl_ig.run.outputs import RunPaths, prepare_logdir, write_json

__all__ = ["CsvLog", "RunPaths", "prepare_logdir", "write_json"]
