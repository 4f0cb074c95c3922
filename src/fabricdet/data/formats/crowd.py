"""Crowd (COCO ``iscrowd=1``) regions of an image.

Crowd regions are not objects to learn (one region covers many objects, or an unsure area),
so they stay out of ``ImageRecord.instances``; but COCO evaluation ignores detections that fall
on them, so the metrics need them. :class:`ImageRecord` has no field for them yet, so the COCO
reader builds :class:`CrowdImageRecord` (an ``ImageRecord`` with a ``crowd`` list) and
everything else reads them through :func:`crowd_of`, which works on any ``ImageRecord``.
The Tianchi and YOLO formats cannot express crowd regions; their writers leave them out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fabricdet.data.dataset import ImageRecord, Instance


@dataclass
class CrowdImageRecord(ImageRecord):
    """An :class:`ImageRecord` that also carries crowd regions (kept out of ``instances``).

    Attributes:
        crowd: regions marked ``iscrowd=1``; detections on them are neither right nor wrong.
    """

    crowd: list[Instance] = field(default_factory=list)


def crowd_of(record: ImageRecord) -> list[Instance]:
    """The crowd regions of an image (empty for records without any)."""
    return list(getattr(record, "crowd", ()))
