"""Running exported files: an ONNX model behind the eager detector's interface.

:func:`load_onnx_model` returns a :class:`~fabricdet.engine.checkpoint.LoadedModel` whose
``model`` is an :class:`OnnxDetector`: ``model(images)`` with a list of ``Tensor[3, h, w]`` in
[0, 1] (resized, as the engine passes them) gives one dict per image with ``boxes``
(Tensor[K, 4]), ``scores`` (Tensor[K]) and ``labels`` (Tensor[K] int64), like the eager
detector in eval mode. So ``fabricdet eval`` / ``detect`` / ``serve`` run it unchanged; its
``nms_method`` is ``"sinkhorn"`` and cannot be switched (the NMS is inside the graph).

Images are batched only with images of the same size, each padded to a multiple of the stride
with mid-grey: the graph treats its whole input as image, so padding a small image up to a
larger one would let detections start in the padding, which the eager detector rules out.
That makes the results the eager detector's for every image whose sides are stride multiples
(the engine's resize guarantees it when ``data.size_divisor`` is a multiple of the largest
stride). An image too small for the graph's fixed candidate count (fewer than
``min_locations`` locations, e.g. 64x64 with few classes) is padded further; detections that
lie wholly in that padding are dropped and the others clipped to the image, an approximation of
the eager detector, which takes fewer candidates there instead.
"""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from fabricdet.engine.checkpoint import CheckpointError, LoadedModel
from fabricdet.engine.config_io import saved_config
from fabricdet.errors import FabricdetError
from fabricdet.export.metadata import (
    EXPORT_FORMAT,
    EXPORT_VERSION,
    EXPORTED_NMS,
    TORCHSCRIPT_EXTRA_FILE,
    categories_of,
    from_onnx_props,
)
from fabricdet.export.wrapper import OUTPUT_NAMES, PIXEL_MEAN


