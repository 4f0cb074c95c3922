"""The set loss on SinkhornNMS' slots: matching and where its gradients go."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import box_iou

from fabricdet.models import ModelConfig, build_model
from fabricdet.models.set_loss import RANK_TEMPERATURE, SetCriterion, SetLossScores, slot_rank_loss
from fabricdet.ops import SinkhornNMS, SinkhornNMSOutput


def _slots(scores: torch.Tensor, keep_prob: torch.Tensor) -> SinkhornNMSOutput:
    """Three slots of one image: slot 0 on the object, slot 1 its duplicate, slot 2 elsewhere."""
    boxes = torch.tensor([[[10.0, 10, 50, 30], [12, 10, 52, 30], [100, 40, 120, 60]]])
    return SinkhornNMSOutput(
        slot_index=torch.arange(3).unsqueeze(0),
        slot_mask=torch.ones(1, 3, dtype=torch.bool),
        keep_prob=keep_prob,
        keep=None,
        boxes=boxes,
        scores=scores,
        labels=torch.zeros(1, 3, dtype=torch.long),
        survival=keep_prob.detach(),
        plan=torch.zeros(1, 4, 4),
    )


@pytest.mark.parametrize("which", ["all", "matched", "none"])
def test_the_keep_loss_trains_the_scores_it_is_told_to(which: SetLossScores) -> None:
    scores = torch.tensor([[0.8, 0.7, 0.6]], requires_grad=True)
    keep_prob = torch.tensor([[0.9, 0.8, 0.9]], requires_grad=True)
    target = {"boxes": torch.tensor([[10.0, 10, 50, 30]]), "labels": torch.tensor([0])}
    losses = SetCriterion(scores=which)(_slots(scores, keep_prob), [target])
    losses["set_keep"].backward()
    assert keep_prob.grad is not None
    # Keep probabilities are trained either way: the matched slot's up, the duplicate's and the
    # lone false positive's down.
    assert keep_prob.grad[0, 0] < 0 and (keep_prob.grad[0, 1:] > 0).all()
    if which == "none":
        assert scores.grad is None
    else:
        assert scores.grad is not None and scores.grad[0, 0] < 0
        if which == "matched":
            assert (scores.grad[0, 1:] == 0).all()
        else:
            assert (scores.grad[0, 1:] > 0).all()


def test_the_keep_loss_runs_outside_autocast(monkeypatch: pytest.MonkeyPatch) -> None:
    # CUDA autocast raises on binary_cross_entropy (the default AMP training crashed at its
    # first set loss); CPU autocast lets it pass, so check the state the loss runs in.
    seen: list[bool] = []
    bce = torch.nn.functional.binary_cross_entropy

    def recording_bce(*args: object, **kwargs: object) -> torch.Tensor:
        seen.append(torch.is_autocast_enabled("cpu"))
        return bce(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(torch.nn.functional, "binary_cross_entropy", recording_bce)
    scores = torch.tensor([[0.8, 0.7, 0.6]], requires_grad=True)
    target = {"boxes": torch.tensor([[10.0, 10, 50, 30]]), "labels": torch.tensor([0])}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = SetCriterion()(_slots(scores, torch.full((1, 3), 0.9)), [target])
    assert seen == [False]
    assert losses["set_keep"].dtype == torch.float32 and losses["set_keep"].isfinite()


def _members() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One object and four candidates in slot 0: three of its duplicates, from best to worst
    placed, and a box on a neighbouring object that the plan merged into the slot."""
    gt = torch.tensor([[10.0, 10, 50, 30], [54, 10, 94, 30]])
    boxes = torch.tensor([[10.0, 10, 50, 30], [14, 10, 54, 30], [18, 12, 58, 32], [54, 10, 94, 30]])
    plan = torch.tensor([[0.8, 0.0], [0.6, 0.0], [0.5, 0.0], [0.3, 0.5]])
    return gt, boxes, plan


def test_the_ranking_term_raises_the_best_placed_duplicate_and_ignores_the_neighbour() -> None:
    gt, boxes, plan = _members()
    scores = torch.full((4,), 0.6, requires_grad=True)
    mask = torch.ones(4, dtype=torch.bool)
    loss = slot_rank_loss(plan, boxes, scores, mask, torch.tensor([0, -1]), gt, power=4.0)
    loss.backward()
    assert scores.grad is not None
    assert loss > 0 and scores.grad[0] < 0 < scores.grad[2]
    assert scores.grad[3] == 0  # the neighbour's box is not a duplicate of this object


