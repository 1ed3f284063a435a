"""Targets sampled from the model's predictive distribution, for K-FAC's true Fisher.

K-FAC's factors estimate the Fisher ``E_x E_{y~p(y|x,θ)}[∇ℓ ∇ℓᵀ]`` when the loss gradients
they are read from are those of targets ``y`` drawn from the model itself (Martens & Grosse
2015, §5); the gradients of the training targets give the empirical Fisher instead.
:class:`TargetSampler` draws those targets reproducibly (a private generator seeded from the
run's seed, whose state checkpoints carry) and identically in one process and in a
data-parallel run.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from torch import Tensor

from rl_ig.supervised.task import SampleTargets


def stream_seed(seed: int) -> int:
    """The seed of the target-sampling generator of a run seeded with ``seed``: a 63-bit hash,
    so that its stream is unrelated to the minibatch sampler's (seeded with ``seed`` itself)."""
    digest = hashlib.sha256(f"rl-ig sampled fisher {seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class TargetSampler:
    """Draws ``sample_targets(outputs, generator)`` from a private generator on ``device``.

    In a data-parallel run (``world_size > 1``) every rank samples a tensor of the global
    batch's shape (its own outputs repeated) and keeps its own rows, ``rank·b`` to
    ``(rank+1)·b``. By the contract of :data:`~rl_ig.supervised.task.SampleTargets` these are
    the targets that one process would draw for those rows of the whole batch, so the samples do
    not depend on the number of ranks, and every rank's generator stays in the same state.

    Args:
        sample: the task's ``sample_targets``.
        seed: the run's seed (the generator is seeded with :func:`stream_seed` of it).
        device: where the outputs are (the generator must be on their device).
        rank: this process's rank.
        world_size: the number of processes that split each batch.
    """

    def __init__(
        self,
        sample: SampleTargets,
        seed: int,
        device: torch.device | str = "cpu",
        *,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self._sample = sample
        self.rank, self.world_size = rank, world_size
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(stream_seed(seed))

    def sample(self, outputs: Tensor) -> Tensor:
        """Targets for ``outputs`` (detached), drawn from the distribution they parametrise."""
        outputs = outputs.detach()
        if self.world_size == 1:
            return self._sample(outputs, self.generator)
        rows = outputs.shape[0]
        everything = outputs.repeat(self.world_size, *([1] * (outputs.dim() - 1)))
        drawn = self._sample(everything, self.generator)
        return drawn[self.rank * rows : (self.rank + 1) * rows]

    def state_dict(self) -> dict[str, Any]:
        """The generator's state and its device type (``torch.load(weights_only=True)`` reads
        them back)."""
        return {"generator": self.generator.get_state(), "device": self.generator.device.type}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the stream of the sampler that wrote ``state``.

        A state from another device type (a CPU run resumed on CUDA, or the reverse) cannot
        continue there; the generator is then seeded from a hash of that state, so resuming the
        same checkpoint on that device still draws the same targets every time.
        """
        saved = state["generator"]
        if state["device"] == self.generator.device.type:
            self.generator.set_state(saved)
            return
        digest = hashlib.sha256(saved.cpu().numpy().tobytes()).digest()
        self.generator.manual_seed(int.from_bytes(digest[:8], "little") >> 1)
