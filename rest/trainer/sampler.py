"""Which prompts each step trains on, as resumable state: (epoch, batches consumed in that epoch).

Each epoch is a permutation drawn from (seed, epoch), so the position alone reproduces the stream; a resumed
run neither skips nor repeats a batch, also across an epoch boundary. The last partial batch is dropped
(every step has the configured size).
"""

from __future__ import annotations

import numpy as np


class PromptSampler:
    def __init__(self, num_items: int, batch_size: int, seed: int, shuffle: bool = True):
        if num_items < batch_size:
            raise ValueError(f"the training set has {num_items} prompts, fewer than data.train_batch_size={batch_size}")
        self.num_items, self.batch_size, self.seed, self.shuffle = num_items, batch_size, seed, shuffle
        self.epoch, self.offset = 0, 0

    @property
    def batches_per_epoch(self) -> int:
        return self.num_items // self.batch_size

    def _order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.num_items)
        return np.random.default_rng([self.seed, epoch]).permutation(self.num_items)

    def next_indices(self) -> list[int]:
        if self.offset >= self.batches_per_epoch:
            self.epoch, self.offset = self.epoch + 1, 0
        start = self.offset * self.batch_size
        self.offset += 1
        return self._order(self.epoch)[start : start + self.batch_size].tolist()

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "offset": self.offset}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.offset = int(state["epoch"]), int(state["offset"])
