"""One rank of the 2-process DDP test (a module of its own: spawned processes import it)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from engine_double import DoubleDetector
from engine_testdata import tiny

from fabricdet.data.formats import load_dataset
from fabricdet.engine import train
from fabricdet.models.config import ModelConfig

#: the models built in this process (the test saves each rank's replica after training).
BUILT: list[torch.nn.Module] = []


def build_recording_double(cfg: ModelConfig, num_classes: int) -> torch.nn.Module:
    model = DoubleDetector(cfg, num_classes)
    BUILT.append(model)
    return model


def run_rank(rank: int, world_size: int, data: str, out: str, port: int) -> None:
    """``torch.multiprocessing.spawn`` target: the environment ``torchrun`` would set, then
    ``train``; each rank saves its replica's weights as ``rank<k>.pt``."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        WORLD_SIZE=str(world_size),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    cfg = tiny("train.max_steps=4", "train.checkpoint_every=2")
    train(cfg, load_dataset(Path(data)), out, model_factory=build_recording_double, progress=False)
    torch.save(BUILT[-1].state_dict(), Path(out) / f"rank{rank}.pt")
