"""Sparse SinkhornNMS (the batched_nms path): same decode as the dense module, edges complete."""

from __future__ import annotations

import pytest
import torch
from candidates import detector_candidates

from fabricdet.ops import SinkhornNMS, batched_nms
from fabricdet.ops.boxes import NWD_SCALE, pairwise_iou, pairwise_nwd, pairwise_overlap
from fabricdet.ops.nms import sinkhorn_batched_nms
from fabricdet.ops.sinkhorn_nms_kernel import OVERLAP_CODES, _crowding, _edges
from fabricdet.ops.sinkhorn_nms_terms import neighbourhood_reach, similarity_floor
from fabricdet.ops.sparse_sinkhorn_nms import HOST_KERNEL_MAX, _sweep, neighbourhoods, uses_kernel


def assert_same_decode(boxes, scores, labels, **options) -> None:
    sparse = sinkhorn_batched_nms(boxes, scores, labels, 0.5, **options)
    dense = sinkhorn_batched_nms(boxes, scores, labels, 0.5, dense=True, **options)
    assert sparse.keep.tolist() == dense.keep.tolist()
    assert torch.equal(sparse.scores, dense.scores)
    torch.testing.assert_close(sparse.boxes, dense.boxes, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize(("n", "seed"), [(60, 0), (300, 1), (1000, 2), (1000, 3)])
def test_sparse_equals_dense(n: int, seed: int) -> None:
    assert_same_decode(*detector_candidates(n, seed))


@pytest.mark.parametrize("seed", range(6))
def test_sparse_equals_dense_scores_spanning_decades(seed: int) -> None:
    """Scores from 1e-4 to 1: the quality prior must not let a weak box reach a far slot."""
    g = torch.Generator().manual_seed(seed)
    n = 80
    corner = torch.rand(n, 2, generator=g) * 300
    boxes = torch.cat([corner, corner + 1 + torch.rand(n, 2, generator=g) * 80], 1)
    scores = 10 ** (-4 * torch.rand(n, generator=g))
    assert_same_decode(boxes, scores, torch.randint(0, 3, (n,), generator=g))


def test_weak_box_survives_a_strong_disjoint_one() -> None:
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [100.0, 100.0, 110.0, 110.0]])
    scores = torch.tensor([0.9, 0.0009])
    labels = torch.zeros(2, dtype=torch.long)
    for dense in (False, True):
        assert sinkhorn_batched_nms(boxes, scores, labels, 0.5, dense=dense).keep.tolist() == [
            0,
            1,
        ]


@pytest.mark.parametrize("seed", [0, 1])
def test_sparse_equals_dense_with_embeddings(seed: int) -> None:
    boxes, scores, labels = detector_candidates(400, seed)
    g = torch.Generator().manual_seed(seed)
    # Random appearance: overlapping boxes often look different and keep their own slots.
    embeddings = torch.randn(400, 8, generator=g)
    assert_same_decode(boxes, scores, labels, embeddings=embeddings)
    assert_same_decode(boxes, scores, labels, embeddings=embeddings, feature_weight=3.0)
    assert_same_decode(boxes, scores, labels, embeddings=embeddings, appearance_capacity=False)


@pytest.mark.parametrize("dense", [False, True])
def test_class_capacities_leave_the_embeddings_in_the_cost_alone(dense: bool) -> None:
    """With ``appearance_capacity=False`` the embeddings reach the plan only through the
    appearance cost: with that term off too, the decode is the one without embeddings. With
    appearance capacities the same embeddings change it (the capacities are then the
    look-alike mass around each slot, not the class mass)."""
    boxes, scores, labels = detector_candidates(400, 5)
    emb = torch.randn(400, 8, generator=torch.Generator().manual_seed(5))

    def kept(e: torch.Tensor | None, looks: bool) -> list[int]:
        return sinkhorn_batched_nms(
            boxes, scores, labels, 0.5, embeddings=e, dense=dense, feature_weight=0.0,
            appearance_capacity=looks,
        ).keep.tolist()  # fmt: skip

    plain = kept(None, True)
    assert kept(emb, False) == plain
    assert kept(emb, True) != plain


