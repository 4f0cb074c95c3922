"""Inference on image files: detections with category names, ``detections.json`` and
annotated pictures.

``detections.json`` is a list with one object per image::

    {"file": "a.jpg", "width": 2446, "height": 1000,
     "boxes": [[x1, y1, x2, y2], ...], "scores": [...], "labels": [...],
     "category_ids": [...], "category_names": [...], "masks": [RLE, ...]}

``boxes`` are xyxy in the original image's pixels, ``labels`` the model's contiguous labels,
``category_ids``/``category_names`` the dataset's; ``masks`` (COCO RLE) only for a model that
predicts masks, and with them each defect's size measured on its mask
(:func:`fabricdet.inspect.measure_mask`, original pixels): ``areas_px`` (pixel count),
``lengths_px`` (skeleton length for thin defects, the long side of the minimum-area rectangle
for blobs) and ``shapes`` (``"thin"``, ``"blob"`` or ``"empty"``).
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from torch import Tensor

from fabricdet.data.formats.atomic import atomic_write_json
from fabricdet.data.formats.image_size import is_image_file
from fabricdet.data.formats.rle import Rle, decode_mask, encode_mask
from fabricdet.data.tiling import tile_grid
from fabricdet.engine.checkpoint import LoadedModel
from fabricdet.engine.data import image_to_tensor, load_for_model, read_image
from fabricdet.engine.distributed import resolve_device
from fabricdet.engine.inference import Runner, set_nms
from fabricdet.engine.monitor import Progress
from fabricdet.engine.tiled import detect_tiled
from fabricdet.engine.transforms import Resize, resize_image
from fabricdet.errors import DataError
from fabricdet.inspect.measure import DefectMeasure, measure_mask

DETECTIONS_FILE = "detections.json"


@dataclass(frozen=True)
class ImageDetections:
    """The detections of one image file, sorted by decreasing score.

    Attributes:
        file: the image file.
        width, height: its size.
        boxes (ndarray[K, 4] float32): xyxy, original pixels.
        scores (ndarray[K] float32).
        labels (ndarray[K] int64): model labels.
        category_ids (ndarray[K] int64), category_names (K names): the model's categories.
        masks: K COCO RLEs, or None for a box-only model.
        measures: K sizes measured on the masks (pixels), or None without masks.
    """

    file: Path
    width: int
    height: int
    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    category_ids: np.ndarray
    category_names: tuple[str, ...]
    masks: tuple[Rle, ...] | None = None
    measures: tuple[DefectMeasure, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "file": str(self.file),
            "width": self.width,
            "height": self.height,
            "boxes": [[round(float(v), 2) for v in b] for b in self.boxes],
            "scores": [round(float(s), 5) for s in self.scores],
            "labels": [int(v) for v in self.labels],
            "category_ids": [int(v) for v in self.category_ids],
            "category_names": list(self.category_names),
        }
        if self.masks is not None:
            out["masks"] = [{"size": list(m["size"]), "counts": m["counts"]} for m in self.masks]
        if self.measures is not None:
            out["areas_px"] = [round(m.area_px, 2) for m in self.measures]
            out["lengths_px"] = [round(m.length_px, 2) for m in self.measures]
            out["shapes"] = [m.kind for m in self.measures]
        return out


def expand_image_paths(paths: Sequence[Path]) -> list[Path]:
    """Files as given; folders replaced by the image files directly inside them (sorted).

    Raises:
        DataError: a path does not exist, or a folder holds no image.
    """
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and is_image_file(f))
            if not found:
                raise DataError(f"{p}: folder holds no image files (.jpg, .png, ...)")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise DataError(f"{p}: no such image file or folder; check the path")
    return out


def _runner(
    loaded: LoadedModel, nms: str | None, score_threshold: float | None, device: str
) -> Runner:
    """A runner of the loaded model with the NMS method and score threshold resolved (the
    defaults are the run's ``eval.nms`` / model NMS and ``eval.defect_threshold``)."""
    cfg = loaded.config
    set_nms(loaded.model, nms or cfg.eval_nms())
    thresh = cfg.eval.defect_threshold if score_threshold is None else score_threshold
    return Runner(loaded.model, resolve_device(device), thresh)


def _run_one(
    runner: Runner, loaded: LoadedModel, image: Tensor, r: Resize, file: Path
) -> ImageDetections:
    """The detections of one resized image (Tensor[3, h, w]) as an :class:`ImageDetections`."""
    det = runner([image], [r])[0]
    binary = None if det.masks is None else [m >= 0.5 for m in det.masks]
    size = (r.orig_width, r.orig_height)
    return _image_detections(loaded, file, size, det.boxes, det.scores, det.labels, binary)


def _run_tiled(
    runner: Runner, loaded: LoadedModel, image: np.ndarray, file: Path, tile: int, overlap: int
) -> ImageDetections:
    """The detections of one image (ndarray[H, W, 3] uint8 RGB, original size) from its
    tiles, each brought to the model's input size by its own resize rule."""
    height, width = image.shape[:2]
    tiles = tile_grid(width, height, tile, tile, overlap=overlap)
    data = loaded.config.data
    det = detect_tiled(
        runner.model,
        image,
        tiles,
        resize=(data.max_size, data.size_divisor),
        score_threshold=runner.score_threshold,
        device=runner.device,
    )
    binary = None
    if det.masks is not None:
        empty = np.zeros((height, width), dtype=bool)
        binary = [empty if m is None else m.window(0, 0, width, height) for m in det.masks]
    return _image_detections(
        loaded,
        file,
        (width, height),
        det.boxes.numpy(),
        det.scores.numpy(),
        det.labels.numpy(),
        binary,
    )


def _image_detections(
    loaded: LoadedModel,
    file: Path,
    size: tuple[int, int],
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    masks: list[np.ndarray] | None,
) -> ImageDetections:
    """An :class:`ImageDetections` of detections in original pixels (``size``: width,
    height; ``masks``: binary ndarray[H, W] each, or None for a box-only model)."""
    ids = np.array([c.id for c in loaded.categories], dtype=np.int64)
    names = [c.name for c in loaded.categories]
    return ImageDetections(
        file,
        size[0],
        size[1],
        boxes,
        scores,
        labels,
        ids[labels],
        tuple(names[k] for k in labels),
        None if masks is None else tuple(encode_mask(m) for m in masks),
        None if masks is None else tuple(measure_mask(m) for m in masks),
    )


def detect(
    loaded: LoadedModel,
    paths: Sequence[Path],
    *,
    nms: str | None = None,
    score_threshold: float | None = None,
    device: str = "auto",
    progress: bool = True,
    tile: int | None = None,
    overlap: int = 64,
) -> list[ImageDetections]:
    """Detections of the model on image files (folders are expanded).

    Args:
        nms: NMS method; default the run's ``eval.nms``, else the model's own.
        score_threshold: default the run's ``eval.defect_threshold``.
        tile: cut each image into ``tile x tile`` tiles sharing ``overlap`` pixels, detect on
            each and merge across the seams (:func:`~fabricdet.engine.tiled.detect_tiled`):
            for a model trained at the camera's scale on crops smaller than the image, which
            would otherwise see it shrunk to its ``data.max_size``. None: the whole image.

    Raises:
        DataError: a missing or unreadable image, naming it.
        ValueError: an overlap of a tile's size or more.
    """
    files = expand_image_paths(paths)
    runner = _runner(loaded, nms, score_threshold, device)
    results = []
    bar = Progress(len(files), "detect", enabled=progress, every=max(1, len(files) // 10))
    try:
        for f in files:
            if tile is None:
                image, r = load_for_model(f, loaded.config.data)
                results.append(_run_one(runner, loaded, image, r, f))
            else:
                results.append(_run_tiled(runner, loaded, read_image(f), f, tile, overlap))
            bar.update()
    finally:
        bar.close()
    return results


def detect_image(
    loaded: LoadedModel,
    image: np.ndarray,
    file: Path | str = "image",
    *,
    nms: str | None = None,
    score_threshold: float | None = None,
    device: str = "auto",
) -> ImageDetections:
    """Detections of the model on one decoded image (an upload, a camera frame): the same as
    :func:`detect` on a file holding these pixels.

    Args:
        image (ndarray[H, W, 3]): uint8 RGB, as :func:`~fabricdet.engine.data.read_image` gives.
        file: reported as ``ImageDetections.file``; nothing is read from it.
        nms, score_threshold, device: as for :func:`detect`.

    Raises:
        DataError: ``image`` is not an ``H x W x 3`` uint8 array.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or image.size == 0:
        raise DataError(
            f"{file}: expected an H x W x 3 uint8 RGB image, got an array of shape "
            f"{image.shape} and dtype {image.dtype}; decode it with cv2 and convert BGR to RGB"
        )
    runner = _runner(loaded, nms, score_threshold, device)
    resized, r = resize_image(image, loaded.config.data.max_size, loaded.config.data.size_divisor)
    return _run_one(runner, loaded, image_to_tensor(resized), r, Path(file))


def _colour(label: int) -> tuple[int, int, int]:
    """A distinct, saturated BGR colour per label (golden-ratio hue steps)."""
    r, g, b = colorsys.hsv_to_rgb((label * 0.618034) % 1.0, 0.9, 1.0)
    return int(b * 255), int(g * 255), int(r * 255)


def draw_detections(
    image: np.ndarray, det: ImageDetections, mask_alpha: float = 0.45
) -> np.ndarray:
    """The image with masks (translucent), boxes, names and scores drawn on it.

    Args:
        image (ndarray[H, W, 3]): uint8 RGB.

    Returns:
        ndarray[H, W, 3] uint8 BGR (ready for ``cv2.imwrite``).
    """
    out = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    thick = max(1, round(max(out.shape[:2]) / 800))
    if det.masks is not None:
        for rle, label in zip(det.masks, det.labels, strict=True):
            m = decode_mask(rle)
            tint = np.array(_colour(int(label)), dtype=np.float32)
            out[m] = (out[m] * (1 - mask_alpha) + tint * mask_alpha).astype(np.uint8)
    for box, score, label, name in zip(
        det.boxes, det.scores, det.labels, det.category_names, strict=True
    ):
        colour = _colour(int(label))
        x1, y1, x2, y2 = (round(float(v)) for v in box)
        cv2.rectangle(out, (x1, y1), (max(x2, x1 + 1), max(y2, y1 + 1)), colour, thick)
        text = f"{name} {score:.2f}"
        scale = 0.4 * thick
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        ty = y1 - 2 if y1 - th - base - 2 >= 0 else min(out.shape[0] - 1, y2 + th + 2)
        cv2.rectangle(out, (x1, ty - th - base), (x1 + tw, ty + base), colour, -1)
        cv2.putText(out, text, (x1, ty), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick)
    return out


def _unique_names(files: Sequence[Path]) -> list[str]:
    """Output picture names: the file stem, numbered when two inputs share one."""
    seen: dict[str, int] = {}
    names = []
    for f in files:
        k = seen.get(f.stem, 0)
        seen[f.stem] = k + 1
        names.append(f"{f.stem}.jpg" if k == 0 else f"{f.stem}_{k}.jpg")
    return names


def write_detections(
    detections: Sequence[ImageDetections], out_dir: Path, *, draw: bool = True
) -> Path:
    """Write ``out_dir/detections.json`` and, with ``draw``, one annotated JPEG per image.

    Returns:
        the path of ``detections.json``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records = [d.to_json() for d in detections]
    if draw:
        for det, name, rec in zip(
            detections, _unique_names([d.file for d in detections]), records, strict=True
        ):
            picture = draw_detections(read_image(det.file), det)
            path = out_dir / name
            tmp = path.with_name(f".{name}.tmp.jpg")
            if not cv2.imwrite(str(tmp), picture):
                raise DataError(f"{path}: cannot write the picture; check the folder is writable")
            tmp.replace(path)
            rec["annotated"] = name
    path = out_dir / DETECTIONS_FILE
    atomic_write_json(path, records)
    return path
