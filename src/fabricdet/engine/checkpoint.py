"""Checkpoints (resumable training state) and ``model.pt`` (what evaluation and inference load).

Both are written atomically (temporary file beside the target, fsync, ``os.replace``), so a run
killed mid-write leaves the previous file intact. Both hold only tensors and plain Python
values, so they load with ``torch.load(weights_only=True)``: opening a model file never runs
code stored in it.

``model.pt`` holds the weights, the resolved run config, the category map and the import path
of the function that builds the model (``"fabricdet.models:build_model"`` by default), so
``fabricdet eval`` and ``fabricdet detect`` need nothing else.
"""

from __future__ import annotations

import importlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fabricdet.data.categories import Category
from fabricdet.data.formats.atomic import atomic_write
from fabricdet.engine.config import RunConfig
from fabricdet.engine.config_io import saved_config, to_dict
from fabricdet.errors import FabricdetError
from fabricdet.models.config import ModelConfig

MODEL_FORMAT = "fabricdet-model"
CHECKPOINT_FORMAT = "fabricdet-checkpoint"
FORMAT_VERSION = 1
DEFAULT_FACTORY = "fabricdet.models:build_model"
MODEL_FILE = "model.pt"

#: builds a detector: ``factory(model_config, num_classes) -> nn.Module``.
ModelFactory = Callable[[ModelConfig, int], nn.Module]


class CheckpointError(FabricdetError):
    """A model or checkpoint file is missing, unreadable or not a fabricdet file."""


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync, then rename over ``path``."""
    atomic_write(Path(path), lambda f: torch.save(obj, f))


def _load(path: Path, expected: str, what: str) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such {what}; check the path (a run folder holds it)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for foreign or truncated files
        raise CheckpointError(
            f"{path}: cannot read it as a {what} ({type(err).__name__}); "
            "it is truncated or not a fabricdet file: point at the file a training run wrote"
        ) from None
    if not isinstance(obj, dict) or obj.get("format") != expected:
        raise CheckpointError(
            f"{path}: not a fabricdet {what} (no '{expected}' marker); "
            "point at the file a `fabricdet train` run wrote"
        )
    if obj.get("version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: written by a newer fabricdet (format {obj['version']}); upgrade fabricdet"
        )
    return obj


def capture_rng() -> dict[str, Any]:
    """Python, numpy, torch (and CUDA) random states, as tensors and plain values."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def categories_to_list(categories: tuple[Category, ...]) -> list[dict[str, Any]]:
    return [{"id": c.id, "name": c.name, "raw_names": list(c.raw_names)} for c in categories]


def categories_from_list(items: list[dict[str, Any]]) -> tuple[Category, ...]:
    return tuple(Category(int(c["id"]), str(c["name"]), tuple(c["raw_names"])) for c in items)


def factory_name(factory: ModelFactory) -> str:
    """``"module:qualname"`` of a model factory (stored so loading rebuilds the same model)."""
    return f"{factory.__module__}:{factory.__qualname__}"


def resolve_factory(name: str) -> ModelFactory:
    """The model factory named ``"module:qualname"``.

    Raises:
        CheckpointError: the module or function cannot be imported.
    """
    module_name, _, qualname = name.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as err:
        raise CheckpointError(
            f"the model builder {name!r} cannot be imported ({err}); install the fabricdet "
            "version (or the package) that trained this model"
        ) from None
    return obj  # type: ignore[no-any-return]


def default_factory() -> ModelFactory:
    """``fabricdet.models.build_model``, imported only when a model is built."""
    return resolve_factory(DEFAULT_FACTORY)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write a training checkpoint (``state`` from the training loop) atomically."""
    atomic_torch_save({"format": CHECKPOINT_FORMAT, "version": FORMAT_VERSION, **state}, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a training checkpoint (see :func:`save_checkpoint`)."""
    return _load(path, CHECKPOINT_FORMAT, "training checkpoint")


def save_model_file(
    path: Path,
    model: nn.Module,
    cfg: RunConfig,
    categories: tuple[Category, ...],
    factory: str,
    step: int,
) -> None:
    """Write ``model.pt`` atomically (see the module docstring)."""
    atomic_torch_save(
        {
            "format": MODEL_FORMAT,
            "version": FORMAT_VERSION,
            "model": model.state_dict(),
            "config": to_dict(cfg),
            "categories": categories_to_list(categories),
            "factory": factory,
            "step": step,
        },
        path,
    )


@dataclass
class LoadedModel:
    """A model rebuilt from ``model.pt``, in eval mode, with what it was trained with.

    Attributes:
        model: the detector (torchvision's detection contract).
        config: the run's resolved config (image scale, NMS, thresholds).
        categories: label order: ``categories[label]`` is the category of model label ``label``.
        path: the file it came from.
        step: training steps behind the weights.
    """

    model: nn.Module
    config: RunConfig
    categories: tuple[Category, ...]
    path: Path
    step: int


def load_model(
    path: Path, device: torch.device | str = "cpu", factory: ModelFactory | None = None
) -> LoadedModel:
    """Rebuild the model saved in ``model.pt``, or open an exported ``.onnx`` file.

    Args:
        path: ``model.pt``, the run folder holding it, or a ``.onnx`` file written by
            ``fabricdet export`` (run by onnxruntime: :mod:`fabricdet.export.runtime`).
        factory: builds the model; default: the builder recorded in the file.

    Raises:
        CheckpointError: missing file, not a fabricdet model, builder not importable, or
            weights that do not fit the rebuilt model.
    """
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        from fabricdet.export.runtime import load_onnx_model  # onnxruntime only when needed

        return load_onnx_model(path, device)
    if path.is_dir():
        path = path / MODEL_FILE
    obj = _load(path, MODEL_FORMAT, "model file")
    cfg = saved_config(obj["config"], where=f"{path} (config)")
    categories = categories_from_list(obj["categories"])
    build = factory or resolve_factory(obj["factory"])
    model = build(cfg.model, len(categories))
    try:
        model.load_state_dict(obj["model"])
    except RuntimeError as err:
        raise CheckpointError(
            f"{path}: the weights do not fit the model {obj['factory']} builds "
            f"({str(err).splitlines()[0]}); was it trained with another fabricdet version?"
        ) from None
    model.to(device).eval()
    return LoadedModel(model, cfg, categories, path, int(obj["step"]))
