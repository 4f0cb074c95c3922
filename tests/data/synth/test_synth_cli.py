"""``fabricdet synth`` end to end, and its argument errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fabricdet.cli import main


def test_synth_command_writes_a_dataset(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "ds"
    rc = main(
        [
            "synth",
            str(out),
            "--num-images",
            "5",
            "--seed",
            "2",
            "--size",
            "256x128",
            "--workers",
            "1",
            "--quiet",
        ]
    )
    assert rc == 0
    images = list((out / "defect_Images").glob("*.jpg")) + list(
        (out / "normal_Images").glob("*.jpg")
    )
    assert len(images) == 5
    for name in (
        "anno_train.json",
        "splits.json",
        "instances_train.json",
        "instances_val.json",
        "instances_test.json",
    ):
        assert (out / "Annotations" / name).is_file()
    coco = json.loads((out / "Annotations" / "instances_train.json").read_text())
    assert all(im["width"] == 256 and im["height"] == 128 for im in coco["images"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--size", "256by128"], "WxH"),
        (["--size", "0x128"], "WxH"),
        (["--num-images", "0"], "--num-images"),
        (["--splits", "0.8,0.2"], "TRAIN,VAL,TEST"),
        (["--defect-free-fraction", "1.5"], "--defect-free-fraction"),
    ],
)
def test_bad_arguments_are_clear_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str], message: str
) -> None:
    argv = ["synth", str(tmp_path / "ds"), "--num-images", "2", *args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "fabricdet synth: error:" in err and message in err
    assert not (tmp_path / "ds").exists()
