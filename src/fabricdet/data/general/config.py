"""Settings of the general (non-fabric) detection set and its error type."""

from __future__ import annotations

from dataclasses import dataclass

from fabricdet.errors import FabricdetError

#: default image size (width, height) of :func:`~fabricdet.data.general.generate_general`.
DEFAULT_SIZE: tuple[int, int] = (320, 320)


class GeneralSynthError(FabricdetError, ValueError):
    """A bad argument to the general-detection generator (size, count, output folder)."""


@dataclass(frozen=True)
class GeneralConfig:
    """How crowded, how varied and how noisy the scenes are.

    Ranges are inclusive ``(low, high)``. Sizes are fractions of the image's short side.

    Attributes:
        groups: number of same-class groups per image (the crowded case: members touch and
            overlap, which is where NMS has to tell neighbours from duplicates).
        group_members: objects per group.
        spacing: distance between a new group member and the member it is placed next to,
            as a fraction of their size (< 1: they overlap).
        singles: scattered objects of random classes per image.
        object_size: long side of an object, log-uniform in this range.
        member_jitter: relative size change between members of one group.
        min_visible: an object less visible than this (visible mask / whole mask, truncation
            by the image border included) is not annotated: it is hidden, not an object to find.
        min_area: an object with fewer visible pixels is not annotated.
        empty_fraction: share of images with no object (background only).
        noise_sigma: sensor noise, in 8-bit grey levels, drawn in this range per image.
        jpeg_quality: JPEG quality drawn in this range per image.
    """

    groups: tuple[int, int] = (1, 3)
    group_members: tuple[int, int] = (2, 6)
    spacing: tuple[float, float] = (0.3, 0.85)
    singles: tuple[int, int] = (0, 4)
    object_size: tuple[float, float] = (0.08, 0.4)
    member_jitter: float = 0.15
    min_visible: float = 0.3
    min_area: int = 24
    empty_fraction: float = 0.03
    noise_sigma: tuple[float, float] = (0.0, 4.0)
    jpeg_quality: tuple[int, int] = (85, 95)
