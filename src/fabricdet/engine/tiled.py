"""Tiled (sliced) inference: a detector over the tiles of an image of any size, then one merge.

>>> tiles = tile_grid(4096, 1000, 1024, overlap=64)          # width-only slicing
>>> det = detect_tiled(model, image, tiles, merge=MergeConfig(method="sinkhorn"))

The model follows torchvision's eval contract (``model(list[Tensor[3, h, w]])`` ->
``list[dict(boxes, scores, labels)]``, boxes in the pixels of the tensor it was given). Tiles
go to it ``batch_size`` at a time, each resized first by the model's own rule when ``resize``
is given (``(max_size, size_divisor)`` of its :class:`~fabricdet.engine.config.DataConfig`:
pick tiles of the size the model was trained on and the pixel scale is the training one).
Boxes come back to tile pixels, then shifted to image pixels, then merged across the seams
(:mod:`fabricdet.engine.tile_merge`). When the model also returns ``masks`` (Tensor[K, 1, h, w]
probabilities), each detection's mask comes back as a :class:`~fabricdet.engine.crop_mask.
CropMask` (binary, cropped to its box, in image pixels) and follows its detection through the
merge: pieces of a cut defect get the union of their masks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from fabricdet.data.tiling import Tile, tile_offsets
from fabricdet.engine.crop_mask import CropMask, crop_model_mask
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
        masks: one mask per detection in image pixels (None where it came out empty), or
            None when the model gives no masks.
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    tile_index: Tensor
    masks: tuple[CropMask | None, ...] | None = None

    def shifted(self, dx: int, dy: int) -> TileOutputs:
        """The same detections ``dx`` columns right and ``dy`` rows down."""
        offset = torch.tensor([dx, dy, dx, dy], dtype=self.boxes.dtype)
        masks = None
        if self.masks is not None:
            masks = tuple(None if m is None else m.shifted(dx, dy) for m in self.masks)
        return TileOutputs(self.boxes + offset, self.scores, self.labels, self.tile_index, masks)

    @staticmethod
    def concat(parts: Sequence[TileOutputs]) -> TileOutputs:
        """Pool several :class:`TileOutputs` (their tile indices must already be global).

        The pool has masks when any part has them (a part without gets None per detection).
        """
        if not parts:
            return TileOutputs(
                torch.zeros((0, 4)),
                torch.zeros(0),
                torch.zeros(0, dtype=torch.long),
                torch.zeros(0, dtype=torch.long),
            )
        masks = None
        if any(p.masks is not None for p in parts):
            masks = tuple(
                m
                for p in parts
                for m in (p.masks if p.masks is not None else (None,) * len(p.scores))
            )
        return TileOutputs(*(torch.cat([getattr(p, f) for p in parts]) for f in _FIELDS), masks)


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
            parts.append(_tile_outputs(out, r, score_threshold, offsets[k], first_tile + k))
    return TileOutputs.concat(parts)


def _tile_outputs(
    out: Mapping[str, Tensor],
    r: Resize,
    score_threshold: float,
    offset: np.ndarray,
    tile: int,
) -> TileOutputs:
    """One tile's model output in image pixels (``offset``: the tile's ``[x0, y0, x0, y0]``)."""
    # to_original thresholds and sorts; passing the positions 0..K-1 as the labels tells
    # which detections it kept, in its order, so masks line up with boxes whatever its rule.
    count = len(out["scores"])
    positions = torch.arange(count, device=out["scores"].device)
    raw = to_original(
        {"boxes": out["boxes"], "scores": out["scores"], "labels": positions}, r, score_threshold
    )
    kept = torch.from_numpy(raw.labels).long()
    masks = None
    if "masks" in out:
        probs = out["masks"].detach()[kept.to(out["masks"].device)].float().cpu().numpy()
        probs = probs.reshape(len(kept), *probs.shape[-2:])
        masks = tuple(
            None if m is None else m.shifted(int(offset[0]), int(offset[1]))
            for m in (crop_model_mask(p, b, r) for p, b in zip(probs, raw.boxes, strict=True))
        )
    return TileOutputs(
        torch.from_numpy(raw.boxes.reshape(-1, 4) + offset).float(),
        torch.from_numpy(raw.scores).float(),
        out["labels"].detach().cpu().long()[kept],
        torch.full((len(kept),), tile, dtype=torch.long),
        masks,
    )


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
        Detections in image pixels, by decreasing score (with masks when the model gives them).
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
        pooled.boxes,
        pooled.scores,
        pooled.labels,
        pooled.tile_index,
        tiles,
        merge,
        masks=pooled.masks,
    )
