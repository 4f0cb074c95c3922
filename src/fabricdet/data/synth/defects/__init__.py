"""Defect painters and the catalogue mapping every raw Tianchi defect name to one of them.

Painters live in three modules by what they change: :mod:`.weave_edits` (which yarn lies on
top, yarn shade/thickness, missing yarns), :mod:`.yarns` (extra yarn material: thick yarns,
filaments, knots, neps) and :mod:`.surface` (stains, marks, creases, bars).
"""

from __future__ import annotations

from functools import partial

from fabricdet.data.synth.defects import surface, weave_edits, yarns
from fabricdet.data.synth.defects.base import Canvas, DefectKind, Placement

__all__ = ["RAW_NAME_KINDS", "Canvas", "DefectKind", "Placement"]

_V, _H = "vertical", "horizontal"


def _kind(name: str, stage, paint, orientation=None) -> DefectKind:
    return DefectKind(name, stage, paint, orientation)


#: raw Tianchi defect name -> how it is rendered (all 34 names, all 20 categories).
RAW_NAME_KINDS: dict[str, DefectKind] = {
    "破洞": _kind("hole", "weave", weave_edits.hole),
    "水渍": _kind("water_stain", "image", partial(surface.stain, kind="water")),
    "油渍": _kind("oil_stain", "image", partial(surface.stain, kind="oil")),
    "污渍": _kind("dirt_stain", "image", partial(surface.stain, kind="dirt")),
    "三丝": _kind("three_filament", "image", yarns.three_filament),
    "结头": _kind("knot", "image", yarns.knot),
    "花板跳": _kind("pattern_skip", "weave", weave_edits.pattern_skip),
    "百脚": _kind("centipede", "weave", weave_edits.centipede, _H),
    "毛粒": _kind("nep", "image", yarns.nep),
    "粗经": _kind("thick_warp", "image", yarns.thick_warp, _V),
    "松经": _kind("loose_warp", "weave", weave_edits.loose_warp, _V),
    "断经": _kind("broken_warp", "weave", weave_edits.broken_warp, _V),
    "吊经": _kind("hanging_warp", "weave", weave_edits.hanging_warp, _V),
    "粗维": _kind("thick_weft", "image", yarns.thick_weft, _H),
    "纬缩": _kind("weft_crimp", "image", yarns.weft_crimp),
    "浆斑": _kind("size_spot", "image", surface.size_spot),
    "整经结": _kind("warping_knot", "image", yarns.warping_knot),
    "星跳": _kind("star_float", "weave", weave_edits.star_float),
    "跳花": _kind("flower_float", "weave", weave_edits.flower_float),
    "断氨纶": _kind("broken_spandex", "weave", weave_edits.broken_spandex, _H),
    "稀密档": _kind("density_bar", "weave", weave_edits.density_bar),
    "浪纹档": _kind("wavy_bar", "image", surface.wavy_bar),
    "色差档": _kind("shade_bar", "image", surface.shade_bar),
    "磨痕": _kind("rub_mark", "image", partial(surface.abrasion, kind="磨痕")),
    "轧痕": _kind("roller_mark", "image", partial(surface.abrasion, kind="轧痕")),
    "修痕": _kind("mend_mark", "image", partial(surface.abrasion, kind="修痕")),
    "烧毛痕": _kind("singe_mark", "image", partial(surface.abrasion, kind="烧毛痕")),
    "死皱": _kind("crease", "image", surface.crease),
    "云织": _kind("cloudy", "image", surface.cloudy),
    "双纬": _kind("double_weft", "weave", weave_edits.double_weft, _H),
    "双经": _kind("double_warp", "weave", weave_edits.double_warp, _V),
    "跳纱": _kind("long_float", "weave", weave_edits.long_float),
    "筘路": _kind("reed_mark", "weave", weave_edits.reed_mark, _V),
    "纬纱不良": _kind("bad_weft", "weave", weave_edits.bad_weft, _H),
}
