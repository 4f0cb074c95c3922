"""The box-quality head: its targets, its jitter, and what it learns (its place in the
detector: tests/models/test_detector.py)."""

from __future__ import annotations

import torch
from torchvision.ops import box_iou

from fabricdet.models.box_quality import (
    BoxQualityHead,
    box_quality_loss,
    box_quality_targets,
    jittered_boxes,
)


def test_jitter_moves_each_side_by_at_most_its_share_of_the_size() -> None:
    torch.manual_seed(0)
    boxes = torch.tensor([[10.0, 20.0, 50.0, 24.0], [0.0, 0.0, 300.0, 2.0]])
    out = jittered_boxes(boxes, copies=50, scale=0.3)
    assert out.shape == (100, 4)
    assert (out[:, 2:] >= out[:, :2]).all()
    source = boxes.repeat_interleave(50, 0)
    size = (source[:, 2:] - source[:, :2]).repeat(1, 2)
    assert ((out - source).abs() <= 0.3 * size + 1e-5).all()
    iou = box_iou(out, boxes).max(1).values
    assert iou.min() > 0.2 and iou.max() > 0.8  # a spread of placements, none lost


def test_targets_are_the_best_iou_with_an_object_of_the_same_class() -> None:
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 0.0, 30.0, 10.0]])
    gt_labels = torch.tensor([0, 1])
    boxes = torch.tensor([[0.0, 0.0, 10.0, 5.0], [20.0, 0.0, 30.0, 10.0], [0.0, 0.0, 10.0, 10.0]])
    labels = torch.tensor([0, 1, 1])
    iou = box_quality_targets(boxes, labels, gt, gt_labels)
    torch.testing.assert_close(iou, torch.tensor([0.5, 1.0, 0.0]))  # class 1 has no box at 0
    empty = box_quality_targets(boxes, labels, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    assert torch.equal(empty, torch.zeros(3))


def test_the_pooled_region_holds_the_box_and_its_edges() -> None:
    head = BoxQualityHead(8, stride=4, context=0.25)
    boxes = torch.tensor([[40.0, 40.0, 80.0, 42.0]])
    region = head.regions(boxes)
    torch.testing.assert_close(region, torch.tensor([[30.0, 36.0, 90.0, 46.0]]))


def test_the_head_learns_to_rank_placements_on_a_bar() -> None:
    # A bright bar on a dark map: which of two boxes lies better on it is visible only in the
    # features inside and around each box, the case the dense head cannot see.
    torch.manual_seed(0)
    feature = torch.zeros(1, 4, 32, 64)
    feature[:, :, 14:18, 8:48] = 1.0  # the bar, stride 4: x 32..192, y 56..72
    gt = torch.tensor([[32.0, 56.0, 192.0, 72.0]])
    head = BoxQualityHead(4, stride=4, hidden=32)
    opt = torch.optim.Adam(head.parameters(), lr=3e-3)
    for _ in range(150):
        boxes = jittered_boxes(gt, copies=32, scale=0.5)
        iou = box_iou(boxes, gt)[:, 0]
        loss = box_quality_loss(head(feature, boxes, torch.zeros(32, dtype=torch.long)), iou)
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.manual_seed(1)
    boxes = jittered_boxes(gt, copies=200, scale=0.5)
    iou = box_iou(boxes, gt)[:, 0]
    with torch.no_grad():
        pred = head(feature, boxes, torch.zeros(200, dtype=torch.long)).sigmoid()
    # pairs whose IoUs differ by more than 0.1 are ordered right far more often than chance
    i, j = torch.triu_indices(200, 200, 1)
    far = (iou[i] - iou[j]).abs() > 0.1
    right = ((pred[i] - pred[j]) * (iou[i] - iou[j]) > 0)[far].float().mean()
    assert right > 0.8
