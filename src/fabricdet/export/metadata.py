"""What an exported file carries besides the graph, so eval/detect need nothing else.

The same dict goes into both formats: in ONNX as ``metadata_props`` (one entry per key, the
key prefixed ``fabricdet.`` and the value JSON-encoded: other tools show them as they are), in
TorchScript as the extra file ``fabricdet.json``.

Keys: ``format`` (:data:`EXPORT_FORMAT`), ``version``, ``categories`` (the model's label
order, as in ``model.pt``), ``config`` (the run config; its ``data.max_size`` and
``data.size_divisor`` say how to resize images), ``data`` (those two again, for readers that
do not parse the config), ``nms`` (the SinkhornNMS settings baked into the graph), ``max_det``,
``stride`` (input sides must be multiples of it), ``min_locations`` (the top-k's floor, see
:func:`fabricdet.export.wrapper.min_input_locations`), ``strides``, ``outputs`` (their names,
in order), ``step``, ``source`` (the exported ``model.pt``), ``exporter`` (``dynamo``,
``legacy`` or ``jit.trace``) and, for ONNX, ``opset``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from fabricdet.data.categories import Category
from fabricdet.engine.checkpoint import LoadedModel, categories_from_list, categories_to_list
from fabricdet.engine.config import RunConfig
from fabricdet.engine.config_io import to_dict
from fabricdet.export.wrapper import OUTPUT_NAMES, ExportableDetector, min_input_locations

EXPORT_FORMAT = "fabricdet-export"
EXPORT_VERSION = 1
ONNX_PREFIX = "fabricdet."
TORCHSCRIPT_EXTRA_FILE = "fabricdet.json"
#: the only NMS an exported graph runs.
EXPORTED_NMS = "sinkhorn"


def exported_config(cfg: RunConfig) -> RunConfig:
    """The run config as the exported graph honours it: SinkhornNMS, whatever the run chose
    for evaluation (the graph cannot switch)."""
    model = dataclasses.replace(cfg.model, nms=EXPORTED_NMS)
    return dataclasses.replace(cfg, model=model, eval=dataclasses.replace(cfg.eval, nms=None))


def build_metadata(loaded: LoadedModel, wrapper: ExportableDetector) -> dict[str, Any]:
    """The metadata of an export of ``loaded`` through ``wrapper``."""
    cfg = exported_config(loaded.config)
    nms = wrapper.nms
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "categories": categories_to_list(loaded.categories),
        "config": to_dict(cfg),
        "data": {"max_size": cfg.data.max_size, "size_divisor": cfg.data.size_divisor},
        "nms": {
            "method": EXPORTED_NMS,
            "solver": "dense",
            "iou_threshold": nms.iou_threshold,
            "eps": nms.eps,
            "num_iters": nms.num_iters,
            "spatial_weight": nms.spatial_weight,
            "feature_weight": nms.feature_weight,
            "feature_margin": nms.feature_margin,
            "quality_weight": nms.quality_weight,
            "quality_range": nms.quality_range,
            "dustbin_cost": nms.dustbin_cost,
            "capacity_temperature": nms.capacity_temperature,
            "appearance_capacity": nms.appearance_capacity,
            "overlap": nms.overlap,
            "nwd_scale": nms.nwd_scale,
            "fuse_boxes": nms.fuse_boxes,
            "fuse_power": nms.fuse_power,
            "topk_candidates": wrapper.topk,
            "score_thresh": wrapper.score_thresh,
        },
        "max_det": wrapper.max_det,
        "stride": wrapper.stride,
        "min_locations": min_input_locations(wrapper.detector),
        "strides": [int(s) for s in wrapper.detector.cfg.strides],
        "outputs": list(OUTPUT_NAMES),
        "step": loaded.step,
        "source": str(loaded.path),
    }


def to_onnx_props(meta: Mapping[str, Any]) -> dict[str, str]:
    """``metadata_props`` entries: prefixed keys, JSON values."""
    return {ONNX_PREFIX + k: json.dumps(v, ensure_ascii=False) for k, v in meta.items()}


def from_onnx_props(props: Mapping[str, str]) -> dict[str, Any]:
    """Inverse of :func:`to_onnx_props`; entries without the prefix are ignored."""
    n = len(ONNX_PREFIX)
    return {k[n:]: json.loads(v) for k, v in props.items() if k.startswith(ONNX_PREFIX)}


def categories_of(meta: Mapping[str, Any]) -> tuple[Category, ...]:
    """The label order stored in ``meta``."""
    return categories_from_list(meta["categories"])
