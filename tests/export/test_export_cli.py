"""``fabricdet export``, and ``fabricdet eval`` / ``detect`` on an exported ONNX file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from fabricdet.cli import main
from fabricdet.data.dataset import DetectionDataset
from fabricdet.engine.checkpoint import load_model
from fabricdet.export import ExportableDetector
from fabricdet.export.exporter import compare_outputs


def _eval_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    capsys.readouterr()
    assert main(["eval", *args, "--json", "--split", "all", "--quiet"]) == 0
    return json.loads(capsys.readouterr().out)


def test_eval_onnx_gives_the_eager_metrics(
    onnx_file: Path,
    model_file: Path,
    synth_data: DetectionDataset,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = str(synth_data.root)
    onnx_dir, eager_dir = tmp_path / "onnx", tmp_path / "eager"
    got = _eval_json(capsys, str(onnx_file), data, "--out", str(onnx_dir))
    ref = _eval_json(capsys, str(model_file), data, "--nms", "sinkhorn", "--out", str(eager_dir))
    assert got["nms"] == "sinkhorn" and got["model"] == str(onnx_file)
    for key in ("coco_ap", "coco_ap50", "coco_ap75", "tianchi_score", "acc"):
        assert got[key] == pytest.approx(ref[key], abs=1e-6), key
    # The detections themselves, not only their summary (an untrained model's AP is small).
    dets = json.loads((onnx_dir / "coco_results_all_sinkhorn.json").read_text())
    ref_dets = json.loads((eager_dir / "coco_results_all_sinkhorn.json").read_text())
    assert len(dets) == len(ref_dets) > 0
    key = lambda d: (d["image_id"], -d["score"])  # noqa: E731
    dets, ref_dets = sorted(dets, key=key), sorted(ref_dets, key=key)
    assert [d["category_id"] for d in dets] == [d["category_id"] for d in ref_dets]
    np.testing.assert_allclose(
        [d["bbox"] for d in dets], [d["bbox"] for d in ref_dets], rtol=1e-3, atol=1e-3
    )


def test_detect_onnx_writes_the_eager_detections(
    onnx_file: Path,
    model_file: Path,
    synth_data: DetectionDataset,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    images = [str(synth_data.root / rec.file_name) for rec in synth_data.images[:3]]
    common = ["--score-threshold", "0.3", "--quiet"]
    assert main(["detect", str(onnx_file), *images, "--out", str(tmp_path / "a"), *common]) == 0
    assert "detections in 3 images" in capsys.readouterr().out
    got = json.loads((tmp_path / "a" / "detections.json").read_text())
    assert main(["detect", str(model_file), *images, "--out", str(tmp_path / "b"), *common]) == 0
    ref = json.loads((tmp_path / "b" / "detections.json").read_text())
    assert [r["file"] for r in got] == images
    assert all((tmp_path / "a" / r["annotated"]).is_file() for r in got)
    for g, r in zip(got, ref, strict=True):
        assert g["category_names"] == r["category_names"] and g["labels"] == r["labels"]
        assert len(g["boxes"]) > 0
        np.testing.assert_allclose(g["boxes"], r["boxes"], rtol=1e-3, atol=1e-3)


def test_export_command_falls_back_to_the_legacy_exporter(
    model_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def fail(*args: object) -> bytes:
        raise RuntimeError("simulated dynamo failure\nsecond line")

    monkeypatch.setattr("fabricdet.export.exporter._onnx_dynamo", fail)
    out = tmp_path / "m.onnx"
    args = ["export", str(model_file), "--out", str(out), "--max-det", "30", "--opset", "17"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out} (onnx, legacy, opset 17)" in printed
    assert "not used: RuntimeError: simulated dynamo failure\n" in printed
    assert "checked at input" in printed and "same detections as the model" in printed
    assert main([*args, "--exporter", "dynamo"]) == 2  # no fallback when dynamo is asked for
    assert "retry with exporter='legacy'" in capsys.readouterr().err
    # The fallback exporter's file has dynamic axes too (the texture channel's transforms
    # included): another batch size and image size.
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    images = torch.rand((2, 3, 96, 224), generator=torch.Generator().manual_seed(5))
    got = [torch.from_numpy(o) for o in session.run(None, {"images": images.numpy()})]
    with torch.no_grad():
        ref = ExportableDetector(load_model(model_file).model, max_det=30)(images)
    assert got[0].shape == (2, 30, 4)
    assert compare_outputs(got, ref)[0]
    torch.testing.assert_close(got[0], ref[0], rtol=1e-3, atol=1e-3)


def test_asking_an_exported_model_for_another_nms_names_the_fix(
    onnx_file: Path, synth_data: DetectionDataset, tmp_path: Path, capsys
) -> None:
    data = str(synth_data.root)
    assert main(["eval", str(onnx_file), data, "--nms", "greedy", "--split", "all", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "cannot switch to 'greedy'" in err and "drop --nms" in err and "model.pt" in err
    image = str(synth_data.root / synth_data.images[0].file_name)
    args = ["detect", str(onnx_file), image, "--out", str(tmp_path), "--nms", "soft"]
    assert main(args) == 2
    assert "cannot switch to 'soft'" in capsys.readouterr().err


def test_bad_inputs_give_clear_errors(
    model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["export", str(model_file), "--format", "tflite", "--out", str(tmp_path / "m")])
    assert exit_info.value.code == 2
    assert "invalid choice: 'tflite'" in capsys.readouterr().err

    missing = tmp_path / "missing.pt"
    assert main(["export", str(missing), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "missing.pt: no such model file" in capsys.readouterr().err

    assert main(["eval", str(tmp_path / "missing.onnx"), str(tmp_path)]) == 2
    assert "no such exported model" in capsys.readouterr().err

    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    assert main(["detect", str(garbage), str(garbage), "--out", str(tmp_path / "o")]) == 2
    assert "cannot load it as an ONNX model" in capsys.readouterr().err

    assert main(["export", str(garbage), "--out", str(tmp_path / "again.onnx")]) == 2
    assert "already exported" in capsys.readouterr().err

    assert main(["export", str(model_file), "--out", str(tmp_path / "m.bin")]) == 2
    assert "must end in .onnx" in capsys.readouterr().err


def test_a_foreign_onnx_file_is_refused(tmp_path: Path, capsys) -> None:
    path = tmp_path / "identity.onnx"
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, str(path))
    assert main(["eval", str(path), str(tmp_path)]) == 2
    assert "not a fabricdet export" in capsys.readouterr().err
