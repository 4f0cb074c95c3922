"""Fixtures of the engine tests: a small synthetic dataset and a trained test-double run."""

from __future__ import annotations

from pathlib import Path

import pytest
from engine_double import build_double
from engine_testdata import tiny

from fabricdet.data.dataset import DetectionDataset
from fabricdet.data.synth import generate_dataset
from fabricdet.engine import train


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> DetectionDataset:
    """16 wide 256x128 synthetic images with masks, Tianchi layout, train/val/test splits."""
    out = tmp_path_factory.mktemp("engine") / "synth"
    return generate_dataset(out, 16, seed=1, size=(256, 128), workers=1, progress=False)


@pytest.fixture(scope="session")
def double_run(synth: DetectionDataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder trained for a few steps with the test-double model."""
    out = tmp_path_factory.mktemp("engine") / "run"
    train(tiny("train.max_steps=3"), synth, out, model_factory=build_double, progress=False)
    return out