def test_the_ranking_term_is_at_rest_on_scores_ordered_by_placement() -> None:
    gt, boxes, plan = _members()
    iou = box_iou(boxes, gt[:1]).squeeze(1)
    # its optimum: log s = IoU / (power T) + const
    scores = ((iou - 1) / (4.0 * RANK_TEMPERATURE)).exp().requires_grad_()
    mask = torch.ones(4, dtype=torch.bool)
    loss = slot_rank_loss(plan, boxes, scores, mask, torch.tensor([0, -1]), gt, power=4.0)
    loss.backward()
    assert scores.grad is not None
    assert loss.abs() < 1e-6 and scores.grad.abs().max() < 1e-5


def test_the_ranking_term_has_nothing_to_rank_without_a_matched_slot_of_two_members() -> None:
    gt, boxes, plan = _members()
    scores = torch.full((4,), 0.6, requires_grad=True)
    mask = torch.tensor([True, False, False, True])  # one duplicate left
    for slots in (torch.tensor([0, -1]), torch.tensor([-1, -1])):
        loss = slot_rank_loss(plan, boxes, scores, mask, slots, gt, power=4.0)
        assert loss == 0


def test_the_criterion_adds_the_ranking_term_only_when_weighted() -> None:
    gt, boxes, plan = _members()
    scores = torch.tensor([[0.8, 0.7, 0.6]])
    keep_prob = torch.tensor([[0.9, 0.8, 0.9]])
    out = _slots(scores, keep_prob)._replace(plan=torch.zeros(1, 5, 4))
    out.plan[0, :4, :2] = plan
    target = {"boxes": gt[:1], "labels": torch.tensor([0])}
    candidates = (boxes[None], torch.full((1, 4), 0.6), torch.ones(1, 4, dtype=torch.bool))
    assert "set_rank" not in SetCriterion()(out, [target], candidates)
    ranked = SetCriterion(rank_weight=2.0)(out, [target], candidates)
    assert ranked["set_rank"] > 0
    with pytest.raises(ValueError, match="needs the candidates"):
        SetCriterion(rank_weight=2.0)(out, [target])


def test_the_ranking_term_skips_a_slot_whose_boxes_all_lie_closer_to_another_object() -> None:
    # object 0 matched to slot 1, whose one member overlaps object 1 best: nothing to rank,
    # and no NaN gradient from a softmax over no members
    gt, boxes, plan = _members()
    scores = torch.full((4,), 0.6, requires_grad=True)
    mask = torch.ones(4, dtype=torch.bool)
    loss = slot_rank_loss(plan, boxes, scores, mask, torch.tensor([1, 0]), gt, power=4.0)
    loss.backward()
    assert scores.grad is not None and torch.isfinite(scores.grad).all()


@pytest.mark.parametrize("fused", [True, False])
def test_the_box_term_trains_the_fused_boxes_or_only_the_seeds(fused: bool) -> None:
    # two duplicates of one object and a lone box elsewhere: one slot per object
    boxes = torch.tensor(
        [[[10.0, 10.0, 50.0, 30.0], [12.0, 11.0, 52.0, 31.0], [100.0, 10.0, 140.0, 30.0]]],
        requires_grad=True,
    )
    scores = torch.tensor([[0.9, 0.6, 0.8]])
    labels = torch.zeros(1, 3, dtype=torch.long)
    nms = SinkhornNMS(iou_threshold=0.5, eps=0.5, fuse_boxes=fused, decode_iters=0)
    out = nms(boxes, scores, labels, mask=torch.ones(1, 3, dtype=torch.bool))
    target = {"boxes": torch.tensor([[11.0, 12.0, 51.0, 33.0]]), "labels": torch.tensor([0])}
    SetCriterion()(out, [target])["set_box"].backward()
    grad = boxes.grad[0].abs().sum(1)  # type: ignore[union-attr]
    moved = grad > 1e-6 * grad.max()  # the soft plan leaves the far box a trace of mass
    # the fused box averages the object's two duplicates; the seed is the better-scored one
    assert moved.tolist() == ([True, True, False] if fused else [True, False, False])


def test_the_detector_trains_the_set_loss_on_the_boxes_it_is_told_to() -> None:
    for fused in (True, False):
        cfg = ModelConfig(width=8, fpn_channels=16, embed_dim=8, set_loss_fused_boxes=fused)
        assert build_model(cfg, num_classes=2).sinkhorn.fuse_boxes is fused
