"""A general (non-fabric) detection set, made offline, in COCO format with exact masks.

Backgrounds are the photographs scikit-image ships; objects of seven categories (coin, horse,
face cut out of bundled photos; ball, star, ring, tile drawn and shaded) are composited in
crowded, overlapping same-class groups, so that it tests what NMS must do on general scenes:
keep touching neighbours apart without keeping duplicates. ``fabricdet synth-general`` writes
it; ``load_dataset`` reads it like any COCO dataset.
"""

from __future__ import annotations

from fabricdet.data.general.config import DEFAULT_SIZE, GeneralConfig, GeneralSynthError
from fabricdet.data.general.generate import IMAGES_DIR, generate_general, split_names
from fabricdet.data.general.objects import GENERAL_CATEGORIES, make_object
from fabricdet.data.general.scene import render_scene

__all__ = [
    "DEFAULT_SIZE",
    "GENERAL_CATEGORIES",
    "IMAGES_DIR",
    "GeneralConfig",
    "GeneralSynthError",
    "generate_general",
    "make_object",
    "render_scene",
    "split_names",
]
