"""Fixtures of the export tests: a synthetic dataset, a model for it and its exports.

The dynamo ONNX export takes most of this folder's time (about a minute on 2 busy cores:
torch.export reasons symbolically about every op for dynamic batch, height and width), so it
runs once per session and every ONNX test shares the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from export_models import save_biased_model, single_thread

from fabricdet.cli import main
from fabricdet.data.dataset import DetectionDataset
from fabricdet.data.synth import generate_dataset


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with single_thread():
        yield


@pytest.fixture(scope="session")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("export")


@pytest.fixture(scope="session")
def synth_data(export_dir: Path) -> DetectionDataset:
    """8 wide 256x128 synthetic images (20 categories), Tianchi layout."""
    return generate_dataset(
        export_dir / "synth", 8, seed=3, size=(256, 128), workers=1, progress=False
    )


@pytest.fixture(scope="session")
def model_file(export_dir: Path, synth_data: DetectionDataset) -> Path:
    return save_biased_model(export_dir / "model.pt", synth_data.categories)


@pytest.fixture(scope="session")
def onnx_file(export_dir: Path, model_file: Path) -> Path:
    """``model.onnx`` written by ``fabricdet export`` (default: dynamo exporter, opset 18)."""
    out = export_dir / "model.onnx"
    with single_thread():
        assert main(["export", str(model_file), "--out", str(out)]) == 0
    return out
