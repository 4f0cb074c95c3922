"""Writing a loaded model as one ONNX or TorchScript file, post-processing and NMS included.

ONNX goes through ``torch.onnx.export(dynamo=True)`` (torch.export, then ONNX Script): it
takes symbolic batch, height and width and proves the graph valid for all of them, instead of
replaying one trace. Its single gap here is ``aten.sort.stable`` (SinkhornNMS orders its
slots with a stable sort), translated below to ONNX ``TopK``, which breaks ties by the lower
index: exactly a stable sort. If the dynamo exporter fails on a model all the same, the
TorchScript-based exporter (``dynamo=False``, a trace; the same sort translation) is the
fallback. TorchScript files are a ``torch.jit.trace`` of the same wrapper. The image size is
read as a tensor while tracing (see :mod:`fabricdet.export.wrapper`), so both traces stay
valid at other sizes; every export is checked at a second batch size and image size.

Files are written atomically: serialised in memory, checked, then written beside the target
and renamed over it, so a failed export never leaves a half-written or unchecked file.
"""

from __future__ import annotations

import io
import json
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fabricdet.data.formats.atomic import atomic_write
from fabricdet.engine.checkpoint import LoadedModel
from fabricdet.export.metadata import TORCHSCRIPT_EXTRA_FILE, build_metadata, to_onnx_props
from fabricdet.export.wrapper import OUTPUT_NAMES, ExportableDetector, ExportError

