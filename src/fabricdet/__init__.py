"""fabricdet: fabric defect detection with differentiable Sinkhorn NMS.

The public entry points are re-exported lazily so that ``import fabricdet`` stays cheap
(the CLI imports torch only for the commands that need it).
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("fabricdet")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

_LAZY = {
    "SinkhornNMS": "fabricdet.ops.sinkhorn_nms",
    "batched_nms": "fabricdet.ops.nms",
    "sinkhorn": "fabricdet.ops.sinkhorn",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fabricdet' has no attribute {name!r}")
