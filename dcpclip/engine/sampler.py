"""Training data order as a pure function of (seed, step), so a resumed run sees exactly the batches an
uninterrupted run would have seen, whatever happened to the process in between.

The stream of samples is the concatenation of epochs; epoch e is a permutation of the dataset drawn from
numpy's generator seeded by (ORDER_STREAM, seed, e). The tag keeps it apart from other seeded streams:
numpy treats trailing zeros of a seed tuple as padding, so (seed, 0) alone would equal default_rng(seed).
Step s takes stream positions s * batch_size ... (s + 1) * batch_size - 1, so a batch may straddle two
epochs. Each sample is yielded with its epoch: the dataset derives its augmentation randomness from
(seed, index, epoch), never from global or worker RNG state.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler


@dataclasses.dataclass(frozen=True)
class SampleKey:
    index: int  # into the dataset
    epoch: int  # pass over the dataset this draw belongs to


ORDER_STREAM = 0x4F524452  # tags data-order generators, apart from other default_rng((seed, ...)) streams


@functools.lru_cache(maxsize=2)  # a batch usually spans one or two epochs; read-only, so safely shared
def epoch_permutation(dataset_size: int, seed: int, epoch: int) -> np.ndarray:
    """[dataset_size] the order of epoch `epoch`; independent streams for every (seed, epoch) pair."""
    order = np.random.default_rng((ORDER_STREAM, seed, epoch)).permutation(dataset_size)
    order.flags.writeable = False
    return order


class StepBatchSampler(Sampler[list[SampleKey]]):
    """Yields the batches of steps `start_step` ... `stop_step - 1` (a DataLoader `batch_sampler`)."""

    def __init__(self, dataset_size: int, batch_size: int, seed: int, start_step: int, stop_step: int):
        if dataset_size < 1:
            raise ValueError("the training dataset is empty")
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        if not 0 <= start_step <= stop_step:
            raise ValueError(f"steps must satisfy 0 <= start ({start_step}) <= stop ({stop_step})")
        self.dataset_size = dataset_size
        self.batch_size = batch_size
        self.seed = seed
        self.start_step = start_step
        self.stop_step = stop_step

    def batch(self, step: int) -> list[SampleKey]:
        """The samples of step `step`, recomputed from scratch (no state)."""
        keys = []
        for position in range(step * self.batch_size, (step + 1) * self.batch_size):
            epoch, offset = divmod(position, self.dataset_size)
            order = epoch_permutation(self.dataset_size, self.seed, epoch)
            keys.append(SampleKey(int(order[offset]), epoch))
        return keys

    def __iter__(self) -> Iterator[list[SampleKey]]:
        for step in range(self.start_step, self.stop_step):
            yield self.batch(step)

    def __len__(self) -> int:
        return self.stop_step - self.start_step
