"""Statistics of the synthetic dataset: one frozen dataclass with Tianchi-like defaults."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from fabricdet.data.categories import TIANCHI_CATEGORIES, TIANCHI_RAW_TO_ID
from fabricdet.data.synth.weave import WEAVE_PATTERNS
from fabricdet.errors import FabricdetError


class SynthError(FabricdetError, ValueError):
    """A synthetic-data option or output folder the user must fix."""


#: Relative frequency of each Tianchi category id among defect instances. A long tail in the
#: spirit of Tianchi round 1 (knots, filaments, neps and holes common; warping knots, creases
#: and crimps rare; head/tail ratio about 20), not its exact counts.
DEFAULT_CLASS_WEIGHTS: dict[int, float] = {
    4: 0.170,  # knot
    3: 0.110,  # three-filament
    7: 0.090,  # nep
    2: 0.080,  # stain
    1: 0.070,  # hole
    16: 0.060,  # float
    6: 0.055,  # centipede
    9: 0.050,  # loose-warp
    11: 0.045,  # hanging-warp
    8: 0.040,  # thick-warp
    12: 0.035,  # thick-weft
    10: 0.030,  # broken-warp
    5: 0.030,  # pattern-skip
    17: 0.025,  # broken-spandex
    19: 0.022,  # abrasion
    18: 0.020,  # bar
    14: 0.016,  # size-spot
    13: 0.012,  # weft-crimp
    20: 0.010,  # crease-weave-fault
    15: 0.008,  # warping-knot
}

#: Relative frequency of each raw name within its category (missing names: weight 1).
DEFAULT_RAW_NAME_WEIGHTS: dict[str, float] = {
    "水渍": 0.25,
    "油渍": 0.30,
    "污渍": 0.45,
    "星跳": 0.55,
    "跳花": 0.45,
    "稀密档": 0.4,
    "浪纹档": 0.3,
    "色差档": 0.3,
    "磨痕": 0.4,
    "轧痕": 0.2,
    "修痕": 0.15,
    "烧毛痕": 0.25,
    "死皱": 0.25,
    "云织": 0.1,
    "双纬": 0.2,
    "双经": 0.1,
    "跳纱": 0.15,
    "筘路": 0.1,
    "纬纱不良": 0.1,
}

#: Relative frequency of the weaves of plain-coloured fabrics.
DEFAULT_WEAVE_WEIGHTS: dict[str, float] = {
    "plain": 0.35,
    "twill_2_1": 0.12,
    "twill_1_2": 0.08,
    "twill_3_1": 0.1,
    "twill_2_2": 0.12,
    "satin_5": 0.1,
    "sateen_5": 0.06,
    "basket_2_2": 0.07,
}


@dataclass(frozen=True)
class SynthConfig:
    """How synthetic images are drawn.

    Attributes:
        defect_free_fraction: share of images with no defect (Tianchi: 3663/9576 = 0.38).
        class_weights: category id -> relative frequency of defect instances.
        raw_name_weights: raw Tianchi name -> relative frequency within its category.
        defects_per_image: probabilities of 1, 2, ... defects on a defective image.
        twin_prob: probability that a thread defect (broken, thick, loose... yarn) comes with a
            parallel twin of the same class a few yarns away: two thin objects side by side,
            which a duplicate removal that compares thin boxes loosely (by centre distance, or
            at a low IoU threshold) merges; their boxes rarely overlap by IoU 0.5.
        twin_gap_yarns: ``(min, max)`` distance between twins, in yarns.
        cluster_prob: probability that a defect is placed next to the previous one.
        pitch_range: ``(min, max)`` mean yarn pitch in pixels.
        weave_weights: weave name -> relative frequency for plain-coloured fabrics.
        patterned_fraction: share of yarn-dyed check/stripe and jacquard fabrics.
        max_rotation_deg: fabric skew, uniform in ``[-max, max]`` degrees.
        blur_sigma: ``(min, max)`` optical blur, pixels.
        noise_sigma: ``(min, max)`` sensor noise, 8-bit grey levels.
        jpeg_quality: ``(min, max)`` JPEG quality.
        illumination: strength of the lamp fall-off across the width (0 = flat).
    """

    defect_free_fraction: float = 0.38
    class_weights: Mapping[int, float] = field(default_factory=lambda: dict(DEFAULT_CLASS_WEIGHTS))
    raw_name_weights: Mapping[str, float] = field(
        default_factory=lambda: dict(DEFAULT_RAW_NAME_WEIGHTS)
    )
    defects_per_image: tuple[float, ...] = (0.52, 0.24, 0.13, 0.07, 0.04)
    twin_prob: float = 0.35
    twin_gap_yarns: tuple[int, int] = (1, 4)
    cluster_prob: float = 0.25
    pitch_range: tuple[float, float] = (4.0, 10.0)
    weave_weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEAVE_WEIGHTS))
    patterned_fraction: float = 0.15
    max_rotation_deg: float = 1.5
    blur_sigma: tuple[float, float] = (0.4, 0.9)
    noise_sigma: tuple[float, float] = (1.0, 3.5)
    jpeg_quality: tuple[int, int] = (85, 95)
    illumination: float = 0.15

    def validate(self) -> None:
        """Raise :class:`SynthError` naming the first bad field."""

        def bad(name: str, why: str) -> SynthError:
            return SynthError(f"synthetic config field {name!r}: {why}")

        if not 0.0 <= self.defect_free_fraction <= 1.0:
            raise bad("defect_free_fraction", f"{self.defect_free_fraction} is not in [0, 1]")
        known = {c.id for c in TIANCHI_CATEGORIES}
        unknown = sorted(set(self.class_weights) - known)
        if unknown:
            raise bad("class_weights", f"unknown category ids {unknown}; known ids are 1..20")
        if any(w < 0 for w in self.class_weights.values()) or not any(
            w > 0 for w in self.class_weights.values()
        ):
            raise bad("class_weights", "weights must be >= 0 with at least one > 0")
        unknown_raw = sorted(set(self.raw_name_weights) - set(TIANCHI_RAW_TO_ID))
        if unknown_raw:
            raise bad("raw_name_weights", f"unknown raw names {unknown_raw}")
        if not self.defects_per_image or min(self.defects_per_image) < 0:
            raise bad("defects_per_image", "needs probabilities >= 0 for 1, 2, ... defects")
        if sum(self.defects_per_image) <= 0:
            raise bad("defects_per_image", "probabilities sum to zero")
        for name in ("twin_prob", "cluster_prob", "patterned_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise bad(name, f"{getattr(self, name)} is not in [0, 1]")
        lo, hi = self.pitch_range
        if not 2.0 <= lo <= hi:
            raise bad("pitch_range", f"{self.pitch_range}: need 2 <= min <= max pixels")
        unknown_weaves = sorted(set(self.weave_weights) - set(WEAVE_PATTERNS))
        if unknown_weaves:
            raise bad("weave_weights", f"unknown weaves {unknown_weaves}; {sorted(WEAVE_PATTERNS)}")
        if not any(w > 0 for w in self.weave_weights.values()):
            raise bad("weave_weights", "at least one weave needs a weight > 0")
        if not 0 <= self.jpeg_quality[0] <= self.jpeg_quality[1] <= 100:
            raise bad("jpeg_quality", f"{self.jpeg_quality}: need 0 <= min <= max <= 100")
        if not 0.0 <= self.max_rotation_deg <= 10.0:
            raise bad("max_rotation_deg", f"{self.max_rotation_deg} is not in [0, 10]")
