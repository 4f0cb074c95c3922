"""SinkhornNMS solved on its edge list (the training path): the dense module's outputs and
gradients, and the edge-list Sinkhorn's hand-written reverse pass."""

from __future__ import annotations

import pytest
import torch
from candidates import detector_candidates

from fabricdet.ops import SinkhornNMS
from fabricdet.ops.edge_sinkhorn import _backward_ops, _forward_ops, edge_sinkhorn
from fabricdet.ops.sinkhorn_nms_edges import _edges, _edges_ops, _extents


def run(nms: SinkhornNMS, boxes, scores, labels, emb, mask=None):
    """Outputs and the gradients of a loss using every differentiable output."""
    inputs = [t.clone().requires_grad_(True) for t in (boxes, scores)]
    emb = None if emb is None else emb.clone().requires_grad_(True)
    out = nms(inputs[0], inputs[1], labels, emb, mask)
    loss = (out.keep_prob * torch.linspace(0.5, 1.5, out.keep_prob.shape[1])).sum()
    loss = loss + (out.boxes.sum(-1) * out.slot_mask).sum() * 1e-3 + out.survival.sum()
    loss.backward()
    grads = [t.grad for t in inputs] + ([] if emb is None else [emb.grad])
    return out, grads


@pytest.mark.parametrize("with_embeddings", [False, True])
@pytest.mark.parametrize(("n", "slots", "seed"), [(1000, 100, 0), (300, 300, 1)])
def test_edges_equal_dense_with_gradients(
    with_embeddings: bool, n: int, slots: int, seed: int
) -> None:
    boxes, scores, labels = detector_candidates(n, seed)
    emb = (
        torch.randn(n, 8, generator=torch.Generator().manual_seed(seed))
        if with_embeddings
        else None
    )
    batch = (boxes[None], scores[None], labels[None], None if emb is None else emb[None])
    dense, dense_grads = run(SinkhornNMS(max_slots=slots), *batch)
    edges, edge_grads = run(SinkhornNMS(max_slots=slots, edges=True), *batch)
    assert torch.equal(edges.keep, dense.keep)
    assert torch.equal(edges.slot_index, dense.slot_index)
    torch.testing.assert_close(edges.keep_prob, dense.keep_prob, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(edges.boxes, dense.boxes, atol=2e-3, rtol=1e-5)
    torch.testing.assert_close(edges.plan, dense.plan, atol=1e-5, rtol=1e-4)
    for got, ref in zip(edge_grads, dense_grads, strict=True):
        torch.testing.assert_close(got, ref, atol=1e-4 * ref.abs().max(), rtol=1e-3)


def test_edges_batched_with_padding_and_class_agnostic() -> None:
    g = torch.Generator().manual_seed(4)
    xy = torch.rand(2, 40, 2, generator=g) * 100
    boxes = torch.cat([xy, xy + 10 + torch.rand(2, 40, 2, generator=g) * 30], -1)
    scores = torch.rand(2, 40, generator=g)
    labels = torch.randint(0, 3, (2, 40), generator=g)
    emb = torch.randn(2, 40, 8, generator=g)
    mask = torch.ones(2, 40, dtype=torch.bool)
    mask[1, 25:] = False
    for agnostic, power, looks in ((False, 0.0, True), (True, 0.0, True), (False, 3.0, False)):
        options = {
            "max_slots": 30, "class_agnostic": agnostic, "fuse_power": power,
            "appearance_capacity": looks,
        }  # fmt: skip
        dense, dense_grads = run(SinkhornNMS(**options), boxes, scores, labels, emb, mask)
        edges, edge_grads = run(
            SinkhornNMS(edges=True, **options), boxes, scores, labels, emb, mask
        )
        assert torch.equal(edges.keep, dense.keep)
        torch.testing.assert_close(edges.keep_prob, dense.keep_prob, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(edges.survival, dense.survival, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(edges.boxes, dense.boxes, atol=1e-3, rtol=1e-5)
        for got, ref in zip(edge_grads, dense_grads, strict=True):
            torch.testing.assert_close(got, ref, atol=1e-4 * ref.abs().max(), rtol=1e-3)
        assert not edges.keep[1, 25:].any() and (edges.survival[1, 25:] == 0).all()


@pytest.mark.parametrize("edges", [False, True])
def test_no_hard_decode_keeps_the_soft_outputs(edges: bool) -> None:
    boxes, scores, labels = detector_candidates(200, 5)
    batch = (boxes[None], scores[None], labels[None])
    full = SinkhornNMS(max_slots=50, edges=edges)(*batch)
    soft = SinkhornNMS(max_slots=50, edges=edges, decode_iters=0)(*batch)
    assert soft.keep is None and full.keep is not None
    for name in ("keep_prob", "boxes", "survival", "plan"):
        assert torch.equal(getattr(soft, name), getattr(full, name))


def test_labels_beyond_num_classes_raise() -> None:
    boxes, scores, labels = detector_candidates(50, 7, num_classes=5)
    nms = SinkhornNMS(num_classes=4, edges=True)
    with pytest.raises(ValueError, match=r"labels must lie in 0 \.\. 3"):
        nms(boxes[None], scores[None], labels[None])


def test_gradcheck_through_edges() -> None:
    g = torch.Generator().manual_seed(2)
    xy = torch.rand(1, 6, 2, generator=g, dtype=torch.float64) * 20
    boxes = torch.cat([xy, xy + 15 + torch.rand(1, 6, 2, generator=g, dtype=torch.float64)], -1)
    boxes.requires_grad_(True)
    logits = torch.randn(1, 6, generator=g, dtype=torch.float64, requires_grad=True)
    emb = torch.randn(1, 6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([[0, 0, 1, 0, 1, 1]])
    nms = SinkhornNMS(eps=0.5, num_iters=30, max_slots=4, edges=True)

    def f(b: torch.Tensor, lg: torch.Tensor, e: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = nms(b, lg.sigmoid(), labels, e)
        return out.keep_prob, out.boxes, out.survival

    assert torch.autograd.gradcheck(f, (boxes, logits, emb), atol=1e-6)


def test_edge_search_loops_equal_tensor_ops() -> None:
    boxes, scores, labels = detector_candidates(600, 6)
    boxes, labels = boxes.view(2, 300, 4), labels.view(2, 300)
    mask = torch.ones(2, 300, dtype=torch.bool)
    mask[1, 250:] = False
    slot_index = scores.view(2, 300).argsort(1, descending=True)[:, :60]
    seeds = (slot_index + torch.tensor([[0], [300]])).flatten()
    slot_mask = torch.ones(2, 60, dtype=torch.bool)
    slot_mask[1, 50:] = False
    groups = torch.arange(2).unsqueeze(1) * 20 + labels
    for reach in (0.28, float("inf")):
        loops = _edges(boxes, groups, 40, mask, seeds, slot_mask, reach)  # CPU: compiled
        ops = _edges_ops(groups, 40, mask, seeds, slot_mask, *_extents(boxes, reach))
        pairs = [sorted((c * 1000 + s).tolist()) for c, s in (loops, ops)]
        assert pairs[0] == pairs[1] and len(pairs[0]) > 0


def unrolled_reference(kernel, a, b, rows, cols, iters):
    """The iterations written plainly, for autograd to differentiate."""
    v = torch.ones_like(b)
    for _ in range(iters):
        u = a / (torch.zeros_like(a).index_add(0, rows, kernel * v[cols]) + 1e-300)
        v = b / (torch.zeros_like(b).index_add(0, cols, kernel * u[rows]) + 1e-300)
    return u[rows] * kernel * v[cols]


def test_edge_sinkhorn_reverse_pass_equals_autograd() -> None:
    g = torch.Generator().manual_seed(0)
    num_rows, num_cols, e = 30, 12, 90
    rows = torch.cat(
        [torch.arange(num_rows), torch.randint(0, num_rows, (e - num_rows,), generator=g)]
    )
    cols = torch.cat(
        [torch.arange(num_cols), torch.randint(0, num_cols, (e - num_cols,), generator=g)]
    )
    kernel = torch.rand(e, generator=g, dtype=torch.float64) + 0.1
    a = torch.rand(num_rows, generator=g, dtype=torch.float64)
    b = torch.rand(num_cols, generator=g, dtype=torch.float64)
    b = b * a.sum() / b.sum()
    weights = torch.randn(e, generator=g, dtype=torch.float64)
    leaves = [t.clone().requires_grad_(True) for t in (kernel, a, b)]
    (unrolled_reference(*leaves, rows, cols, 7) * weights).sum().backward()
    expected = [t.grad for t in leaves]
    leaves = [t.clone().requires_grad_(True) for t in (kernel, a, b)]
    entries = edge_sinkhorn(*leaves, rows, cols, 7)  # CPU: the compiled loops
    torch.testing.assert_close(entries, unrolled_reference(kernel, a, b, rows, cols, 7))
    (entries * weights).sum().backward()
    for got, ref in zip((t.grad for t in leaves), expected, strict=True):
        torch.testing.assert_close(got, ref)
    # The tensor-op version (other devices) computes the same.
    tiny = torch.finfo(torch.float64).tiny
    scalings = _forward_ops(kernel, a, b, rows, cols, 7, tiny)
    for got, ref in zip(
        _backward_ops(weights, kernel, rows, cols, *scalings), expected, strict=True
    ):
        torch.testing.assert_close(got, ref)
