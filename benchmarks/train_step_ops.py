"""Tensor ops and host syncs per training step: what bounds a small detector on a GPU.

On a GPU every tensor op is a kernel launch from Python, and every op whose output size
depends on the data (boolean indexing's ``nonzero``, ``.item()``) makes the host wait for the
device. A step of the demo-sized detector does too little arithmetic per op to hide either, so
its speed there follows these counts, not FLOPs. Counted on CPU with the profiler (the same
ops run on CUDA), for one training step (forward, losses, backward) at each batch size, with
the share in the model's parts that loop over the images, the rest of the loss code around
them (the loop's own indexing, the sums), candidate selection and SinkhornNMS; ``rest`` is the
network and the backward pass.

    python benchmarks/train_step_ops.py [--data fabricdet-demo/data] [--batch-sizes 1 4 8]
        [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import collections
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile, record_function

import fabricdet.models.detector as detector_module
import fabricdet.ops.sinkhorn_nms as sinkhorn_nms_module
from fabricdet.data.synth import load_or_generate
from fabricdet.engine.config import preset
from fabricdet.engine.config_io import apply_overrides
from fabricdet.engine.data import TorchDetectionDataset, collate
from fabricdet.models import build_model
from fabricdet.models.set_loss import SetCriterion

#: Ops whose output size the host must read back from the device.
SYNC_OPS = frozenset({"aten::nonzero", "aten::_local_scalar_dense"})
#: Parts of the training step, each a profiler range: (owner, attribute) -> label. An op
#: counts in its innermost range (the loss code's range holds the per-image parts).
PARTS: dict[tuple[Any, str], str] = {
    (detector_module, "assign"): "assignment",
    (detector_module, "focal_loss"): "dense losses",
    (detector_module, "quality_loss"): "dense losses",
    (detector_module, "box_loss"): "dense losses",
    (detector_module, "box_l1_loss"): "dense losses",
    (detector_module, "embedding_loss"): "embedding loss",
    (detector_module.FabricDetector, "_embedding_targets"): "embedding loss",
    (SetCriterion, "__call__"): "set loss matching",
    (detector_module.FabricDetector, "losses"): "loss code around them",
    (detector_module, "select_candidates"): "candidate selection",
    (sinkhorn_nms_module.SinkhornNMS, "forward"): "SinkhornNMS",
}


def _labelled(fn: Callable[..., Any], label: str) -> Callable[..., Any]:
    def run(*args: Any, **kwargs: Any) -> Any:
        with record_function(f"part:{label}"):
            return fn(*args, **kwargs)

    return run


def _instrument() -> None:
    """Wrap each per-image part in a profiler range named after it."""
    for (owner, name), label in PARTS.items():
        fn = owner.__dict__[name]
        wrapped = _labelled(fn.__func__ if isinstance(fn, staticmethod) else fn, label)
        setattr(owner, name, staticmethod(wrapped) if isinstance(fn, staticmethod) else wrapped)


def count_step(model: torch.nn.Module, images: list, targets: list) -> dict[str, list[int]]:
    """``{part: [ops, syncs]}`` of one training step (``"rest"``: network, backward)."""

    def step() -> None:
        losses = model(images, targets)
        sum(losses.values()).backward()

    step()  # warm-up: lazy initialisation is not part of a step
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    counts: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    for event in prof.events():
        if not event.name.startswith("aten::"):
            continue
        part, parent = "rest", event.cpu_parent
        while parent is not None:
            if parent.name.startswith("part:"):
                part = parent.name[5:]
                break
            parent = parent.cpu_parent
        counts[part][0] += 1
        counts[part][1] += event.name in SYNC_OPS
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("fabricdet-demo/data"))
    parser.add_argument("--size", default="320x128", help="frame size of --data")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides")  # fmt: skip
    args = parser.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    dataset = load_or_generate(args.data, 1000, 0, (w, h))
    cfg = apply_overrides(preset("default"), [f"data.max_size={max(w, h)}", *args.set])
    torch.manual_seed(0)
    train = TorchDetectionDataset(dataset.subset("train"), cfg.data)
    model = build_model(cfg.model, dataset.num_classes).train()
    _instrument()
    labels = ["rest", *dict.fromkeys(PARTS.values())]
    print("| batch | ops | host syncs | " + " | ".join(f"{p} ops / syncs" for p in labels) + " |")
    print("|---" * (len(labels) + 3) + "|")
    for bs in args.batch_sizes:
        batch = collate([train[(i, i)] for i in range(bs)])
        counts = count_step(model, batch.images, batch.targets)
        ops, syncs = (sum(c[k] for c in counts.values()) for k in (0, 1))
        cells = [f"{counts[p][0]} / {counts[p][1]}" for p in labels]
        print(f"| {bs} | {ops} | {syncs} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
