"""Fixtures of the report tests: the painted dataset, the flawed detector's model files, and
the reports ``fabricdet eval --report`` writes for them (made once per session)."""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from report_testdata import painted_dataset, save_flawed

from fabricdet.cli import main
from fabricdet.data.dataset import DetectionDataset
from fabricdet.data.formats import write_coco


@dataclass(frozen=True)
class EvalRun:
    """One ``fabricdet eval --report`` run: its report, its JSON output and its inputs."""

    report: Path
    result: dict[str, Any]
    stdout: str
    model: Path
    dataset: DetectionDataset


@pytest.fixture(scope="session")
def painted(tmp_path_factory: pytest.TempPathFactory) -> DetectionDataset:
    """The painted dataset (with masks), also written as ``annotations.json``."""
    ds = painted_dataset(tmp_path_factory.mktemp("report") / "data")
    write_coco(ds, ds.root / "annotations.json")
    return ds


def _eval(model: Path, ds: DetectionDataset, out: Path) -> EvalRun:
    report = out / "report.html"
    args = ["eval", str(model), str(ds.root), "--split", "val", "--nms", "greedy", "--json",
            "--quiet", "--out", str(out), "--report", str(report)]  # fmt: skip
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(args) == 0
    text = stdout.getvalue()
    return EvalRun(report, json.loads(text), text, model, ds)


@pytest.fixture(scope="session")
def mask_run(painted: DetectionDataset, tmp_path_factory: pytest.TempPathFactory) -> EvalRun:
    """The report of the flawed detector that predicts masks."""
    out = tmp_path_factory.mktemp("masks")
    return _eval(save_flawed(out / "run" / "model.pt"), painted, out)


@pytest.fixture(scope="session")
def box_run(painted: DetectionDataset, tmp_path_factory: pytest.TempPathFactory) -> EvalRun:
    """The report of the flawed detector that predicts boxes only."""
    out = tmp_path_factory.mktemp("boxes")
    return _eval(save_flawed(out / "run" / "model.pt", with_masks=False), painted, out)
