"""Repeat-factor sampling (LVIS) as an infinite, sharded, resumable stream of batches.

Fabric defects are long-tailed: a few categories fill most images. Repeat-factor sampling
(Gupta et al., LVIS, 2019) shows an image more often when it holds a rare category:

    f_c = fraction of training images that contain category c
    r_c = max(1, sqrt(t / f_c))
    r_i = max over the categories c in image i of r_c      (1 for a defect-free image)

Each epoch repeats image ``i`` ``floor(r_i)`` times plus once more with probability
``frac(r_i)`` (stochastic rounding), then shuffles. Epoch ``e`` depends only on
``(seed, e)``, so the stream can be rebuilt from any batch: resuming at step ``s`` replays
nothing and skips nothing. Under DDP, rank ``k`` of ``W`` takes positions ``k, k+W, ...``
of each epoch (padded to a multiple of ``W``), like ``DistributedSampler``.

Each item is ``(image_index, augmentation_seed)``; the seed is fixed by the item's place in
the stream, so augmentation is as reproducible as the order.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from fabricdet.data.dataset import DetectionDataset


def repeat_factors(dataset: DetectionDataset, threshold: float) -> np.ndarray:
    """Per-image repeat factors ``r_i`` (see the module docstring).

    Args:
        threshold: ``t``; 0 gives every image the factor 1 (plain shuffling).

    Returns:
        ndarray[num_images] float64, each >= 1.
    """
    n = len(dataset.images)
    factors = np.ones(n, dtype=np.float64)
    if threshold <= 0 or n == 0:
        return factors
    per_image = [{inst.category_id for inst in rec.instances} for rec in dataset.images]
    counts: dict[int, int] = {}
    for cats in per_image:
        for c in cats:
            counts[c] = counts.get(c, 0) + 1
    r_cat = {c: max(1.0, float(np.sqrt(threshold / (k / n)))) for c, k in counts.items()}
    for i, cats in enumerate(per_image):
        if cats:
            factors[i] = max(r_cat[c] for c in cats)
    return factors


class RepeatFactorBatchSampler:
    """Endless batches of ``(image_index, augmentation_seed)`` for one rank.

    Pass it as ``DataLoader(batch_sampler=...)``. It never ends: the training loop stops at
    its step budget, and batch ``k`` of the stream is the same on every run.

    Args:
        factors (ndarray[N]): repeat factors (:func:`repeat_factors`).
        batch_size: items per batch for this rank.
        seed: fixes the order and the augmentation seeds.
        rank, world_size: this process' shard.
        start_batch: the first batch to yield (the number of steps already trained).
    """

    def __init__(
        self,
        factors: np.ndarray,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        start_batch: int = 0,
    ) -> None:
        if len(factors) == 0:
            raise ValueError("cannot sample batches from an empty dataset")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world size {world_size}")
        self.factors = np.asarray(factors, dtype=np.float64)
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.start_batch = start_batch

    def epoch(self, epoch: int) -> np.ndarray:
        """Image indices of one epoch, all ranks, padded to a multiple of the world size.

        Returns:
            ndarray[M] int64.
        """
        rng = np.random.default_rng([self.seed, epoch])
        whole = np.floor(self.factors)
        counts = whole + (rng.random(len(self.factors)) < self.factors - whole)
        order = rng.permutation(np.repeat(np.arange(len(self.factors)), counts.astype(np.int64)))
        pad = (-len(order)) % self.world_size
        return np.concatenate([order, order[:pad]])

    def _items(self, skip: int) -> Iterator[tuple[int, int]]:
        """This rank's stream from position ``skip`` on, as ``(index, augmentation_seed)``."""
        epoch = 0
        while True:
            order = self.epoch(epoch)
            positions = np.arange(self.rank, len(order), self.world_size)
            if skip >= len(positions):
                skip -= len(positions)
                epoch += 1
                continue
            for pos in positions[skip:]:
                # Seeded by the item's place in the stream: independent of workers and resume.
                seq = np.random.SeedSequence([self.seed, epoch, int(pos)])
                aug_seed = int(seq.generate_state(1)[0])
                yield int(order[pos]), aug_seed
            skip = 0
            epoch += 1

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        items = self._items(self.start_batch * self.batch_size)
        while True:
            yield [next(items) for _ in range(self.batch_size)]
