"""Test-wide settings."""

from __future__ import annotations

import torch

# The networks under test are small: one thread is fastest for them, and it keeps timings
# stable when the machine runs other work (OpenMP threads contend for busy cores).
torch.set_num_threads(1)
