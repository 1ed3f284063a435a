"""Seeded minibatches over a training set, with a state that checkpoints restore exactly."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class MinibatchSampler:
    """Minibatches of example indices drawn by epochs: each epoch is a fresh permutation of
    ``range(n)`` from a private ``torch.Generator`` seeded with ``seed``, cut into consecutive
    batches; the incomplete last batch of an epoch is dropped.

    Every process of a data-parallel run holds the same sampler, so all draw the same global
    batch and each takes its own slice of it.

    Raises:
        ValueError: if ``batch_size`` is not in ``[1, n]``.
    """

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        if not 1 <= batch_size <= n:
            raise ValueError(
                f"batch size {batch_size} must be between 1 and the {n} training examples; "
                "pass a smaller --batch-size"
            )
        self.n = n
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.permutation = torch.randperm(n, generator=self.generator)
        self.position = 0
        self.epoch = 0

    def next(self) -> Tensor:
        """The next batch of indices, ``(batch_size,)`` int64 on the CPU."""
        if self.position + self.batch_size > self.n:
            self.permutation = torch.randperm(self.n, generator=self.generator)
            self.position = 0
            self.epoch += 1
        batch = self.permutation[self.position : self.position + self.batch_size]
        self.position += self.batch_size
        return batch

    def state_dict(self) -> dict[str, Any]:
        """Tensors and ints only (``torch.load(weights_only=True)`` reads them back)."""
        return {
            "generator": self.generator.get_state(),
            "permutation": self.permutation.clone(),
            "position": self.position,
            "epoch": self.epoch,
            "n": self.n,
            "batch_size": self.batch_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue exactly where the sampler that wrote ``state`` stopped.

        Raises:
            ValueError: if ``state`` was written for another data set size or batch size.
        """
        if (state["n"], state["batch_size"]) != (self.n, self.batch_size):
            raise ValueError(
                f"sampler state is for {state['n']} examples in batches of "
                f"{state['batch_size']}, not {self.n} in batches of {self.batch_size}"
            )
        self.generator.set_state(state["generator"])
        self.permutation = state["permutation"].clone()
        self.position = int(state["position"])
        self.epoch = int(state["epoch"])
