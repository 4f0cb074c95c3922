"""The Tianchi 2019 fabric-defect categories.

The dataset's annotations use 34 raw Chinese defect names; the competition merged them into
20 categories (id 0 is reserved for "no defect"). :data:`TIANCHI_CATEGORIES` is the explicit
``category_id <-> name`` map every Tianchi-layout dataset carries.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Category:
    """One defect category.

    Attributes:
        id: category id as written in files (Tianchi: 1..20).
        name: English name used in reports and COCO files.
        raw_names: the raw names that map to it (Tianchi: Chinese, as in ``anno_train.json``);
            the first one is the canonical name written by the Tianchi writer.
    """

    id: int
    name: str
    raw_names: tuple[str, ...] = ()


TIANCHI_CATEGORIES: tuple[Category, ...] = (
    Category(1, "hole", ("破洞",)),
    Category(2, "stain", ("水渍", "油渍", "污渍")),
    Category(3, "three-filament", ("三丝",)),
    Category(4, "knot", ("结头",)),
    Category(5, "pattern-skip", ("花板跳",)),
    Category(6, "centipede", ("百脚",)),
    Category(7, "nep", ("毛粒",)),
    Category(8, "thick-warp", ("粗经",)),
    Category(9, "loose-warp", ("松经",)),
    Category(10, "broken-warp", ("断经",)),
    Category(11, "hanging-warp", ("吊经",)),
    Category(12, "thick-weft", ("粗维",)),
    Category(13, "weft-crimp", ("纬缩",)),
    Category(14, "size-spot", ("浆斑",)),
    Category(15, "warping-knot", ("整经结",)),
    Category(16, "float", ("星跳", "跳花")),
    Category(17, "broken-spandex", ("断氨纶",)),
    Category(18, "bar", ("稀密档", "浪纹档", "色差档")),
    Category(19, "abrasion", ("磨痕", "轧痕", "修痕", "烧毛痕")),
    Category(
        20, "crease-weave-fault", ("死皱", "云织", "双纬", "双经", "跳纱", "筘路", "纬纱不良")
    ),
)

#: raw Tianchi defect name -> category id (34 entries).
TIANCHI_RAW_TO_ID: dict[str, int] = {
    raw: cat.id for cat in TIANCHI_CATEGORIES for raw in cat.raw_names
}
