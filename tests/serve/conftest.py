"""Fixtures of the service tests: model files, images and running apps (module-scoped:
loading a model and starting an app cost more than the requests)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from serve_models import MAX_BYTES, MAX_PIXELS, painted_png, save_painted_model, save_real_model

from fabricdet.data.synth import generate_dataset
from fabricdet.engine import load_model
from fabricdet.serve import ServeSettings, create_app


@pytest.fixture(scope="session")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``real``/``painted`` model files, a synthetic fabric ``jpeg`` and the painted ``png``."""
    root = tmp_path_factory.mktemp("serve")
    ds = generate_dataset(root / "synth", 1, seed=3, size=(256, 128), workers=1, progress=False)
    return {
        "real": save_real_model(root / "real.pt"),
        "painted": save_painted_model(root / "painted.pt"),
        "jpeg": ds.image_path(ds.images[0]),
        "png": painted_png(root / "painted.png"),
    }


def _client(model: Path, **settings: object) -> Iterator[TestClient]:
    limits = {"max_bytes": MAX_BYTES, "max_pixels": MAX_PIXELS, **settings}
    app = create_app(load_model(model), ServeSettings(**limits))  # type: ignore[arg-type]
    # `with` runs the lifespan (warm-up, and the inference thread's shutdown at the end).
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="module")
def real(files: dict[str, Path]) -> Iterator[TestClient]:
    """The real (untrained) detector behind the service."""
    yield from _client(files["real"], device="cpu")


@pytest.fixture(scope="module")
def painted(files: dict[str, Path]) -> Iterator[TestClient]:
    """The exact, mask-predicting test detector behind the service."""
    yield from _client(files["painted"], device="cpu")