class OnnxDetector(nn.Module):
    """An exported ONNX detector with the eager detector's eval interface.

    Args:
        session: an ``onnxruntime.InferenceSession`` of a file written by
            :func:`~fabricdet.export.export_model`.
        meta: its metadata (:mod:`fabricdet.export.metadata`).
        path: the file, for messages.
    """

    def __init__(self, session: Any, meta: Mapping[str, Any], path: Path) -> None:
        super().__init__()
        self.session = session
        self.path = path
        self.stride = int(meta["stride"])
        self.strides = tuple(int(s) for s in meta["strides"])
        self.min_locations = int(meta["min_locations"])
        self.max_det = int(meta["max_det"])
        self.input_name = session.get_inputs()[0].name
        self.eval()

    @property
    def nms_method(self) -> str:
        return EXPORTED_NMS

    @nms_method.setter
    def nms_method(self, method: str) -> None:
        if method != EXPORTED_NMS:
            raise FabricdetError(
                f"{self.path}: an exported model runs the NMS built into its graph "
                f"({EXPORTED_NMS}) and cannot switch to {method!r}; drop --nms (or pass "
                f"--nms {EXPORTED_NMS}), or evaluate the model.pt it was exported from to "
                "compare NMS methods"
            )

    def forward(self, images: Sequence[Tensor], targets: object = None) -> list[dict[str, Tensor]]:
        """Detections of each image (``Tensor[3, h, w]`` in [0, 1]), in input pixels."""
        if targets is not None:
            raise FabricdetError(f"{self.path}: an exported model cannot be trained")
        results: list[dict[str, Tensor]] = [{} for _ in images]
        groups: dict[tuple[int, int], list[int]] = {}
        for i, image in enumerate(images):
            groups.setdefault((int(image.shape[-2]), int(image.shape[-1])), []).append(i)
        for (h, w), index in groups.items():
            batch = self._pad([images[i] for i in index], h, w)
            boxes, scores, labels, count = self.session.run(
                list(OUTPUT_NAMES), {self.input_name: batch}
            )
            for row, i in enumerate(index):
                n = int(count[row])
                box = boxes[row, :n]
                # Padding is not image: drop what lies wholly in it, clip the rest.
                inside = (box[:, 0] < w) & (box[:, 1] < h)
                box = np.minimum(np.maximum(box[inside], 0.0), [w, h, w, h])
                device = images[i].device
                results[i] = {
                    "boxes": torch.from_numpy(box.astype(np.float32)).to(device),
                    "scores": torch.from_numpy(scores[row, :n][inside].copy()).to(device),
                    "labels": torch.from_numpy(labels[row, :n][inside].astype(np.int64)).to(device),
                }
        return results

    def padded_size(self, h: int, w: int) -> tuple[int, int]:
        """The input size an ``h x w`` image runs at: sides rounded up to the stride, then
        grown a stride at a time while the graph's candidate count needs more locations."""
        s = self.stride
        ph, pw = -(-h // s) * s, -(-w // s) * s
        while sum((ph // t) * (pw // t) for t in self.strides) < self.min_locations:
            ph, pw = (ph + s, pw) if ph <= pw else (ph, pw + s)
        return ph, pw

    def _pad(self, images: Sequence[Tensor], h: int, w: int) -> np.ndarray:
        """``ndarray[B, 3, H, W]`` float32: the images padded with grey to
        :meth:`padded_size`."""
        ph, pw = self.padded_size(h, w)
        batch = np.full((len(images), 3, ph, pw), PIXEL_MEAN, dtype=np.float32)
        for k, image in enumerate(images):
            batch[k, :, :h, :w] = image.detach().float().cpu().numpy()
        return batch


def _session(path: Path, device: torch.device | str) -> Any:
    import onnxruntime as ort

    providers = ["CPUExecutionProvider"]
    if str(device).startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    try:
        return ort.InferenceSession(str(path), providers=providers)
    except Exception as err:  # onnxruntime raises its own exception types
        raise CheckpointError(
            f"{path}: cannot load it as an ONNX model ({type(err).__name__}: "
            f"{str(err).strip().splitlines()[0][:200]}); it is truncated or not an ONNX "
            "file: export it again with `fabricdet export`"
        ) from None


def check_metadata(meta: Mapping[str, Any], path: Path) -> None:
    """Raise a CheckpointError unless ``meta`` comes from a fabricdet export this version
    reads."""
    if meta.get("format") != EXPORT_FORMAT:
        raise CheckpointError(
            f"{path}: not a fabricdet export (no '{EXPORT_FORMAT}' metadata); export the "
            "model with `fabricdet export MODEL --out FILE`"
        )
    if int(meta.get("version", 0)) > EXPORT_VERSION:
        raise CheckpointError(
            f"{path}: written by a newer fabricdet (export format {meta['version']}); "
            "upgrade fabricdet"
        )


def _loaded(model: nn.Module, meta: Mapping[str, Any], path: Path) -> LoadedModel:
    cfg = saved_config(meta["config"], where=f"{path} (config)")
    return LoadedModel(model, cfg, categories_of(meta), path, int(meta.get("step", 0)))


def load_onnx_model(path: Path, device: torch.device | str = "cpu") -> LoadedModel:
    """An exported ``.onnx`` file as a :class:`LoadedModel` (see the module docstring).

    Args:
        device: ``"cuda..."`` runs it with onnxruntime's CUDA provider when installed.

    Raises:
        CheckpointError: missing file, not ONNX, or not written by ``fabricdet export``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such exported model; check the path")
    session = _session(path, device)
    meta = from_onnx_props(session.get_modelmeta().custom_metadata_map)
    check_metadata(meta, path)
    return _loaded(OnnxDetector(session, meta, path), meta, path)


def load_torchscript(path: Path) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """A TorchScript export and its metadata. The module takes ``images`` (Tensor[B, 3, H, W])
    and returns the padded outputs of :mod:`fabricdet.export.wrapper`.

    Raises:
        CheckpointError: missing or unreadable file, or not written by ``fabricdet export``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such exported model; check the path")
    extra = {TORCHSCRIPT_EXTRA_FILE: ""}
    try:
        with warnings.catch_warnings():
            # "torch.jit.load is deprecated": the format is for consumers that still load
            # TorchScript (libtorch in C++, older runtimes).
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(
                io.BytesIO(path.read_bytes()), map_location="cpu", _extra_files=extra
            )
    except Exception as err:  # torch.jit raises RuntimeError and others for foreign files
        raise CheckpointError(
            f"{path}: cannot load it as TorchScript ({type(err).__name__}); export it again "
            "with `fabricdet export --format torchscript`"
        ) from None
    meta = json.loads(extra[TORCHSCRIPT_EXTRA_FILE] or "{}")
    check_metadata(meta, path)
    return module, meta
