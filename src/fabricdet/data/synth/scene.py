"""One synthetic image: draw a fabric, plan its defects, paint them, photograph it.

The random stream of image ``index`` of a dataset with seed ``seed`` is
``SeedSequence([seed, index])``: an image depends on nothing else, so datasets are identical
whatever the number of worker processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fabricdet.data.categories import TIANCHI_CATEGORIES, TIANCHI_RAW_TO_ID
from fabricdet.data.dataset import Instance
from fabricdet.data.synth.camera import camera_matrix, capture, fabric_padding
from fabricdet.data.synth.config import SynthConfig
from fabricdet.data.synth.defects import RAW_NAME_KINDS, Canvas, DefectKind, Placement
from fabricdet.data.synth.fabric import add_hairiness, render_region, sample_fabric
from fabricdet.data.synth.masks import RegionMask, encode_rle, tight_box, warp_mask

#: Attempts at a defective image before giving up (an attempt fails when every planned
#: defect ends up outside the image, which is rare).
_ATTEMPTS = 4


@dataclass(frozen=True)
class PlannedDefect:
    """A defect chosen for an image, before it is painted.

    Attributes:
        category_id: Tianchi category id.
        raw_name: raw Tianchi name (decides the rendering).
        seed: seed of the painter's own generator; a twin shares it (same shape and extent).
        anchor: ``(x, y)`` in fabric coordinates.
        twin_offset: yarns between this defect and the one it twins (0: not a twin).
    """

    category_id: int
    raw_name: str
    seed: int
    anchor: tuple[float, float]
    twin_offset: int = 0

    @property
    def kind(self) -> DefectKind:
        return RAW_NAME_KINDS[self.raw_name]


def image_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of image ``index`` in a dataset drawn with ``seed``."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))


def _raw_name(rng: np.random.Generator, category_id: int, config: SynthConfig) -> str:
    raws = next(c.raw_names for c in TIANCHI_CATEGORIES if c.id == category_id)
    weights = np.array([config.raw_name_weights.get(r, 1.0) for r in raws], float)
    return str(raws[rng.choice(len(raws), p=weights / weights.sum())])


def plan_defects(
    rng: np.random.Generator,
    config: SynthConfig,
    bounds: tuple[int, int, int, int],
    categories: Sequence[int] | None = None,
) -> list[PlannedDefect]:
    """Choose the defects of a defective image.

    Args:
        rng: the image's generator.
        config: statistics.
        bounds: visible fabric ``(x0, y0, x1, y1)``; anchors fall inside it.
        categories: force these category ids (one defect each, no twins); None draws the
            number and classes from ``config``.

    Returns:
        the planned defects, in painting order.
    """
    ids = np.array(sorted(config.class_weights), int)
    probs = np.array([config.class_weights[i] for i in ids], float)
    count_p = np.asarray(config.defects_per_image, float)
    if categories is None:
        count = int(rng.choice(len(count_p), p=count_p / count_p.sum())) + 1
    else:
        count = len(categories)
    x0, y0, x1, y1 = bounds
    plan: list[PlannedDefect] = []
    while len(plan) < count:
        if categories is None:
            cid = int(ids[rng.choice(len(ids), p=probs / probs.sum())])
        else:
            cid = int(categories[len(plan)])
        raw = _raw_name(rng, cid, config)
        if plan and rng.random() < config.cluster_prob:
            # Next to the previous defect: adjacent and overlapping objects.
            px, py = plan[-1].anchor
            anchor = (
                float(np.clip(px + rng.normal(0, 30), x0, x1 - 1)),
                float(np.clip(py + rng.normal(0, 30), y0, y1 - 1)),
            )
        else:
            anchor = (float(rng.uniform(x0, x1)), float(rng.uniform(y0, y1)))
        seed = int(rng.integers(2**63))
        plan.append(PlannedDefect(cid, raw, seed, anchor))
        twin = RAW_NAME_KINDS[raw].orientation is not None and rng.random() < config.twin_prob
        if categories is None and twin and len(plan) < count:
            gap = int(rng.integers(config.twin_gap_yarns[0], config.twin_gap_yarns[1] + 1))
            plan.append(PlannedDefect(cid, raw, seed, anchor, gap * int(rng.choice([-1, 1]))))
    return plan


def _placement(defect: PlannedDefect, pitch: tuple[float, float], bounds) -> Placement:
    x, y = defect.anchor
    if defect.twin_offset:
        if defect.kind.orientation == "vertical":
            x += defect.twin_offset * pitch[0]
        else:
            y += defect.twin_offset * pitch[1]
    return Placement(x, y, bounds)


def compose(
    rng: np.random.Generator,
    size: tuple[int, int],
    config: SynthConfig,
    plan: Sequence[PlannedDefect],
) -> tuple[np.ndarray, list[Instance]]:
    """Render one image with the planned defects.

    Args:
        rng: the image's generator.
        size: image ``(width, height)``.
        config: statistics and camera settings.
        plan: defects to paint (may be empty).

    Returns:
        image (ndarray[H, W, 3] uint8) RGB, and one :class:`Instance` per defect still visible
        (box: tight pixel-edge xyxy box of its mask; mask: COCO RLE), in painting order.
    """
    w, h = size
    px, py = fabric_padding(size, config.max_rotation_deg)
    fabric_size = (w + 2 * px, h + 2 * py)
    fabric = sample_fabric(
        rng,
        fabric_size[0],
        fabric_size[1],
        config.pitch_range,
        dict(config.weave_weights),
        config.patterned_fraction,
    )
    bounds = (px, py, px + w, py + h)
    # Weave edits first (they change what is rendered), then paint on the rendered canvas.
    masks: dict[int, RegionMask] = {}
    for k, defect in enumerate(plan):
        if defect.kind.stage == "weave":
            place = _placement(defect, fabric.pitch, bounds)
            masks[k] = defect.kind.paint(fabric, np.random.default_rng(defect.seed), place)
    canvas = Canvas(render_region(fabric, 0, 0, *fabric_size), 0, 0, fabric)
    add_hairiness(canvas.image, rng, fabric.hairiness)
    for k, defect in enumerate(plan):
        if defect.kind.stage == "image":
            place = _placement(defect, fabric.pitch, bounds)
            masks[k] = defect.kind.paint(canvas, np.random.default_rng(defect.seed), place)

    # Mostly near-square to the camera (cubing concentrates the skew near zero), so that
    # thread defects stay thin: a 1000 px warp line skewed by 0.2 degrees is 3.5 px wider.
    angle = config.max_rotation_deg * rng.uniform(-1.0, 1.0) ** 3
    matrix = camera_matrix(angle, fabric_size, size)
    image = capture(canvas.image, matrix, size, rng, config)
    instances = []
    seen: set[tuple[tuple[float, float, float, float], str]] = set()
    for k, defect in enumerate(plan):
        region = masks[k]
        if region.mask.size == 0:
            continue
        warped = warp_mask(region, matrix, size)
        box = tight_box(warped) if warped.mask.size else None
        if box is None:
            continue  # the defect fell outside the image
        if (box, defect.raw_name) in seen:
            # Two defects of one kind cropped to the same box (e.g. two threads clipped by a
            # small image) are indistinguishable in a box-labelled file: keep the first.
            continue
        seen.add((box, defect.raw_name))
        instances.append(
            Instance(box, defect.category_id, encode_rle(warped, size), defect.raw_name)
        )
    return image, instances


def render_sample(
    seed: int,
    index: int,
    size: tuple[int, int] = (2446, 1000),
    config: SynthConfig | None = None,
    categories: Sequence[int] | None = None,
) -> tuple[np.ndarray, list[Instance]]:
    """Render image ``index`` of the dataset drawn with ``seed``.

    Args:
        seed, index: identify the image (same pair, same image, bit for bit).
        size: image ``(width, height)``.
        config: statistics; default :class:`SynthConfig`.
        categories: force one defect of each of these category ids (for demos and tests);
            None draws a Tianchi-like image (about 38% defect-free).

    Returns:
        image (ndarray[H, W, 3] uint8) RGB and its instances (empty: defect-free image).
    """
    config = config or SynthConfig()
    rng = image_rng(seed, index)
    px, py = fabric_padding(size, config.max_rotation_deg)
    bounds = (px, py, px + size[0], py + size[1])
    plan = first_plan(rng, config, bounds, categories)
    for _ in range(_ATTEMPTS):
        image, instances = compose(rng, size, config, plan)
        if instances or not plan:
            break
        plan = plan_defects(rng, config, bounds, categories)
    return image, instances


def first_plan(
    rng: np.random.Generator,
    config: SynthConfig,
    bounds: tuple[int, int, int, int],
    categories: Sequence[int] | None = None,
) -> list[PlannedDefect]:
    """The first draws of an image's generator: defect-free or not, then its defects.

    Args:
        rng: the image's fresh generator (:func:`image_rng`).
        config, bounds, categories: as in :func:`plan_defects`; with ``categories`` given the
            image is defective exactly when the sequence is non-empty.

    Returns:
        the planned defects; empty for a defect-free image.
    """
    if categories is None:
        defective = rng.random() >= config.defect_free_fraction
    else:
        unknown = sorted(set(categories) - set(TIANCHI_RAW_TO_ID.values()))
        if unknown:
            raise KeyError(f"unknown category ids {unknown}; known ids are 1..20")
        defective = bool(categories)
    return plan_defects(rng, config, bounds, categories) if defective else []
