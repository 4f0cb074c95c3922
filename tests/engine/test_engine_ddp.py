"""DDP: two CPU processes on gloo train one model; the replicas stay identical."""

from __future__ import annotations

import socket

import torch
import torch.multiprocessing as tmp
from engine_ddp_worker import run_rank

from fabricdet.engine.checkpoint import load_checkpoint


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_process_gloo_replicas_stay_identical(synth, tmp_path):
    out = tmp_path / "ddp"
    tmp.spawn(run_rank, args=(2, str(synth.root), str(out), _free_port()), nprocs=2, join=True)
    r0 = torch.load(out / "rank0.pt", weights_only=True)
    r1 = torch.load(out / "rank1.pt", weights_only=True)
    saved = torch.load(out / "model.pt", weights_only=True)
    assert saved["step"] == 4 and saved["model"].keys() == r0.keys()
    last = load_checkpoint(out / "checkpoint.pt")["model"]  # model.pt holds their average
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k  # gradients were all-reduced every step
        assert torch.equal(r0[k], last[k]), k  # rank 0 wrote the checkpoint
