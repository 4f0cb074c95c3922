"""Latency of every NMS method on realistic detector candidates.

Candidates imitate a dense detector's output on a 2446x1000 fabric image after its score
threshold: objects of 20 classes (compact defects and thin threads up to 1:100), each seen by a
cluster of jittered boxes with decaying scores and some class confusion, plus low-score clutter.

For N in {100, 1000, 5000} it prints the median latency of each method (eval decode), of
SinkhornNMS forward+backward in training mode (the edge-list solve the detector trains with,
and the dense one that export traces), the ratio to torchvision's ``batched_nms``
timed alternately with it (the median of the per-call ratios: on a shared machine whose speed
drifts, both see the same load), and how often each method's kept set agrees with greedy NMS.
``sinkhorn`` is the sparse eval path of ``batched_nms`` (on CPU the compiled kernel, warmed up
before timing: its first call compiles), ``sinkhorn-torch`` the same on tensor ops (the CUDA
path); ``sinkhorn-dense`` solves every same-class pair (``dense=True``, the reference the
sparse path is tested against).

    python benchmarks/nms_speed.py [--sizes 100 1000 5000] [--repeats 30] [--device cpu]
        [--methods greedy sinkhorn] [--threads 1] [--no-train]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torchvision

from fabricdet.ops import NMS_METHODS, SinkhornNMS, batched_nms


def make_candidates(
    n: int, seed: int = 0, num_classes: int = 20, device: str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` candidates: boxes (Tensor[n, 4]), scores (Tensor[n]), labels (Tensor[n])."""
    g = torch.Generator().manual_seed(seed)
    num_objects = max(1, n // 12)
    size = torch.tensor([2446.0, 1000.0])
    thin = torch.rand(num_objects, generator=g) < 0.3
    wh = 8 + torch.rand(num_objects, 2, generator=g) * 150
    long_side = 200 + torch.rand(num_objects, generator=g) * 800
    horizontal = torch.rand(num_objects, generator=g) < 0.5
    wh[thin & horizontal] = torch.stack(
        [long_side, 2 + 6 * torch.rand(num_objects, generator=g)], 1
    )[thin & horizontal]
    wh[thin & ~horizontal] = torch.stack(
        [2 + 6 * torch.rand(num_objects, generator=g), long_side.clamp(max=990)], 1
    )[thin & ~horizontal]
    centre = wh / 2 + torch.rand(num_objects, 2, generator=g) * (size - wh).clamp_min(1)
    obj_class = torch.randint(0, num_classes, (num_objects,), generator=g)
    peak = 0.5 + 0.45 * torch.rand(num_objects, generator=g)

    owner = torch.randint(0, num_objects, (n,), generator=g)
    jitter = torch.randn(n, 4, generator=g) * 0.06 * wh[owner].repeat(1, 2)
    c, s = centre[owner], wh[owner]
    boxes = torch.cat([c - s / 2, c + s / 2], 1) + jitter
    boxes[:, 2:] = torch.maximum(boxes[:, 2:], boxes[:, :2] + 1)
    offset = jitter.abs().mean(1) / (0.06 * wh[owner].mean(1))
    scores = peak[owner] * torch.exp(-0.5 * offset) * (0.7 + 0.3 * torch.rand(n, generator=g))
    labels = obj_class[owner].clone()
    confused = torch.rand(n, generator=g) < 0.1
    labels[confused] = torch.randint(0, num_classes, (int(confused.sum()),), generator=g)
    clutter = torch.rand(n, generator=g) < 0.1
    scores[clutter] *= 0.2
    return boxes.to(device), scores.clamp(0.01, 1.0).to(device), labels.to(device)


def _timed(fn: Callable[[], object], device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def paired_ms(
    fn: Callable[[], object], base: Callable[[], object], repeats: int, device: str
) -> tuple[float, float]:
    """Median latency of ``fn`` (ms) and the median of its per-call ratios to ``base``, the
    two timed alternately so that both see the same machine load (shared machines drift)."""
    fn(), base()  # warm-up
    times, ratios = [], []
    for _ in range(repeats):
        t_base = _timed(base, device)
        t_fn = _timed(fn, device)
        times.append(t_fn)
        ratios.append(t_fn / t_base)
    return 1e3 * statistics.median(times), statistics.median(ratios)


def train_step(
    boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, slots: int, edges: bool
) -> None:
    """SinkhornNMS forward + backward as the detector trains it: embeddings, K slots, the soft
    outputs its losses use, no hard decode; ``edges``: the edge-list solve the detector trains
    with, else the dense one."""
    b = boxes.unsqueeze(0).clone().requires_grad_(True)
    s = scores.unsqueeze(0).clone().requires_grad_(True)
    e = torch.randn(1, len(scores), 16, device=boxes.device, requires_grad=True)
    out = SinkhornNMS(max_slots=slots, edges=edges, decode_iters=0)(b, s, labels.unsqueeze(0), e)
    (out.keep_prob.sum() + out.boxes.sum() * 1e-3).backward()


BENCH_METHODS: tuple[str, ...] = (*NMS_METHODS, "sinkhorn-torch", "sinkhorn-dense")


def run_method(
    method: str, boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    if method == "sinkhorn-dense":
        return batched_nms(boxes, scores, labels, 0.5, method="sinkhorn", dense=True)
    if method == "sinkhorn-torch":
        return batched_nms(boxes, scores, labels, 0.5, method="sinkhorn", backend="torch")
    return batched_nms(boxes, scores, labels, 0.5, method=method)


def rows_for_size(
    n: int, repeats: int, device: str, slots: int, methods: list[str], train: bool
) -> list[str]:
    boxes, scores, labels = make_candidates(n, device=device)
    greedy_keep = set(torchvision.ops.batched_nms(boxes, scores, labels, 0.5).tolist())

    def base() -> torch.Tensor:
        return torchvision.ops.batched_nms(boxes, scores, labels, 0.5)

    rows = []
    for method in methods:
        # the sequential host-side baselines are slow: fewer repeats
        fast = ("greedy", "sinkhorn", "sinkhorn-torch", "sinkhorn-dense", "matrix")
        reps = repeats if method in fast else max(3, repeats // 10)
        ms, ratio = paired_ms(
            lambda m=method: run_method(m, boxes, scores, labels), base, reps, device
        )
        kept = set(run_method(method, boxes, scores, labels).tolist())
        jacc = len(kept & greedy_keep) / max(1, len(kept | greedy_keep))
        rows.append(f"| {n} | {method} | {ms:.2f} | {ratio:.1f} | {jacc:.1%} |")
    if train:
        for edges, name in ((True, "edges"), (False, "dense")):
            ms, ratio = paired_ms(
                lambda e=edges: train_step(boxes, scores, labels, slots, e), base, repeats, device
            )
            rows.append(
                f"| {n} | sinkhorn train fwd+bwd, {name} (K={slots}) | {ms:.2f} | {ratio:.1f} | - |"
            )
    return rows


def run(
    sizes: list[int],
    repeats: int,
    device: str,
    slots: int,
    methods: list[str] | None = None,
    train: bool = True,
) -> str:
    lines = [
        "| N | method | median ms | x torchvision batched_nms | kept-set Jaccard vs greedy |",
        "|---|---|---|---|---|",
    ]
    for n in sizes:
        lines += rows_for_size(n, repeats, device, slots, methods or list(BENCH_METHODS), train)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 5000])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--slots", type=int, default=100, help="slots K in training mode")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--methods", nargs="+", choices=BENCH_METHODS, help="default: all")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--no-train", action="store_true", help="skip the training-mode row")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"device: {args.device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(run(args.sizes, args.repeats, args.device, args.slots, args.methods, not args.no_train))


if __name__ == "__main__":
    main()
