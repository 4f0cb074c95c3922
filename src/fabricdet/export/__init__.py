"""Export of the whole detector (network, candidates, SinkhornNMS) as one ONNX or TorchScript
file, and running exported ONNX files in evaluation and inference.

- :class:`ExportableDetector`: ``images (Tensor[B, 3, H, W]) -> boxes, scores, labels,
  num_detections``, padded to ``max_det`` rows (the contract: :mod:`fabricdet.export.wrapper`);
- :func:`export_model`: write it as ONNX (dynamo exporter, TorchScript-based fallback) or
  TorchScript, with the categories, data and NMS settings inside the file;
- :func:`load_onnx_model`: an exported ``.onnx`` as a
  :class:`~fabricdet.engine.checkpoint.LoadedModel` (``load_model`` dispatches to it), which
  ``fabricdet eval`` / ``detect`` run like ``model.pt``; :func:`load_torchscript`.
"""

from fabricdet.export.exporter import (
    DEFAULT_OPSET,
    EXPORT_FORMATS,
    EXPORTERS,
    ExportReport,
    export_model,
)
from fabricdet.export.runtime import OnnxDetector, load_onnx_model, load_torchscript
from fabricdet.export.wrapper import ExportableDetector, ExportError

__all__ = [
    "DEFAULT_OPSET",
    "EXPORTERS",
    "EXPORT_FORMATS",
    "ExportError",
    "ExportReport",
    "ExportableDetector",
    "OnnxDetector",
    "export_model",
    "load_onnx_model",
    "load_torchscript",
]
