"""Tiled (sliced) inference: a detector over the tiles of an image of any size, then one merge.

>>> tiles = tile_grid(4096, 1000, 1024, overlap=64)          # width-only slicing
>>> det = detect_tiled(model, image, tiles, merge=MergeConfig(method="sinkhorn"))

The model follows torchvision's eval contract (``model(list[Tensor[3, h, w]])`` ->
``list[dict(boxes, scores, labels)]``, boxes in the pixels of the tensor it was given). Tiles
go to it ``batch_size`` at a time, each resized first by the model's own rule when ``resize``
is given (``(max_size, size_divisor)`` of its :class:`~fabricdet.engine.config.DataConfig`:
pick tiles of the size the model was trained on and the pixel scale is the training one).
Boxes come back to tile pixels, then shifted to image pixels, then merged across the seams
(:mod:`fabricdet.engine.tile_merge`). Masks are not merged: tiled detections are boxes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from fabricdet.data.tiling import Tile, tile_offsets
from fabricdet.engine.data import image_to_tensor
from fabricdet.engine.inference import to_original
from fabricdet.engine.tile_merge import Detections, MergeConfig, merge_detections
from fabricdet.engine.transforms import Resize, resize_image

#: A detector in eval mode: images (Tensor[3, h, w] in [0, 1]) -> one dict per image.
TileModel = Callable[[list[Tensor]], Sequence[Mapping[str, Tensor]]]


@dataclass(frozen=True)
class TileOutputs:
    """Detections of every tile, pooled, in image pixels (before merging).

    Attributes:
        boxes (Tensor[N, 4] float32): xyxy, image pixels.
        scores (Tensor[N] float32), labels (Tensor[N] int64).
        tile_index (Tensor[N] int64): the tile of each detection.
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    tile_index: Tensor

    @staticmethod
    def concat(parts: Sequence[TileOutputs]) -> TileOutputs:
        """Pool several :class:`TileOutputs` (their tile indices must already be global)."""
        if not parts:
            return TileOutputs(
                torch.zeros((0, 4)),
                torch.zeros(0),
                torch.zeros(0, dtype=torch.long),
                torch.zeros(0, dtype=torch.long),
            )
        return TileOutputs(*(torch.cat([getattr(p, f) for p in parts]) for f in _FIELDS))


_FIELDS = ("boxes", "scores", "labels", "tile_index")


def _prepare(crop: np.ndarray, resize: tuple[int, int] | None) -> tuple[Tensor, Resize]:
    h, w = crop.shape[:2]
    if resize is None:
        return image_to_tensor(crop), Resize(w, h, w, h)
    resized, r = resize_image(crop, resize[0], resize[1])
    return image_to_tensor(resized), r


@torch.inference_mode()
def detect_tiles(
    model: TileModel,
    image: np.ndarray,
    tiles: Sequence[Tile],
    *,
    batch_size: int = 8,
    resize: tuple[int, int] | None = None,
    score_threshold: float = 0.0,
    device: torch.device | str = "cpu",
    first_tile: int = 0,
) -> TileOutputs:
    """Run the model on every tile of ``image``; pool the detections in image pixels.

    Args:
        model: a detector in eval mode (see :data:`TileModel`).
        image (ndarray[H, W, 3]): uint8 RGB; ``tiles`` index into it.
        tiles: the grid (:func:`fabricdet.data.tiling.tile_grid`).
        batch_size: tiles per model call.
        resize: ``(max_size, size_divisor)`` to resize each tile by, or None to pass it as is.
        score_threshold: detections scoring below it are dropped.
        first_tile: added to ``tile_index`` (tiles numbered in a larger grid, e.g. a roll).

    Returns:
        The pooled detections; ``tile_index`` is ``first_tile`` + the position in ``tiles``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    offsets = tile_offsets(list(tiles))
    parts: list[TileOutputs] = []
    for start in range(0, len(tiles), batch_size):
        batch = list(range(start, min(start + batch_size, len(tiles))))
        prepared = [_prepare(tiles[k].crop(image), resize) for k in batch]
        outputs = model([t.to(device) for t, _ in prepared])
        for k, (_, r), out in zip(batch, prepared, outputs, strict=True):
            boxes_only = {key: out[key] for key in ("boxes", "scores", "labels")}
            raw = to_original(boxes_only, r, score_threshold)
            n = len(raw.scores)
            parts.append(
                TileOutputs(
                    torch.from_numpy(raw.boxes.reshape(-1, 4) + offsets[k]).float(),
                    torch.from_numpy(raw.scores).float(),
                    torch.from_numpy(raw.labels).long(),
                    torch.full((n,), first_tile + k, dtype=torch.long),
                )
            )
    return TileOutputs.concat(parts)


def detect_tiled(
    model: TileModel,
    image: np.ndarray,
    tiles: Sequence[Tile],
    *,
    merge: MergeConfig | None = None,
    batch_size: int = 8,
    resize: tuple[int, int] | None = None,
    score_threshold: float = 0.0,
    device: torch.device | str = "cpu",
) -> Detections:
    """Detections of the model on a whole image from its tiles: :func:`detect_tiles`, then
    :func:`~fabricdet.engine.tile_merge.merge_detections` (stitch, then SinkhornNMS by default).

    Args: as for :func:`detect_tiles`; ``merge``: the merge configuration.

    Returns:
        Detections in image pixels, by decreasing score.
    """
    pooled = detect_tiles(
        model,
        image,
        tiles,
        batch_size=batch_size,
        resize=resize,
        score_threshold=score_threshold,
        device=device,
    )
    return merge_detections(
        pooled.boxes, pooled.scores, pooled.labels, pooled.tile_index, tiles, merge
    )
