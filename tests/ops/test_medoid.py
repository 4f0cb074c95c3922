"""Cluster medoids: the rule against a plain loop, and what it picks on clusters built by hand."""

from __future__ import annotations

import pytest
import torch
import torchvision

from fabricdet.ops.medoid import cluster_members, medoid_boxes, medoid_index


def _random_candidates(
    seed: int, n: int, dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(6, 2, generator=g) * 200
    pick = torch.randint(0, 6, (n,), generator=g)
    xy = centres[pick] + torch.randn(n, 2, generator=g) * 4
    wh = 10 + torch.rand(n, 2, generator=g) * 30
    boxes = torch.cat([xy - wh / 2, xy + wh / 2], 1).to(dtype)
    return boxes, torch.rand(n, generator=g).to(dtype), torch.randint(0, 2, (n,), generator=g)


def _loop(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, keep: torch.Tensor,
          threshold: float, power: float) -> torch.Tensor:  # fmt: skip
    iou = torchvision.ops.box_iou(boxes, boxes)
    out = []
    for r in keep.tolist():
        members = [
            i for i in range(len(boxes)) if labels[i] == labels[r] and iou[r, i] >= threshold
        ]
        agreement = [sum(scores[i] ** power * iou[i, k] for i in members) for k in members]
        out.append(boxes[members[max(range(len(members)), key=agreement.__getitem__)]])
    return torch.stack(out)


@pytest.mark.parametrize("power", [0.0, 1.0, 2.0])
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_medoid_boxes_match_the_definition(seed: int, power: float, dtype: torch.dtype) -> None:
    """float32 on CPU runs the compiled loop (medoid_kernel), float64 the tensor ops."""
    boxes, scores, labels = _random_candidates(seed, 120, dtype)
    keep = torchvision.ops.batched_nms(boxes, scores, labels, 0.5)
    out = medoid_boxes(boxes, scores, labels, keep, 0.5, power)
    torch.testing.assert_close(out, _loop(boxes, scores, labels, keep, 0.5, power))
    assert not torch.equal(out, boxes[keep])  # these clusters do move some boxes


def test_medoid_is_the_box_the_duplicates_agree_on() -> None:
    # The best-scored duplicate sits off to the left; four others spread around x = 0.
    boxes = torch.tensor(
        [[-8, 0, 92, 20], [-4, 0, 96, 20], [-1, 0, 99, 20], [2, 0, 102, 20], [5, 0, 105, 20]],
        dtype=torch.float64,
    )
    scores = torch.tensor([0.9, 0.5, 0.5, 0.5, 0.5], dtype=torch.float64)
    labels = torch.zeros(5, dtype=torch.int64)
    keep = torch.tensor([0])
    torch.testing.assert_close(medoid_boxes(boxes, scores, labels, keep, 0.5, 1.0), boxes[[2]])
    # a large power trusts the best-scored box alone
    torch.testing.assert_close(medoid_boxes(boxes, scores, labels, keep, 0.5, 8.0), boxes[[0]])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_zero_area_kept_box_keeps_itself(dtype: torch.dtype) -> None:
    """A zero-area box overlaps nothing, itself included: its cluster is empty."""
    boxes = torch.tensor([[0, 0, 10, 10], [5, 5, 5, 9], [1, 0, 11, 10]], dtype=dtype)
    scores = torch.tensor([0.9, 0.8, 0.7], dtype=dtype)
    keep = torch.tensor([0, 1])
    out = medoid_boxes(boxes, scores, torch.zeros(3, dtype=torch.int64), keep, 0.5, 0.0)
    assert torch.equal(out[1], boxes[1])
    assert torch.equal(medoid_boxes(boxes, scores, torch.zeros(3, dtype=torch.int64), keep[1:],
                                    0.5), boxes[[1]])  # fmt: skip


def test_classes_and_singletons_keep_their_own_boxes() -> None:
    boxes = torch.tensor([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8, 0.7])
    labels = torch.tensor([0, 1, 0])  # the near duplicate belongs to another class
    keep = torch.tensor([0, 2])
    assert torch.equal(medoid_boxes(boxes, scores, labels, keep, 0.5), boxes[keep])
    assert medoid_boxes(boxes, scores, labels, keep[:0], 0.5).shape == (0, 4)
    with pytest.raises(ValueError, match="power"):
        medoid_boxes(boxes, scores, labels, keep, 0.5, -1.0)


def test_batched_medoids_equal_each_image_alone() -> None:
    items = [_random_candidates(seed, 80) for seed in (5, 6)]
    boxes = torch.stack([b for b, _, _ in items])
    weights = torch.stack([s for _, s, _ in items])
    labels = torch.stack([lab for _, _, lab in items])
    centres, centre_labels = boxes[:, :10], labels[:, :10]
    member = cluster_members(centres, centre_labels, boxes, labels, 0.5)
    batched = medoid_index(member, boxes, weights)
    for b in range(2):
        alone = medoid_index(member[b], boxes[b], weights[b])
        assert torch.equal(batched[b], alone)
