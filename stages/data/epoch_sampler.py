"""A seeded, distributed sampler that tells each item which epoch it belongs to."""
from __future__ import annotations

from typing import Iterator

from mmengine.dataset import DefaultSampler
from stages.registry import DATA_SAMPLERS


@DATA_SAMPLERS.register_module()
class EpochSeedSampler(DefaultSampler):
    """mmengine's :class:`DefaultSampler` (seeded shuffle, rank sharding, ``set_epoch``) that
    yields ``(index, epoch)`` pairs, so the dataset can derive an item's augmentation from
    ``(seed, epoch, index)`` inside any loader worker, persistent or not."""

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        for i in super().__iter__():
            yield (int(i), int(epoch))