EXPORT_FORMATS: tuple[str, ...] = ("onnx", "torchscript")
EXPORTERS: tuple[str, ...] = ("auto", "dynamo", "legacy")
DEFAULT_OPSET = 18
MIN_OPSET = 17
INPUT_NAME = "images"


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_model` wrote and how well the file agrees with the eager model.

    Attributes:
        path: the file written.
        format: ``"onnx"`` or ``"torchscript"``.
        exporter: ``"dynamo"`` or ``"legacy"`` (ONNX), ``"jit.trace"`` (TorchScript).
        opset: ONNX opset (``None`` for TorchScript).
        example_shape: input shape the graph was exported (traced) with.
        check_shape: another input shape the written graph was run at, beside the eager model.
        same_detections: the check kept the same count and labels per image as the eager
            wrapper (scores within 1e-4).
        max_box_error: largest box coordinate difference of that check, in pixels.
        fallback_reason: why the dynamo exporter was not used (``None`` when it was).
        seconds: time spent exporting and checking.
    """

    path: Path
    format: str
    exporter: str
    opset: int | None
    example_shape: tuple[int, ...]
    check_shape: tuple[int, ...]
    same_detections: bool
    max_box_error: float
    fallback_reason: str | None
    seconds: float


def example_shape(wrapper: ExportableDetector, batch: int = 2) -> tuple[int, int, int, int]:
    """An input shape ``[batch, 3, H, 2 H]`` with enough locations for the static top-k.

    H is a multiple of the largest stride, at least 2 of them, and batch and sides differ from
    1 so that torch.export does not specialise a dimension to its example value.
    """
    strides = [int(s) for s in wrapper.detector.cfg.strides]
    step = wrapper.stride
    need = -(-wrapper.topk // max(wrapper.detector.num_classes, 1))
    k = 2
    while sum((k * step // s) * (2 * k * step // s) for s in strides) < need:
        k += 1
    return (batch, 3, k * step, 2 * k * step)


def _sort_stable_onnx(
    self: Any, stable: bool | None = None, dim: int = -1, descending: bool = False
) -> tuple[Any, Any]:
    """``aten.sort.stable`` for the dynamo exporter: a full-length ONNX TopK (ties go to the
    lower index, which is what ``stable=True`` asks for)."""
    from onnxscript import opset18 as op

    size = op.Reshape(op.Gather(op.Shape(self), dim, axis=0), op.Constant(value_ints=[1]))
    return op.TopK(self, size, axis=dim, largest=descending, sorted=True)


def _sort_symbolic_legacy(g: Any, self: Any, *args: Any) -> Any:
    """``aten::sort`` (default and ``stable`` overloads) for the TorchScript-based exporter,
    whose own symbolic reads the ``stable`` overload's arguments as ``out=`` and gives up."""
    from torch.onnx import symbolic_helper

    # sort(self, dim, descending) or sort.stable(self, stable, dim, descending)
    dim_arg, desc_arg = (args[1], args[2]) if len(args) == 3 else (args[0], args[1])
    dim = symbolic_helper._get_const(dim_arg, "i", "dim")
    descending = symbolic_helper._get_const(desc_arg, "b", "descending")
    index = g.op("Constant", value_t=torch.tensor([dim], dtype=torch.long))
    size = g.op("Gather", g.op("Shape", self), index, axis_i=0)
    return g.op("TopK", self, size, axis_i=dim, largest_i=int(descending), sorted_i=1, outputs=2)


def _onnx_dynamo(wrapper: ExportableDetector, example: Tensor, opset: int) -> bytes:
    program = torch.onnx.export(
        wrapper,
        (example,),
        dynamo=True,
        input_names=[INPUT_NAME],
        output_names=list(OUTPUT_NAMES),
        dynamic_shapes={INPUT_NAME: {0: "batch", 2: "height", 3: "width"}},
        opset_version=opset,
        custom_translation_table={torch.ops.aten.sort.stable: _sort_stable_onnx},
        optimize=True,
        verbose=False,
    )
    if program is None:  # pragma: no cover - only when f= is given
        raise ExportError("torch.onnx.export returned no program")
    return bytes(program.model_proto.SerializeToString())


def _onnx_legacy(wrapper: ExportableDetector, example: Tensor, opset: int) -> bytes:
    buffer = io.BytesIO()
    torch.onnx.register_custom_op_symbolic("aten::sort", _sort_symbolic_legacy, opset)
    try:
        with warnings.catch_warnings():
            # Trace warnings about Python values are expected: the sizes the graph must keep
            # symbolic are read as tensors, and the check below runs it at other sizes.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper,
                (example,),
                buffer,
                dynamo=False,
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                dynamic_axes={
                    INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
                    **{name: {0: "batch"} for name in OUTPUT_NAMES},
                },
                opset_version=opset,
            )
    finally:
        torch.onnx.unregister_custom_op_symbolic("aten::sort", opset)
    return buffer.getvalue()


def _with_metadata(model_bytes: bytes, meta: dict[str, Any]) -> bytes:
    import onnx

    proto = onnx.load_from_string(model_bytes)
    del proto.metadata_props[:]
    for key, value in to_onnx_props(meta).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = (
        "fabricdet detector with SinkhornNMS: images float32 [B, 3, H, W] RGB in [0, 1], H and "
        f"W multiples of {meta['stride']} -> boxes [B, {meta['max_det']}, 4] xyxy, scores, "
        "labels (int64), num_detections [B] (rows past it are zeros)"
    )
    return bytes(proto.SerializeToString())


def _run_onnx(model_bytes: bytes) -> Callable[[Tensor], tuple[Tensor, ...]]:
    import onnxruntime as ort

    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])

    def run(images: Tensor) -> tuple[Tensor, ...]:
        outs = session.run(list(OUTPUT_NAMES), {INPUT_NAME: images.numpy()})
        return tuple(torch.from_numpy(np.asarray(o)) for o in outs)

    return run


def _run_torchscript(data: bytes) -> Callable[[Tensor], tuple[Tensor, ...]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.load is deprecated"
        module = torch.jit.load(io.BytesIO(data), map_location="cpu")

    def run(images: Tensor) -> tuple[Tensor, ...]:
        with torch.no_grad():
            return tuple(module(images))

    return run


def compare_outputs(
    got: Sequence[Tensor], ref: Sequence[Tensor], score_tol: float = 1e-4
) -> tuple[bool, float]:
    """Whether two padded outputs keep the same detections, and the largest box difference.

    Same detections: equal counts, equal labels over each count, scores within ``score_tol``.

    Returns:
        (same, max |box difference| over the common kept rows, in pixels).
    """
    boxes, scores, labels, count = got
    r_boxes, r_scores, r_labels, r_count = ref
    same = bool(torch.equal(count.long(), r_count.long()))
    err = 0.0
    for b in range(len(r_count)):
        n = int(min(count[b], r_count[b]))
        same = same and bool(torch.equal(labels[b, :n].long(), r_labels[b, :n].long()))
        if n:
            same = same and float((scores[b, :n] - r_scores[b, :n]).abs().max()) <= score_tol
            err = max(err, float((boxes[b, :n] - r_boxes[b, :n]).abs().max()))
    return same, err


def _check(
    run: Callable[[Tensor], tuple[Tensor, ...]],
    wrapper: ExportableDetector,
    shape: tuple[int, ...],
) -> tuple[bool, float]:
    """Run the serialised graph at ``shape`` beside the eager wrapper."""
    images = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    try:
        got = run(images)
    except Exception as err:  # onnxruntime and TorchScript raise their own error types
        raise ExportError(
            f"the exported graph fails at input shape {list(shape)} "
            f"({type(err).__name__}: {str(err).splitlines()[0][:300]}); report it with the model"
        ) from None
    with torch.no_grad():
        ref = wrapper(images)
    expected = [tuple(t.shape) for t in ref]
    if [tuple(t.shape) for t in got] != expected:
        raise ExportError(
            f"the exported graph gives outputs of shapes {[tuple(t.shape) for t in got]} at "
            f"input shape {list(shape)}, expected {expected}: its dynamic axes do not work"
        )
    return compare_outputs(got, ref)


def export_model(
    loaded: LoadedModel,
    path: Path,
    format: str = "onnx",
    *,
    max_det: int | None = None,
    opset: int = DEFAULT_OPSET,
    exporter: str = "auto",
) -> ExportReport:
    """Export ``loaded`` (a :class:`~fabricdet.models.FabricDetector`) as one file, the
    contract of :mod:`fabricdet.export.wrapper`, with the metadata of
    :mod:`fabricdet.export.metadata`. The model is moved to the CPU.

    Args:
        path: the file to write (ONNX files must end in ``.onnx``: that is how
            ``fabricdet eval`` / ``detect`` recognise them).
        format: ``"onnx"`` or ``"torchscript"``.
        max_det: detections per image (default: the model's ``detections_per_img``).
        opset: ONNX opset, at least 17.
        exporter: ONNX only: ``"dynamo"``, ``"legacy"`` (TorchScript-based) or ``"auto"``
            (dynamo, falling back to legacy if it fails).

    Raises:
        ExportError: unknown format or exporter, bad opset or path, not a FabricDetector, or
            an exported graph that does not run at another input size.
    """
    start = time.perf_counter()
    path = Path(path)
    if format not in EXPORT_FORMATS:
        raise ExportError(f"unknown export format {format!r}; choose one of {EXPORT_FORMATS}")
    if exporter not in EXPORTERS:
        raise ExportError(f"unknown exporter {exporter!r}; choose one of {EXPORTERS}")
    if format == "onnx" and path.suffix.lower() != ".onnx":
        raise ExportError(f"{path}: an ONNX file must end in .onnx (eval/detect go by it)")
    if format == "onnx" and opset < MIN_OPSET:
        raise ExportError(f"opset {opset} is too old: SinkhornNMS needs opset {MIN_OPSET} or newer")
    if path.exists() and path.resolve() == Path(loaded.path).resolve():
        raise ExportError(f"{path}: refusing to overwrite the model being exported")
    if path.is_dir():
        raise ExportError(f"{path}: is a folder; give the file to write")
    wrapper = ExportableDetector(loaded.model.to("cpu").float(), max_det).eval()
    shape = example_shape(wrapper)
    example = torch.rand(shape, generator=torch.Generator().manual_seed(1))
    # A different batch size and different sides: the file must not be tied to the example.
    check_shape = (1, 3, shape[2] + wrapper.stride, shape[3] - wrapper.stride)
    meta = build_metadata(loaded, wrapper)
    fallback: str | None = None
    used: str
    if format == "onnx":
        data, used, fallback = _export_onnx(wrapper, example, opset, exporter)
        meta.update(exporter=used, opset=opset)
        data = _with_metadata(data, meta)
        same, err = _check(_run_onnx(data), wrapper, check_shape)
    else:
        used = "jit.trace"
        meta.update(exporter=used)
        data = _export_torchscript(wrapper, example, meta)
        same, err = _check(_run_torchscript(data), wrapper, check_shape)
    atomic_write(path, lambda f: f.write(data))
    return ExportReport(
        path=path,
        format=format,
        exporter=used,
        opset=opset if format == "onnx" else None,
        example_shape=shape,
        check_shape=check_shape,
        same_detections=same,
        max_box_error=err,
        fallback_reason=fallback,
        seconds=time.perf_counter() - start,
    )


def _export_onnx(
    wrapper: ExportableDetector, example: Tensor, opset: int, exporter: str
) -> tuple[bytes, str, str | None]:
    """The ONNX bytes, the exporter that made them and why dynamo was not used."""
    if exporter == "legacy":
        return _onnx_legacy(wrapper, example, opset), "legacy", "asked for the legacy exporter"
    try:
        return _onnx_dynamo(wrapper, example, opset), "dynamo", None
    except Exception as err:  # the exporter raises many types; all mean "try the fallback"
        reason = f"{type(err).__name__}: {str(err).strip().splitlines()[0][:300]}"
        if exporter == "dynamo":
            raise ExportError(
                f"the dynamo ONNX exporter failed ({reason}); retry with exporter='legacy' "
                "(--exporter legacy)"
            ) from err
    try:
        return _onnx_legacy(wrapper, example, opset), "legacy", reason
    except Exception as err:
        raise ExportError(
            f"both ONNX exporters failed: dynamo ({reason}), legacy ({type(err).__name__}: "
            f"{str(err).strip().splitlines()[0][:300]}); try --format torchscript"
        ) from err


def _export_torchscript(
    wrapper: ExportableDetector, example: Tensor, meta: dict[str, Any]
) -> bytes:
    with warnings.catch_warnings():
        # Trace warnings about Python values and the deprecation notice are expected; the
        # check at another input shape is what tells whether the trace generalises.
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(wrapper, (example,), check_trace=False)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.save is deprecated"
        torch.jit.save(traced, buffer, _extra_files={TORCHSCRIPT_EXTRA_FILE: json.dumps(meta)})
    return buffer.getvalue()
