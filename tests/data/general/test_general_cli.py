"""``fabricdet synth-general``: writes a COCO dataset that every reader takes."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabricdet.cli import main
from fabricdet.data.formats import load_dataset


def test_cli_writes_a_dataset_load_dataset_reads(tmp_path: Path) -> None:
    out = tmp_path / "gen"
    args = ["synth-general", str(out), "--num-images", "5", "--size", "64x48", "--seed", "2"]
    assert main([*args, "--quiet"]) == 0
    dataset = load_dataset(out)
    assert len(dataset.images) == 5
    assert {(r.width, r.height) for r in dataset.images} == {(64, 48)}
    assert (out / "annotations.json").is_file()
    # A second run into the same folder is refused, not silently mixed.
    assert main([*args, "--quiet"]) == 2


def test_cli_bad_size_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["synth-general", str(tmp_path), "--num-images", "2", "--size", "64"]) == 2
    assert "WxH" in capsys.readouterr().err
    assert not (tmp_path / "annotations.json").exists()
