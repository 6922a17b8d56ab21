"""Torch datasets over the cached arrays and the LightningDataModule that builds them for training."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import albumentations as A
import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from polypseg.data.augment import build_augment
from polypseg.data.cache import CachedArrays, build_cache
from polypseg.data.sample import Sample
from polypseg.preprocess import IMAGENET_MEAN, IMAGENET_STD, normalise


class SegDataset(Dataset):
    """Items ``(image float32 (3, S, S), mask float32 (1, S, S) in {0, 1})`` from cached arrays.

    With a ``transform`` each item draws its augmentation seed from torch's RNG, so a seeded run
    (``seed_everything(..., workers=True)``) augments identically on every re-run.
    """

    def __init__(
        self,
        arrays: CachedArrays,
        indices: Sequence[int],
        transform: A.Compose | None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        self.arrays = arrays
        self.indices = list(indices)
        self.transform = transform
        self.mean, self.std = tuple(mean), tuple(std)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        j = self.indices[i]
        image = np.asarray(self.arrays.images[j])
        mask = np.asarray(self.arrays.masks[j])
        if self.transform is not None:
            self.transform.set_random_seed(int(torch.randint(0, 2**31 - 1, ()).item()))
            out = self.transform(image=image, mask=mask)
            image, mask = out["image"], out["mask"]
        x = normalise(image, self.mean, self.std)
        y = torch.from_numpy(np.array(mask, dtype=np.float32)).unsqueeze(0)
        return x, y


class ShardSampler(DistributedSampler):
    """Rank ``r`` of ``w`` takes items ``r, r + w, r + 2w, ...``: every item exactly once over all ranks.

    torch's ``DistributedSampler`` pads the last shard with repeated items so that every rank gets the
    same count; in validation those items would be scored twice. Here a rank may get one item fewer,
    which validation allows (no gradient synchronisation; the sums are reduced once per epoch).
    Lightning keeps a ``DistributedSampler`` (subclass) it finds instead of putting its own in.
    """

    def __init__(self, dataset: Dataset, num_replicas: int | None = None, rank: int | None = None) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)

    def _shard(self) -> range:
        return range(self.rank, len(self.dataset), self.num_replicas)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[int]:
        return iter(self._shard())

    def __len__(self) -> int:
        return len(self._shard())


class SegDataModule(pl.LightningDataModule):
    """Train and validation loaders over the cached arrays of the given samples and split."""

    def __init__(
        self,
        samples: Sequence[Sample],
        split: dict[str, list[str]],
        size: int,
        batch_size: int,
        augment: str,
        num_workers: int = 0,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        self.samples = list(samples)
        self.split = split
        self.size = size
        self.batch_size = batch_size
        self.augment = augment
        self.num_workers = num_workers
        self.mean, self.std = mean, std
        self.arrays: CachedArrays | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.arrays is None:
            self.arrays = build_cache(self.samples, self.size)

    def _indices(self, split: str) -> list[int]:
        pos = {s.id: i for i, s in enumerate(self.samples)}
        return [pos[i] for i in self.split[split]]

    def _loader(self, split: str, transform: A.Compose | None, shuffle: bool) -> DataLoader:
        assert self.arrays is not None, "call setup() first"
        ds = SegDataset(self.arrays, self._indices(split), transform, self.mean, self.std)
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        # Validation under DDP: shard without padding, so no image counts twice (training keeps
        # Lightning's padded, shuffled DistributedSampler: every rank needs the same number of steps).
        sampler = ShardSampler(ds) if distributed and not shuffle else None
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            shuffle=shuffle,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            drop_last=shuffle and len(ds) > self.batch_size,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", build_augment(self.augment, self.size), shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", None, shuffle=False)
