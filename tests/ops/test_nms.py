"""The NMS suite and SinkhornNMS: greedy equivalence, invariances, edge cases, gradients."""

from __future__ import annotations

import pytest
import torch
import torchvision
from hypothesis import given
from hypothesis import strategies as st

from fabricdet.ops import NMS_METHODS, SinkhornNMS, batched_nms
from fabricdet.ops.boxes import pairwise_iou


@st.composite
def separated_clusters(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Clusters of boxes overlapping by IoU > 0.7 inside, 0 across; thin and long boxes too."""
    boxes, labels = [], []
    for c in range(draw(st.integers(1, 6))):
        w = draw(st.floats(4, 300))
        h = draw(st.floats(4, 300))
        cx, cy = 1000.0 * (c % 3) + 500, 1000.0 * (c // 3) + 500
        for _ in range(draw(st.integers(1, 6))):
            # each edge moves by at most 2% of the box size: pairwise IoU stays above 0.85
            jit = [draw(st.floats(-0.02, 0.02)) for _ in range(4)]
            boxes.append(
                [cx - w / 2 + jit[0] * w, cy - h / 2 + jit[1] * h,
                 cx + w / 2 + jit[2] * w, cy + h / 2 + jit[3] * h]
            )  # fmt: skip
            labels.append(draw(st.integers(0, 2)))
    n = len(boxes)
    ranks = draw(st.permutations(list(range(n))))
    scores = torch.tensor([0.1 + 0.9 * (r + 1) / n for r in ranks], dtype=torch.float64)
    return torch.tensor(boxes, dtype=torch.float64), scores, torch.tensor(labels)


@given(separated_clusters())
def test_sinkhorn_keeps_what_torchvision_keeps(case) -> None:
    boxes, scores, labels = case
    iou = pairwise_iou(boxes, boxes)
    same_cluster = iou > 0
    assert (iou[same_cluster] > 0.7).all()  # the premise of the property
    expected = torchvision.ops.batched_nms(boxes, scores, labels, 0.5)
    got = batched_nms(boxes, scores, labels, 0.5, method="sinkhorn")
    assert got.tolist() == expected.tolist()


@st.composite
def random_detections(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    n = draw(st.integers(0, 25))
    xy = [[draw(st.integers(0, 200)), draw(st.integers(0, 200))] for _ in range(n)]
    wh = [[draw(st.integers(1, 80)), draw(st.integers(1, 80))] for _ in range(n)]
    boxes = torch.tensor(
        [[x, y, x + w, y + h] for (x, y), (w, h) in zip(xy, wh, strict=False)], dtype=torch.float64
    )
    ranks = draw(st.permutations(list(range(n))))
    scores = torch.tensor([0.1 + 0.9 * (r + 1) / max(n, 1) for r in ranks], dtype=torch.float64)
    labels = torch.tensor([draw(st.integers(0, 1)) for _ in range(n)], dtype=torch.long)
    return boxes.reshape(n, 4), scores, labels


@pytest.mark.parametrize("method", NMS_METHODS)
@given(case=random_detections(), data=st.data())
def test_permutation_invariance(method: str, case, data: st.DataObject) -> None:
    boxes, scores, labels = case
    perm = torch.tensor(data.draw(st.permutations(list(range(len(scores))))), dtype=torch.long)
    keep = batched_nms(boxes, scores, labels, 0.5, method=method)
    keep_perm = batched_nms(boxes[perm], scores[perm], labels[perm], 0.5, method=method)
    assert perm[keep_perm].tolist() == keep.tolist()


@pytest.mark.parametrize("method", NMS_METHODS)
@given(case=random_detections(), shift=st.integers(-500, 500), log2_scale=st.integers(-3, 3))
def test_translation_and_scale_invariance(method: str, case, shift: int, log2_scale: int) -> None:
    boxes, scores, labels = case
    moved = boxes * 2.0**log2_scale + shift  # powers of two keep the arithmetic exact
    keep = batched_nms(boxes, scores, labels, 0.5, method=method)
    assert batched_nms(moved, scores, labels, 0.5, method=method).tolist() == keep.tolist()


@pytest.mark.parametrize("method", NMS_METHODS)
def test_edge_cases(method: str) -> None:
    empty = batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long), 0.5,
                        method=method)  # fmt: skip
    assert empty.shape == (0,) and empty.dtype == torch.long
    one = torch.tensor([[0.0, 0.0, 10.0, 3.0]])
    assert batched_nms(one, torch.tensor([0.9]), torch.zeros(1, dtype=torch.long), 0.5,
                       method=method).tolist() == [0]  # fmt: skip
    same = one.repeat(4, 1)
    kept = batched_nms(same, torch.tensor([0.5, 0.9, 0.7, 0.6]), torch.zeros(4, dtype=torch.long),
                       0.5, method=method)  # fmt: skip
    assert kept[0].item() == 1  # the best of identical boxes comes first
    if method in ("greedy", "diou", "wbf", "sinkhorn"):
        assert kept.tolist() == [1]
    zero_area = torch.tensor([[5.0, 5.0, 5.0, 5.0], [5.0, 5.0, 5.0, 9.0], [0.0, 0.0, 4.0, 4.0]])
    kept = batched_nms(zero_area, torch.tensor([0.9, 0.8, 0.7]), torch.zeros(3, dtype=torch.long),
                       0.5, method=method)  # fmt: skip
    assert kept.tolist()[0] == 0 and len(kept) >= 1


@pytest.mark.parametrize("method", NMS_METHODS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_input_raises(method: str, bad: float) -> None:
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0]])
    scores = torch.tensor([0.9, 0.8])
    labels = torch.zeros(2, dtype=torch.long)
    with pytest.raises(ValueError, match="scores contains NaN or inf"):
        batched_nms(boxes, torch.tensor([bad, 0.8]), labels, 0.5, method=method)
    boxes[1, 2] = bad
    with pytest.raises(ValueError, match="boxes contains NaN or inf"):
        batched_nms(boxes, scores, labels, 0.5, method=method)


def test_unknown_method() -> None:
    with pytest.raises(ValueError, match="unknown NMS method 'fast'"):
        batched_nms(torch.zeros(1, 4), torch.ones(1), torch.zeros(1, dtype=torch.long), 0.5,
                    method="fast")  # fmt: skip


def test_outputs_sorted_and_details_available() -> None:
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(60, 2, generator=g) * 100
    boxes = torch.cat([xy, xy + 20 + torch.rand(60, 2, generator=g) * 10], 1)
    scores = torch.rand(60, generator=g)
    labels = torch.randint(0, 3, (60,), generator=g)
    for method in NMS_METHODS:
        res = batched_nms(boxes, scores, labels, 0.5, method=method, return_result=True)
        assert (res.scores[:-1] >= res.scores[1:]).all(), method
        assert res.boxes.shape == (len(res.keep), 4)
    soft = batched_nms(boxes, scores, labels, 0.5, method="soft", return_result=True)
    assert (soft.scores <= scores[soft.keep] + 1e-6).all()  # rescored downwards
    assert (soft.scores < scores[soft.keep] - 1e-3).any()
    wbf = batched_nms(boxes, scores, labels, 0.5, method="wbf", return_result=True)
    assert not torch.allclose(wbf.boxes, boxes[wbf.keep])  # fused


def test_soft_nms_linear_by_hand() -> None:
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 5.0], [20.0, 0, 30, 10]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    res = batched_nms(boxes, scores, torch.zeros(3, dtype=torch.long), 0.3, method="soft",
                      kernel="linear", return_result=True)  # fmt: skip
    # IoU(box0, box1) = 50 / 100 = 0.5 > 0.3: 0.8 * (1 - 0.5) = 0.4
    assert res.keep.tolist() == [0, 2, 1]
    torch.testing.assert_close(res.scores, torch.tensor([0.9, 0.7, 0.4]))


def test_matrix_and_diou_by_hand() -> None:
    # Two boxes with IoU 0.6 and equal centres: DIoU = IoU, suppressed. A third box with IoU
    # 0.55 to the first but a distant centre: DIoU < 0.5, kept by DIoU-NMS, not by greedy.
    boxes = torch.tensor([[0.0, 0, 10, 10], [2.0, 2, 8, 8], [0.0, 0, 10, 5.5]])
    boxes[1] = torch.tensor([0.0, 0.0, 10.0, 6.0])
    scores = torch.tensor([0.9, 0.8, 0.7])
    labels = torch.zeros(3, dtype=torch.long)
    iou = pairwise_iou(boxes, boxes)
    assert iou[0, 2] > 0.5
    greedy = batched_nms(boxes, scores, labels, 0.5, method="greedy")
    diou = batched_nms(boxes, scores, labels, 0.5, method="diou")
    assert greedy.tolist() == [0]
    assert diou.tolist() == [0] or 2 in diou.tolist()
    matrix = batched_nms(boxes, scores, labels, 0.5, method="matrix", return_result=True,
                         sigma=2.0, score_threshold=0.0)  # fmt: skip
    # Box 1: decay exp(-2 * iou01^2) since box 0 is not overlapped by a better box.
    expected = 0.8 * torch.exp(-2 * iou[0, 1] ** 2)
    torch.testing.assert_close(matrix.scores[matrix.keep == 1][0], expected)


def test_adjacent_parallel_threads_need_embeddings() -> None:
    # Two 1000x6 px threads one pixel apart (IoU 0.71): two defects, not duplicates.
    boxes = torch.tensor([[0.0, 100.0, 1000.0, 106.0], [0.0, 101.0, 1000.0, 107.0]])
    scores = torch.tensor([0.9, 0.8])
    labels = torch.zeros(2, dtype=torch.long)
    assert len(torchvision.ops.batched_nms(boxes, scores, labels, 0.5)) == 1
    embeddings = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    out = SinkhornNMS()(boxes, scores, labels, embeddings)
    assert out.keep.sum() == 2
    assert (out.keep_prob > 0.9).all()
    same = SinkhornNMS()(boxes, scores, labels, embeddings[[0, 0]])
    assert same.keep.sum() == 1  # same appearance: duplicates after all


def test_thin_duplicates_merged_where_iou_fails() -> None:
    # Two predictions of one 1000x3 px thread, offset 2 px: IoU 0.2, greedy keeps both.
    boxes = torch.tensor([[0.0, 100.0, 1000.0, 103.0], [5.0, 102.0, 1000.0, 105.0]])
    scores = torch.tensor([0.9, 0.8])
    labels = torch.zeros(2, dtype=torch.long)
    assert len(batched_nms(boxes, scores, labels, 0.5, method="greedy")) == 2
    assert batched_nms(boxes, scores, labels, 0.5, method="sinkhorn").tolist() == [0]


@pytest.mark.parametrize("length", [200.0, 1000.0, 2400.0])
def test_parallel_threads_apart_stay_apart(length: float) -> None:
    """Two 3 px threads 12 px apart (two defects, same class, no embeddings to tell them
    apart): kept as greedy NMS keeps them, whatever their length."""
    boxes = torch.tensor([[0.0, 100.0, length, 103.0], [0.0, 112.0, length, 115.0]])
    scores = torch.tensor([0.9, 0.8])
    labels = torch.zeros(2, dtype=torch.long)
    for dense in (False, True):
        kept = batched_nms(boxes, scores, labels, 0.5, method="sinkhorn", dense=dense)
        assert kept.tolist() == [0, 1]


def test_module_batched_equals_looped_and_padding() -> None:
    g = torch.Generator().manual_seed(1)
    xy = torch.rand(2, 30, 2, generator=g) * 100
    boxes = torch.cat([xy, xy + 10 + torch.rand(2, 30, 2, generator=g) * 30], -1)
    scores = torch.rand(2, 30, generator=g)
    labels = torch.randint(0, 2, (2, 30), generator=g)
    emb = torch.randn(2, 30, 8, generator=g)
    mask = torch.ones(2, 30, dtype=torch.bool)
    mask[1, 20:] = False
    nms = SinkhornNMS()
    out = nms(boxes, scores, labels, emb, mask)
    for i, n in enumerate([30, 20]):
        single = nms(boxes[i, :n], scores[i, :n], labels[i, :n], emb[i, :n])
        torch.testing.assert_close(out.keep_prob[i, :n], single.keep_prob[0], atol=1e-5, rtol=1e-4)
        assert torch.equal(out.keep[i, :n], single.keep[0])
        torch.testing.assert_close(out.boxes[i, :n], single.boxes[0], atol=1e-3, rtol=1e-5)
    assert not out.keep[1, 20:].any() and not out.slot_mask[1, 20:].any()
    assert (out.survival[1, 20:] == 0).all()


@pytest.mark.parametrize("grad", ["unrolled", "implicit"])
def test_gradcheck_through_sinkhorn_nms(grad: str) -> None:
    g = torch.Generator().manual_seed(2)
    xy = torch.rand(1, 5, 2, generator=g, dtype=torch.float64) * 20
    boxes = torch.cat([xy, xy + 15 + torch.rand(1, 5, 2, generator=g, dtype=torch.float64)], -1)
    boxes.requires_grad_(True)
    logits = torch.randn(1, 5, generator=g, dtype=torch.float64, requires_grad=True)
    emb = torch.randn(1, 5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    # implicit gradients are exact at convergence: give that case enough iterations
    iters = 30 if grad == "unrolled" else 1000
    nms = SinkhornNMS(eps=0.5, num_iters=iters, grad=grad, solver_mode="log")

    def f(b: torch.Tensor, lg: torch.Tensor, e: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = nms(b, lg.sigmoid(), None, e)
        return out.keep_prob, out.boxes, out.survival

    if grad == "unrolled":
        assert torch.autograd.gradcheck(f, (boxes, logits, emb), atol=1e-6)
    else:  # implicit: exact for the converged plan, so compare with unrolled at convergence
        outs = f(boxes, logits, emb)
        sum(o.sum() for o in outs).backward()
        implicit = [t.grad.clone() for t in (boxes, logits, emb)]
        for t in (boxes, logits, emb):
            t.grad = None
        nms.grad = "unrolled"
        nms.num_iters = 1000
        sum(o.sum() for o in f(boxes, logits, emb)).backward()
        for got, ref in zip(implicit, (boxes.grad, logits.grad, emb.grad), strict=False):
            torch.testing.assert_close(got, ref, atol=1e-6, rtol=1e-4)


def test_exports_with_static_shapes() -> None:
    class Wrapper(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.nms = SinkhornNMS(num_classes=3)

        def forward(self, b, s, lab, e):
            out = self.nms(b, s, lab, e)
            return out.keep, out.boxes, out.scores

    g = torch.Generator().manual_seed(3)
    xy = torch.rand(2, 40, 2, generator=g) * 100
    boxes = torch.cat([xy, xy + 20], -1)
    labels = torch.randint(0, 3, (2, 40), generator=g)
    args = (boxes, torch.rand(2, 40, generator=g), labels, torch.randn(2, 40, 8, generator=g))
    exported = torch.export.export(Wrapper(), args)  # fails on host syncs / dynamic shapes
    keep, boxes, _ = exported.module()(*args)
    ref_keep, ref_boxes, _ = Wrapper()(*args)
    assert torch.equal(keep, ref_keep)
    torch.testing.assert_close(boxes, ref_boxes)
