"""Training through SinkhornNMS: finite losses, and gradients that reach the host's heads
through the Sinkhorn plan."""

from __future__ import annotations

import math

import pytest
import torch
from adapter_testdata import tiny_batch, tiny_host
from torch import Tensor, nn

from fabricdet.models.adapters import with_sinkhorn_nms

ARCHS = ("fcos", "retinanet", "fasterrcnn", "maskrcnn")


def _cls_weight(host: nn.Module, where: str = "box") -> Tensor:
    """The weight of the layer that outputs the classification logits at ``where``."""
    if hasattr(host, "head"):  # FCOS, RetinaNet
        return host.head.classification_head.cls_logits.weight
    if where == "rpn":
        return host.rpn.head.cls_logits.weight
    return host.roi_heads.box_predictor.cls_score.weight


def _box_weight(host: nn.Module) -> Tensor:
    if hasattr(host, "head"):
        return host.head.regression_head.bbox_reg.weight
    return host.roi_heads.box_predictor.bbox_pred.weight


@pytest.mark.parametrize("arch", ARCHS)
def test_trains_a_few_steps_with_finite_losses(arch: str) -> None:
    host = tiny_host(arch)
    model = with_sinkhorn_nms(host).train()
    images, targets = tiny_batch(arch)
    native = set(host.train()(images, targets))
    before = _cls_weight(host).detach().clone()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(3):
        losses = model(images, targets)
        assert set(losses) == native | {"set_keep", "set_box"}
        assert all(math.isfinite(float(v.detach())) for v in losses.values()), losses
        optimizer.zero_grad()
        sum(losses.values()).backward()  # type: ignore[union-attr]
        optimizer.step()
    assert losses["set_keep"] > 0
    assert not torch.equal(before, _cls_weight(host))


@pytest.mark.parametrize("arch", ARCHS)
def test_set_box_loss_reaches_the_classifier_only_through_the_plan(arch: str) -> None:
    # set_box is a GIoU loss on the plan-fused boxes: the classification logits enter it only
    # as the candidates' supplies and quality costs of the Sinkhorn problem. A nonzero
    # gradient there is a gradient through SinkhornNMS.
    host = tiny_host(arch)
    model = with_sinkhorn_nms(host, set_min_iou=0.0, eps_start=0.5, set_plan_grad="raw").train()
    images, targets = tiny_batch(arch)
    losses = model(images, targets)
    assert losses["set_box"] > 0
    cls_w, box_w = _cls_weight(host), _box_weight(host)
    cls_grad, box_grad = torch.autograd.grad(losses["set_box"], [cls_w, box_w], retain_graph=True)
    assert cls_grad.abs().sum() > 0
    assert box_grad.abs().sum() > 0
    (keep_grad,) = torch.autograd.grad(losses["set_keep"], [cls_w])
    assert keep_grad.abs().sum() > 0


@pytest.mark.parametrize("arch", ["retinanet", "fasterrcnn"])
def test_with_the_matching_held_constant_the_set_loss_trains_slots_not_the_plan(
    arch: str,
) -> None:
    host = tiny_host(arch)
    model = with_sinkhorn_nms(host, set_min_iou=0.0, eps_start=0.5).train()  # default: none
    images, targets = tiny_batch(arch)
    losses = model(images, targets)
    assert losses["set_box"] > 0
    cls_w, box_w = _cls_weight(host), _box_weight(host)
    cls_grad, box_grad = torch.autograd.grad(
        losses["set_box"], [cls_w, box_w], retain_graph=True, allow_unused=True
    )
    # the fused boxes still train the box regression; the classifier reached them only
    # through the plan, which is now a constant
    assert box_grad is not None and box_grad.abs().sum() > 0
    assert cls_grad is None or cls_grad.abs().sum() == 0
    # the keep loss trains the slots' own scores (not cancelled by the kept fraction)
    (keep_grad,) = torch.autograd.grad(losses["set_keep"], [cls_w])
    assert keep_grad.abs().sum() > 1e-6


def test_unknown_plan_gradient_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="set_plan_grad"):
        with_sinkhorn_nms(tiny_host("fcos"), set_plan_grad="sometimes")


@pytest.mark.parametrize("stage", ["rpn", "box", "both"])
def test_two_stage_set_loss_goes_where_the_stage_says(stage: str) -> None:
    host = tiny_host("fasterrcnn")
    model = with_sinkhorn_nms(host, stage=stage, set_min_iou=0.0).train()
    images, targets = tiny_batch("fasterrcnn")
    losses = model(images, targets)
    set_terms = {k for k in losses if "set_" in k}
    expected = {
        "rpn": {"rpn_set_keep", "rpn_set_box"},
        "box": {"set_keep", "set_box"},
        "both": {"rpn_set_keep", "rpn_set_box", "set_keep", "set_box"},
    }[stage]
    assert set_terms == expected
    total = sum(losses[k] for k in set_terms)
    rpn_grad, box_grad = torch.autograd.grad(
        total, [_cls_weight(host, "rpn"), _cls_weight(host, "box")], allow_unused=True
    )
    # torchvision detaches the proposals: only the RPN stage's set loss reaches the RPN head
    assert (rpn_grad is not None and rpn_grad.abs().sum() > 0) == (stage != "box")
    assert (box_grad is not None and box_grad.abs().sum() > 0) == (stage != "rpn")


@pytest.mark.parametrize("arch", ["fcos", "fasterrcnn"])
def test_without_train_through_the_losses_are_the_hosts(arch: str) -> None:
    host = tiny_host(arch).train()
    images, targets = tiny_batch(arch)
    torch.manual_seed(1)  # the R-CNNs sample their training RoIs
    native = host(images, targets)
    torch.manual_seed(1)
    adapted = with_sinkhorn_nms(host, train_through=False).train()(images, targets)
    assert set(adapted) == set(native)
    for name, value in native.items():
        torch.testing.assert_close(adapted[name], value, msg=name)


def test_progress_anneals_eps_and_ramps_the_set_loss_in() -> None:
    model = with_sinkhorn_nms(tiny_host("fcos"), eps=0.05, eps_start=0.5, set_warmup=0.5)
    images, targets = tiny_batch("fcos")
    model.train()
    model.set_epoch_progress(0.0)
    assert model.set_terms.nms.eps == pytest.approx(0.5)
    start = model(images, targets)
    assert float(start["set_keep"].detach()) == 0.0 and float(start["set_box"].detach()) == 0.0
    model.set_epoch_progress(0.25)
    assert model.set_terms.weight == pytest.approx(0.5)
    model.set_epoch_progress(1.0)
    assert model.set_terms.nms.eps == pytest.approx(0.05)
    assert float(model(images, targets)["set_keep"].detach()) > 0
