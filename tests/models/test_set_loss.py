"""The set loss on SinkhornNMS' slots: matching and where its gradients go."""

from __future__ import annotations

import pytest
import torch

from fabricdet.models.set_loss import SetCriterion, SetLossScores
from fabricdet.ops import SinkhornNMSOutput


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
