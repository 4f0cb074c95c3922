"""Test models for the export tests (a uniquely named module, not conftest, so test files
import it unambiguously).

An untrained detector scores every location alike, keeps nearly every candidate and so tests
nothing about NMS. :func:`biased_detector` spreads its head's weights so scores differ
(ranking matters), lifts the class bias so hundreds of candidates pass the score threshold,
and widens the boxes to about four strides so that neighbours overlap and SinkhornNMS has
clusters to resolve: a third to a half of the candidates are suppressed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from fabricdet.data.categories import Category
from fabricdet.engine import RunConfig, apply_overrides, preset
from fabricdet.engine.checkpoint import save_model_file
from fabricdet.models import FabricDetector, build_model


def tiny_config(*overrides: str) -> RunConfig:
    """The ``tiny`` preset with overrides."""
    return apply_overrides(preset("tiny"), overrides)


def biased_detector(cfg: RunConfig, num_classes: int, seed: int = 0) -> FabricDetector:
    """A seeded, untrained detector whose candidates overlap (see the module docstring)."""
    torch.manual_seed(seed)
    model = build_model(cfg.model, num_classes).eval()
    head = model.head
    with torch.no_grad():
        nn.init.normal_(head.cls.weight, std=0.3)
        nn.init.constant_(head.cls.bias, -1.0)
        nn.init.normal_(head.reg.weight[:4], std=0.1)  # box encoding
        nn.init.constant_(head.reg.bias[2:4], math.log(4.0))
    return model


def save_biased_model(path: Path, categories: tuple[Category, ...], seed: int = 0) -> Path:
    """``model.pt`` of :func:`biased_detector` (``tiny`` preset) for ``categories``."""
    cfg = tiny_config()
    model = biased_detector(cfg, len(categories), seed)
    save_model_file(path, model, cfg, categories, "fabricdet.models:build_model", 0)
    return path


@contextmanager
def single_thread() -> Iterator[None]:
    """One torch thread: on 2 cores shared with training runs, two threads that wait on each
    other make these small models 10-40x slower (measured: 27 s -> 0.7 s for the wrapper
    tests)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
