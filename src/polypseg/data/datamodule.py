"""Torch datasets over the cached arrays and the LightningDataModule that builds them for training."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import albumentations as A
import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from polypseg.data.augment import build_augment
from polypseg.data.cache import CachedArrays, build_cache
from polypseg.data.sample import Sample
from polypseg.preprocess import IMAGENET_MEAN, IMAGENET_STD, normalise


def epoch_seed(seed: int, epoch: int, purpose: str) -> int:
    """A 31-bit seed that depends only on the run's ``seed``, the ``epoch`` and what it is for, so that a
    resumed run draws exactly what an uninterrupted one draws in that epoch."""
    tag = int.from_bytes(purpose.encode()[:8].ljust(8, b"\0"), "little")
    return int(np.random.SeedSequence([seed, epoch, tag]).generate_state(1)[0] & 0x7FFFFFFF)


class EpochSampler(DistributedSampler):
    """Training order and augmentation seeds that depend only on (seed, epoch), under DDP or not.

    Yields ``(index, augmentation seed)`` pairs: epoch ``e`` shuffles the items with
    :func:`epoch_seed` ``(seed, e, "order")`` and gives each item its own seed drawn from the same
    generator, so the data order and every augmentation of an epoch repeat exactly after ``--resume``
    (torch's ``RandomSampler`` draws from the global RNG, whose state a resumed process does not have).
    Under DDP rank ``r`` of ``w`` takes every ``w``-th item of the shuffled order (the order padded by
    repetition to a multiple of ``w``, as Lightning's sampler does, so every rank takes the same steps).
    Lightning calls :meth:`set_epoch`; ``epoch_fn`` (the trainer's current epoch) is read when an
    iterator is made too, since Lightning makes the first iterator of a resumed run before it sets the
    epoch.
    """

    def __init__(self, dataset: Dataset, seed: int, epoch_fn: Callable[[], int] | None = None) -> None:
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        world = torch.distributed.get_world_size() if distributed else 1
        rank = torch.distributed.get_rank() if distributed else 0
        super().__init__(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=False)
        self.epoch_fn = epoch_fn

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        epoch = self.epoch_fn() if self.epoch_fn is not None else self.epoch
        rng = np.random.default_rng(epoch_seed(self.seed, epoch, "order"))
        n = len(self.dataset)  # type: ignore[arg-type]
        order = rng.permutation(n)
        seeds = rng.integers(0, 2**31 - 1, n)
        total = -(-n // self.num_replicas) * self.num_replicas
        picks = np.resize(np.arange(n), total)[self.rank :: self.num_replicas]
        return iter([(int(order[i]), int(seeds[i])) for i in picks])

    def __len__(self) -> int:
        return -(-len(self.dataset) // self.num_replicas)  # type: ignore[arg-type]


class SegDataset(Dataset):
    """Items ``(image float32 (3, S, S), mask float32 (1, S, S) in {0, 1})`` from cached arrays.

    An item is asked for by position ``i`` or, for augmented training, by ``(i, seed)`` from
    :class:`EpochSampler`: the transform is seeded with ``seed``, so augmentation never depends on
    global RNG state.
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

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        i, seed = key if isinstance(key, tuple) else (key, None)
        j = self.indices[i]
        image = np.asarray(self.arrays.images[j])
        mask = np.asarray(self.arrays.masks[j])
        if self.transform is not None:
            if seed is None:
                seed = int(torch.randint(0, 2**31 - 1, ()).item())
            self.transform.set_random_seed(seed)
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
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.seed = seed  # the training order and augmentation of each epoch derive from it (EpochSampler)
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
        # Training: the (seed, epoch)-determined order of EpochSampler, padded across DDP ranks so every
        # rank takes the same number of steps. Validation under DDP: shard without padding, so no image
        # counts twice.
        sampler: DistributedSampler | None = None
        if shuffle:
            sampler = EpochSampler(ds, self.seed, self._current_epoch)
        elif distributed:
            sampler = ShardSampler(ds)
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            drop_last=shuffle and len(sampler or ds) > self.batch_size,  # per rank: what this rank sees
        )

    def _current_epoch(self) -> int:
        trainer = getattr(self, "trainer", None)
        return int(trainer.current_epoch) if trainer is not None else 0

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", build_augment(self.augment, self.size), shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", None, shuffle=False)
