"""ONNX and TorchScript exports run outside PyTorch and agree with the eager detector."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from export_models import biased_detector, tiny_config

from fabricdet.data.dataset import DetectionDataset
from fabricdet.engine.checkpoint import load_model, save_model_file
from fabricdet.export import ExportableDetector, ExportError, export_model, load_torchscript
from fabricdet.export.exporter import compare_outputs


def _images(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def _eager(model_file: Path) -> ExportableDetector:
    return ExportableDetector(load_model(model_file).model)


def _assert_agree(got: list[np.ndarray] | tuple[torch.Tensor, ...], ref: tuple) -> None:
    got_t = [torch.as_tensor(np.asarray(g)) for g in got]
    assert [tuple(g.shape) for g in got_t] == [tuple(r.shape) for r in ref]
    same, _ = compare_outputs(got_t, ref)
    assert same, "kept sets differ"
    for b in range(len(ref[3])):
        n = int(ref[3][b])
        torch.testing.assert_close(got_t[0][b, :n], ref[0][b, :n], rtol=1e-3, atol=1e-3)
    assert int(ref[3].sum()) > 0


@pytest.mark.parametrize(
    "shape", [(1, 3, 128, 256), (2, 3, 128, 256), (1, 3, 192, 96), (2, 3, 192, 96)]
)
def test_onnx_runs_in_onnxruntime_like_eager(
    onnx_file: Path, model_file: Path, shape: tuple[int, ...]
) -> None:
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    images = _images(shape, seed=shape[0] + shape[2])
    got = session.run(None, {"images": images.numpy()})
    with torch.no_grad():
        ref = _eager(model_file)(images)
    _assert_agree(got, ref)


def test_onnx_graph_has_dynamic_axes_and_metadata(onnx_file: Path, model_file: Path) -> None:
    model = onnx.load(str(onnx_file))
    assert model.opset_import[0].version >= 17
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 3, "height", "width"]
    assert [o.name for o in model.graph.output] == ["boxes", "scores", "labels", "num_detections"]
    loaded = load_model(onnx_file)
    source = load_model(model_file)
    assert loaded.categories == source.categories
    assert loaded.config.data == source.config.data
    assert loaded.config.model.nms == "sinkhorn" and loaded.config.eval.nms is None
    props = {p.key: p.value for p in model.metadata_props}
    assert props["fabricdet.exporter"] == '"dynamo"'
    assert '"sinkhorn"' in props["fabricdet.nms"]
    assert loaded.model.nms_method == "sinkhorn"
    # The texture channel's transforms are matrix products: runtimes' DFT op is far slower.
    assert source.model.cfg.texture_input
    assert "DFT" not in {node.op_type for node in model.graph.node}


def test_torchscript_round_trip(model_file: Path, tmp_path: Path) -> None:
    loaded = load_model(model_file)
    report = export_model(loaded, tmp_path / "model.torchscript", format="torchscript")
    assert report.exporter == "jit.trace" and report.opset is None and report.same_detections
    module, meta = load_torchscript(report.path)
    assert meta["categories"][0]["name"] == loaded.categories[0].name
    assert meta["data"] == {"max_size": 128, "size_divisor": 32}
    assert meta["nms"]["method"] == "sinkhorn" and meta["nms"]["eps"] == 0.05
    eager = ExportableDetector(loaded.model)
    for shape in [(1, 3, 64, 256), (2, 3, 160, 96)]:
        images = _images(shape, seed=shape[2])
        with torch.no_grad():
            _assert_agree(module(images), eager(images))


def _saved_model(synth_data: DetectionDataset, tmp_path: Path, override: str) -> Path:
    """``model.pt`` of a biased ``tiny`` detector with one config override."""
    cfg = tiny_config(override)
    model = biased_detector(cfg, synth_data.num_classes)
    path = tmp_path / "model.pt"
    save_model_file(path, model, cfg, synth_data.categories, "fabricdet.models:build_model", 0)
    return path


def test_a_model_with_largest_stride_16_exports(
    synth_data: DetectionDataset, tmp_path: Path
) -> None:
    # Its inputs are multiples of 16, not of 32: the texture channel's transforms must not
    # take a split that only sides of 32k allow. The exporter runs the file at a width that
    # is an odd multiple of 16 beside eager PyTorch and reports whether they agree.
    path = _saved_model(synth_data, tmp_path, "model.strides=[8,16]")
    report = export_model(load_model(path), tmp_path / "m.onnx", exporter="legacy")
    assert report.check_shape[3] // 16 % 2 == 1  # the width
    assert report.same_detections and report.max_box_error < 1e-3


def test_a_model_with_the_box_quality_head_exports_its_rescoring(
    synth_data: DetectionDataset, tmp_path: Path
) -> None:
    # The rescoring (RoI pooling over each candidate) is in the graph: without it the file's
    # detections would be the dense scores' and differ from eager PyTorch's.
    path = _saved_model(synth_data, tmp_path, "model.box_quality=true")
    for name, kwargs in [("m.onnx", {"exporter": "legacy"}), ("m.pt", {"format": "torchscript"})]:
        report = export_model(load_model(path), tmp_path / name, **kwargs)
        assert report.same_detections and report.max_box_error < 1e-3


def test_export_refuses_bad_requests(model_file: Path, tmp_path: Path) -> None:
    loaded = load_model(model_file)
    with pytest.raises(ExportError, match="unknown export format 'tflite'"):
        export_model(loaded, tmp_path / "m.tflite", format="tflite")
    with pytest.raises(ExportError, match=r"must end in \.onnx"):
        export_model(loaded, tmp_path / "model.bin")
    with pytest.raises(ExportError, match="opset 13 is too old"):
        export_model(loaded, tmp_path / "m.onnx", opset=13)
    with pytest.raises(ExportError, match="unknown exporter"):
        export_model(loaded, tmp_path / "m.onnx", exporter="tvm")
    assert not list(tmp_path.iterdir())  # nothing written


def test_onnx_detector_pads_images_too_small_for_the_graph(onnx_file: Path) -> None:
    detector = load_model(onnx_file).model
    # 20 classes, top-1000 candidates: the graph needs 50 locations; 32x32 gives 21.
    assert detector.padded_size(32, 32) == (64, 64)
    assert detector.padded_size(128, 256) == (128, 256)  # stride multiples run as they are
    out = detector([_images((3, 32, 32), seed=1), _images((3, 40, 70), seed=2)])
    for result, (h, w) in zip(out, [(32, 32), (40, 70)], strict=True):
        boxes = result["boxes"]
        assert len(boxes) == len(result["scores"]) == len(result["labels"]) > 0
        assert bool((boxes[:, 0::2] <= w).all() and (boxes[:, 1::2] <= h).all())
        assert bool((boxes >= 0).all())