@pytest.mark.parametrize(
    "options",
    [
        {"overlap": "iou"},
        {"overlap": "nwd", "nwd_scale": 0.2},
        {"overlap": "diou"},
        {"eps": 0.2, "num_iters": 4},
        {"dustbin_cost": 4.5},  # no similarity floor: every same-class pair is an edge
        {"quality_weight": 2.0, "spatial_weight": 16.0},
        {"quality_range": 0.5, "spatial_weight": 5.0},
        {"quality_range": float("inf")},  # unbounded prior: no floor, the dense problem
        {"fuse_power": 3.0},
    ],
)
def test_sparse_equals_dense_options(options: dict) -> None:
    assert_same_decode(*detector_candidates(300, 4), **options)


def test_sparse_equals_dense_float64_and_ties() -> None:
    boxes, scores, labels = detector_candidates(300, 5, dtype=torch.float64)
    assert_same_decode(boxes, scores, labels)
    # Exact duplicates with equal scores: the dense argmax keeps the first in input order.
    boxes = torch.cat([boxes, boxes[:40]])
    scores = torch.cat([scores, scores[:40]])
    labels = torch.cat([labels, labels[:40]])
    assert_same_decode(boxes, scores, labels)


@pytest.mark.parametrize("overlap", ["iou+nwd", "iou", "nwd"])
def test_edges_hold_every_close_pair(overlap: str) -> None:
    boxes, _, labels = detector_candidates(800, 6, num_classes=5)
    floor = similarity_floor(0.5, 0.05, 10.0, 3.0, 1.0)
    assert floor == pytest.approx(0.25)
    nb = neighbourhoods(boxes, labels, overlap, 0.1, floor)
    n = len(boxes)
    edges = torch.zeros(n, n, dtype=torch.bool)
    edges[nb.order[nb.row[nb.col < n]], nb.order[nb.col[nb.col < n]]] = True
    same = labels.unsqueeze(1) == labels.unsqueeze(0)
    close = (pairwise_overlap(boxes, boxes, overlap, 0.1) >= floor) & same
    assert edges[close].all()
    assert not edges[~same].any()
    assert torch.equal(edges, edges.T) and edges.diagonal().all()

    # The sweep intervals hold every pair that overlaps at all or has NWD >= floor.
    order, _, hi = _sweep(boxes, labels, neighbourhood_reach(overlap, 0.1, floor))
    position = torch.empty_like(order)
    position[order] = torch.arange(n)
    touching = (pairwise_iou(boxes, boxes) > 0) | (pairwise_nwd(boxes, boxes) >= floor)
    if overlap == "iou":
        touching = pairwise_iou(boxes, boxes) > 0
    i, j = (touching & same).nonzero().T
    first = torch.minimum(position[i], position[j])
    last = torch.maximum(position[i], position[j])
    assert (last < hi[first]).all()


@pytest.mark.parametrize("vertical", [False, True])
def test_kernel_edges_in_a_dense_cluster_are_every_close_pair(vertical: bool) -> None:
    """300 jittered duplicates of one thread and a second class: more edges than the sweep's
    first allocation (8 N + 16), so it grows; the edges are exactly the close same-class pairs.
    A horizontal thread is swept along y, a vertical one along x."""
    gen = torch.Generator().manual_seed(0)
    base = torch.tensor([20.0, 40.0, 600.0, 44.0], dtype=torch.float64)
    boxes = base + torch.randn(300, 4, generator=gen, dtype=torch.float64) * 2.0
    boxes[:, 2:] = torch.maximum(boxes[:, 2:], boxes[:, :2] + 1.0)
    if vertical:
        boxes = boxes[:, [1, 0, 3, 2]]
    labels = (torch.arange(300) % 7 == 0).long()
    floor = similarity_floor(0.5, 0.05, 10.0, 3.0, 1.0)
    reach = neighbourhood_reach("iou+nwd", NWD_SCALE, floor)
    along_y = _crowding(boxes.numpy(), 1, reach) < _crowding(boxes.numpy(), 0, reach)
    assert along_y != vertical
    first, second, sigma = _edges(
        boxes.numpy(), labels.numpy(), reach, floor, OVERLAP_CODES["iou+nwd"], NWD_SCALE
    )
    assert len(first) > 8 * len(boxes) + 16
    got = torch.zeros(300, 300, dtype=torch.bool)
    got[torch.from_numpy(first), torch.from_numpy(second)] = True
    close = pairwise_overlap(boxes, boxes, "iou+nwd", NWD_SCALE) >= floor
    close &= labels[:, None] == labels[None]
    assert torch.equal(got, torch.triu(close, diagonal=1))
    ref = pairwise_overlap(boxes, boxes, "iou+nwd", NWD_SCALE)[first, second]
    torch.testing.assert_close(torch.from_numpy(sigma), ref)


