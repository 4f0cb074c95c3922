"""Operators with no model knowledge: boxes, the Sinkhorn solver, and the NMS suite."""

from fabricdet.ops.nms import NMS_METHODS, NMSResult, batched_nms
from fabricdet.ops.sinkhorn import add_dustbin, sinkhorn, sinkhorn_unbalanced
from fabricdet.ops.sinkhorn_nms import SinkhornNMS, SinkhornNMSOutput

__all__ = [
    "NMS_METHODS",
    "NMSResult",
    "SinkhornNMS",
    "SinkhornNMSOutput",
    "add_dustbin",
    "batched_nms",
    "sinkhorn",
    "sinkhorn_unbalanced",
]
