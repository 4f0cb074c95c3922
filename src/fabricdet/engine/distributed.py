"""Process-group setup for ``torchrun``: which rank this is, on which device.

Single process when ``WORLD_SIZE`` is unset or 1; otherwise ``torch.distributed`` is
initialised from the environment ``torchrun`` sets (``env://``), with NCCL on CUDA and gloo on
CPU. Rank 0 alone prints and writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from fabricdet.engine.config import ConfigError


@dataclass(frozen=True)
class DistInfo:
    """This process' place in the job.

    Attributes:
        rank, world_size, local_rank: as set by ``torchrun`` (0, 1, 0 when single).
        device: the device this process trains on.
        initialised: whether this call created the process group (and must destroy it).
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    initialised: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``"cuda"`` -> this rank's GPU.

    Raises:
        ConfigError: ``"cuda"`` asked for on a machine without CUDA.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("train.device=cuda but no CUDA device is visible; use cpu or auto")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device(name)


def init_distributed(device: str) -> DistInfo:
    """Join the ``torchrun`` process group if there is one (see the module docstring)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world <= 1:
        return DistInfo(0, 1, 0, dev)
    created = False
    if not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
        created = True
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, dev, created)


def shutdown(info: DistInfo) -> None:
    """Destroy the process group if :func:`init_distributed` created it."""
    if info.initialised and dist.is_initialized():
        dist.destroy_process_group()


def any_rank(info: DistInfo, flag: bool) -> bool:
    """True on every rank when ``flag`` is true on at least one (a collective: every rank must
    call it at the same point). Used so that all ranks stop, or fail, at the same step."""
    if not info.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def max_over_ranks(info: DistInfo, flag: bool, value: float) -> tuple[bool, float]:
    """``(any rank's flag, the largest value)``, the same on every rank (a collective)."""
    if not info.distributed:
        return flag, value
    t = torch.tensor([1.0 if flag else 0.0, value], dtype=torch.float64, device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t[0].item() > 0), float(t[1].item())


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()