@pytest.mark.parametrize("looks", [True, False])
def test_batched_nms_passes_embeddings(looks: bool) -> None:
    """Two adjacent threads that look different stay two, with appearance capacities or with
    the appearance cost alone; looking alike, they merge."""
    boxes = torch.tensor([[0.0, 100.0, 1000.0, 106.0], [0.0, 101.0, 1000.0, 107.0]])
    scores = torch.tensor([0.9, 0.8])
    labels = torch.zeros(2, dtype=torch.long)
    different = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])

    def kept(emb: torch.Tensor) -> list[int]:
        return batched_nms(
            boxes, scores, labels, 0.5, method="sinkhorn", embeddings=emb,
            appearance_capacity=looks,
        ).tolist()  # fmt: skip

    assert kept(different) == [0, 1]
    assert kept(different[[0, 0]]) == [0]
    # The other methods ignore embeddings, so a detector can switch methods freely.
    assert batched_nms(boxes, scores, labels, 0.5, embeddings=different).tolist() == [0]
    with pytest.raises(ValueError, match="embeddings must have shape"):
        batched_nms(boxes, scores, labels, 0.5, method="sinkhorn", embeddings=different[:1])
    with pytest.raises(ValueError, match="embeddings contains NaN"):
        batched_nms(boxes, scores, labels, 0.5, method="sinkhorn",
                    embeddings=different * float("nan"))  # fmt: skip


@pytest.mark.parametrize("dense", [False, True])
def test_feature_margin_lets_look_alike_duplicates_merge(dense: bool) -> None:
    """Duplicates of one object whose embeddings differ a little (cos 0.8, as early in
    training): without a margin that difference outweighs the quality prior and both survive;
    with the default margin the weaker one is suppressed, while clearly different looks
    (orthogonal embeddings) still keep two adjacent objects apart."""
    boxes = torch.tensor([[0.0, 0.0, 100.0, 10.0], [0.0, 0.5, 100.0, 10.5]])
    scores = torch.tensor([0.9, 0.8])
    labels = torch.zeros(2, dtype=torch.long)
    alike = torch.tensor([[1.0, 0.0], [0.8, 0.6]])  # cos 0.8
    different = torch.tensor([[1.0, 0.0], [0.0, 1.0]])

    def kept(emb: torch.Tensor, **options: float) -> list[int]:
        return sinkhorn_batched_nms(
            boxes, scores, labels, 0.5, embeddings=emb, dense=dense, **options
        ).keep.tolist()

    assert kept(alike, feature_margin=0.0) == [0, 1]
    assert kept(alike) == [0]
    assert kept(different) == [0, 1]


@pytest.mark.parametrize("dense", [False, True])
def test_a_suppressed_box_suppresses_nothing(dense: bool) -> None:
    """A chain A-C-B (IoU 0.6, 0.6; A-B 0.33): greedy keeps A and B, because C, removed by A,
    removes nothing. B must not be lost to C's slot."""
    boxes = torch.tensor([[0.0, 0.0, 100.0, 10.0], [25.0, 0.0, 125.0, 10.0], [50, 0, 150, 10]])
    scores = torch.tensor([0.9, 0.6, 0.5])
    labels = torch.zeros(3, dtype=torch.long)
    got = sinkhorn_batched_nms(boxes, scores, labels, 0.5, dense=dense, overlap="iou")
    assert got.keep.tolist() == batched_nms(boxes, scores, labels, 0.5).tolist() == [0, 2]


