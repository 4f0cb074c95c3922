"""SinkhornNMS' training-gradient options: the plan's gradient scale and the spatial term's
gradient, on both the dense and the edge-list solve."""

from __future__ import annotations

import pytest
import torch
from candidates import detector_candidates

from fabricdet.ops import SinkhornNMS


def keep_grads(nms: SinkhornNMS, n: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients on boxes and scores of a loss on the keep probabilities alone (zeros where
    none reaches them)."""
    boxes, scores, labels = detector_candidates(n, 3)
    boxes.requires_grad_(True)
    scores.requires_grad_(True)
    out = nms(boxes, scores, labels)
    (out.keep_prob * torch.linspace(0.5, 1.5, out.keep_prob.shape[1])).sum().backward()
    grads = [torch.zeros_like(t) if t.grad is None else t.grad for t in (boxes, scores)]
    return grads[0], grads[1]


@pytest.mark.parametrize("edges", [False, True])
def test_plan_grad_scale_scales_the_gradient_through_the_plan(edges: bool) -> None:
    options = {"max_slots": 50, "edges": edges, "fuse_boxes": False, "eps": 0.5}
    box_ref, score_ref = keep_grads(SinkhornNMS(**options))
    box_half, score_half = keep_grads(SinkhornNMS(**options, plan_grad_scale=0.5))
    assert box_ref.abs().sum() > 0
    torch.testing.assert_close(box_half, 0.5 * box_ref)
    # keep_prob divides the plan by the seed's score: that direct part is not scaled
    assert not torch.allclose(score_half, 0.5 * score_ref)
    assert not torch.allclose(score_half, score_ref)


@pytest.mark.parametrize("edges", [False, True])
def test_at_plan_grad_scale_zero_the_kept_fractions_are_constants(edges: bool) -> None:
    options = {"max_slots": 50, "edges": edges, "fuse_boxes": False, "eps": 0.5}
    boxes, scores, labels = detector_candidates(200, 3)
    boxes.requires_grad_(True)
    scores.requires_grad_(True)
    out = SinkhornNMS(**options, plan_grad_scale=0.0)(boxes, scores, labels)
    assert not out.keep_prob.requires_grad and not out.survival.requires_grad
    # the slots' own scores still carry their gradient
    out.scores.sum().backward()
    assert scores.grad is not None and scores.grad.abs().sum() > 0


@pytest.mark.parametrize("edges", [False, True])
def test_without_spatial_grad_the_plan_cannot_move_boxes(edges: bool) -> None:
    options = {"max_slots": 50, "edges": edges, "eps": 0.5}
    box_grad, _ = keep_grads(SinkhornNMS(**options, fuse_boxes=False, spatial_grad=False))
    assert box_grad.abs().sum() == 0
    # the fused boxes still train the boxes they average
    boxes, scores, labels = detector_candidates(200, 3)
    boxes.requires_grad_(True)
    out = SinkhornNMS(**options, spatial_grad=False)(boxes, scores, labels)
    out.boxes.sum().backward()
    assert boxes.grad is not None and boxes.grad.abs().sum() > 0


def test_grad_options_leave_the_outputs_unchanged() -> None:
    boxes, scores, labels = detector_candidates(200, 3)
    ref = SinkhornNMS(max_slots=50)(boxes, scores, labels)
    out = SinkhornNMS(max_slots=50, plan_grad_scale=0.1, spatial_grad=False)(boxes, scores, labels)
    assert torch.equal(out.keep, ref.keep)
    assert torch.equal(out.keep_prob, ref.keep_prob)
    assert torch.equal(out.boxes, ref.boxes)