@pytest.mark.parametrize("dense", [False, True])
def test_claim_chains_decode_as_greedy(dense: bool) -> None:
    """Seven boxes in a row, each overlapping the next (IoU 0.6) and not the one after (0.33),
    scores falling: greedy keeps every other box. A decode that lets suppressed slots
    suppress, or that stops after two rounds, gets the tail of the chain wrong."""
    boxes = torch.tensor([[25.0 * i, 0.0, 25.0 * i + 100.0, 10.0] for i in range(7)])
    scores = torch.linspace(0.9, 0.3, 7)
    labels = torch.zeros(7, dtype=torch.long)
    got = sinkhorn_batched_nms(boxes, scores, labels, 0.5, dense=dense, overlap="iou")
    assert got.keep.tolist() == batched_nms(boxes, scores, labels, 0.5).tolist() == [0, 2, 4, 6]


@pytest.mark.parametrize("dense", [False, True])
def test_fuse_power_pulls_the_fused_box_to_the_best_scored_duplicate(dense: bool) -> None:
    """Two duplicates of one object, the weaker shifted right: the fused box lies between them
    and moves towards the stronger as the power grows, ending on it."""
    boxes = torch.tensor([[0.0, 0.0, 40.0, 20.0], [4.0, 0.0, 44.0, 20.0]])
    scores = torch.tensor([0.9, 0.5])
    labels = torch.zeros(2, dtype=torch.long)
    lefts = []
    for power in (0.0, 2.0, 8.0, 64.0):
        got = sinkhorn_batched_nms(boxes, scores, labels, 0.5, dense=dense, fuse_power=power)
        assert got.keep.tolist() == [0]
        lefts.append(got.boxes[0, 0].item())
    assert 0.0 < lefts[-1] < lefts[2] < lefts[1] < lefts[0] < 4.0
    assert lefts[-1] < 1e-3


def test_negative_fuse_power_is_an_error() -> None:
    with pytest.raises(ValueError, match="fuse_power"):
        SinkhornNMS(fuse_power=-1.0)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"overlap": "iou"},
        {"overlap": "diou"},
        {"quality_range": float("inf")},
        {"fuse_power": 2.0},
        {"appearance_capacity": False},
    ],
)
def test_compiled_kernel_equals_tensor_ops(seed: int, options: dict) -> None:
    """The compiled CPU kernel and the tensor-op path: same kept set, same fused boxes."""
    boxes, scores, labels = detector_candidates(400, seed)
    emb = torch.randn(len(scores), 8, generator=torch.Generator().manual_seed(seed))
    for e in (None, emb):
        got = sinkhorn_batched_nms(boxes, scores, labels, 0.5, embeddings=e, backend="kernel",
                                   **options)  # fmt: skip
        ref = sinkhorn_batched_nms(boxes, scores, labels, 0.5, embeddings=e, backend="torch",
                                   **options)  # fmt: skip
        assert got.keep.tolist() == ref.keep.tolist()
        torch.testing.assert_close(got.scores, ref.scores)
        torch.testing.assert_close(got.boxes, ref.boxes, rtol=1e-4, atol=1e-3)


def test_auto_sends_cpu_inputs_and_small_gpu_inputs_to_the_compiled_kernel() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert uses_kernel("auto", cpu, 10**6)
    assert uses_kernel("auto", cuda, HOST_KERNEL_MAX)
    assert not uses_kernel("auto", cuda, HOST_KERNEL_MAX + 1)
    assert uses_kernel("kernel", cuda, 10**6) and not uses_kernel("torch", cpu, 10)


def test_unknown_backend_is_an_error() -> None:
    boxes, scores, labels = detector_candidates(20, 0)
    with pytest.raises(ValueError, match="backend"):
        sinkhorn_batched_nms(boxes, scores, labels, 0.5, backend="cuda-graph")
