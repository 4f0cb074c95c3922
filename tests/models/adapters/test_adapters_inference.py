"""Inference: torchvision's output contract, the host reproduced exactly with greedy NMS, and
SinkhornNMS agreeing with it where the two must agree."""

from __future__ import annotations

import pytest
import torch
from adapter_testdata import NUM_CLASSES, SIZE, TWO_STAGE, clusters, logit, tiny_host
from torch import Tensor
from torchvision.ops import box_iou

from fabricdet.models.adapters import with_sinkhorn_nms

ARCHS = ("fcos", "retinanet", "fasterrcnn", "maskrcnn")


def _images() -> list[Tensor]:
    gen = torch.Generator().manual_seed(3)
    # sizes other than the host's 128x128: detections must come back in input pixels
    return [torch.rand(3, 96, 160, generator=gen), torch.rand(3, 128, 128, generator=gen)]


@pytest.mark.parametrize("arch", ARCHS)
def test_eval_output_keeps_torchvisions_contract(arch: str) -> None:
    low = {} if arch in TWO_STAGE else {"score_thresh": 0.005}  # untrained: scores are low
    host = tiny_host(arch, **low).eval()
    model = with_sinkhorn_nms(host).eval()
    images = _images()
    limit = (host.roi_heads if arch in TWO_STAGE else host).detections_per_img
    with torch.no_grad():
        native, ours = host(images), model(images)
    assert isinstance(ours, list) and len(ours) == len(images)
    first_label = 1 if arch in TWO_STAGE else 0
    for image, det, ref in zip(images, ours, native, strict=True):
        assert list(det) == list(ref)  # same keys, same order
        k = len(det["scores"])
        assert 0 < k <= limit
        assert det["boxes"].shape == (k, 4) and det["boxes"].dtype == torch.float32
        assert det["scores"].shape == (k,) and det["labels"].dtype == torch.int64
        assert torch.all(det["scores"][:-1] >= det["scores"][1:])
        h, w = image.shape[-2:]
        b = det["boxes"]
        tol = 1e-3  # the resize back to input pixels rounds (torchvision's own output too)
        assert b.min() >= 0 and torch.all(b[:, 2] <= w + tol) and torch.all(b[:, 3] <= h + tol)
        assert torch.all(b[:, 2:] >= b[:, :2])
        assert det["labels"].min() >= first_label
        assert det["labels"].max() < first_label + NUM_CLASSES
        if arch == "maskrcnn":
            assert det["masks"].shape == (k, 1, h, w)
            assert det["masks"].min() >= 0 and det["masks"].max() <= 1


@pytest.mark.parametrize("arch", ARCHS)
def test_greedy_reproduces_the_host_exactly(arch: str) -> None:
    host = tiny_host(arch).eval()
    model = with_sinkhorn_nms(host, nms_method="greedy").eval()
    images = _images()
    with torch.no_grad():
        native, ours = host(images), model(images)
    for det, ref in zip(ours, native, strict=True):
        assert list(det) == list(ref)
        for key in ref:
            assert torch.equal(det[key], ref[key]), key


def _check_agreement(ours: dict[str, Tensor], ref: dict[str, Tensor], fused: bool) -> None:
    assert len(ref["labels"]) == 4  # one box per cluster and class, the lone box
    assert torch.equal(ours["labels"], ref["labels"])
    torch.testing.assert_close(ours["scores"], ref["scores"])
    if not fused:
        torch.testing.assert_close(ours["boxes"], ref["boxes"])
        return
    # fused boxes average each cluster: close to the kept box, but not the kept box itself
    assert box_iou(ours["boxes"], ref["boxes"]).diagonal().min() > 0.9
    assert not torch.allclose(ours["boxes"], ref["boxes"])


def _one_stage_inputs(arch: str, host: torch.nn.Module) -> tuple[dict, list]:
    """Head outputs and anchors that decode to :func:`clusters` on two levels, with
    background anchors that score nothing."""
    boxes, scores, labels = clusters()
    background = torch.tensor([[50.0, 50.0, 70.0, 70.0], [0.0, 100.0, 20.0, 128.0]])
    levels = [list(range(0, 4)), list(range(4, len(boxes)))]
    outputs: dict[str, list[Tensor]] = {"cls_logits": [], "bbox_regression": []}
    if arch == "fcos":
        outputs["bbox_ctrness"] = []
    anchors = []
    for index in levels:
        b = torch.cat([boxes[index], background])
        centre = (b[:, :2] + b[:, 2:]) / 2
        anchor = torch.cat([centre - 8.0, centre + 8.0], dim=1)
        cls = torch.full((len(b), NUM_CLASSES), -20.0)
        prob = scores[index] ** 2 if arch == "fcos" else scores[index]  # FCOS: sqrt(p * ctr)
        cls[torch.arange(len(index)), labels[index]] = logit(prob)
        if arch == "fcos":
            reg = host.box_coder.encode(anchor, b)
            outputs["bbox_ctrness"].append(torch.full((1, len(b), 1), 30.0))
        else:
            reg = host.box_coder.encode_single(b, anchor)
        outputs["cls_logits"].append(cls.unsqueeze(0))
        outputs["bbox_regression"].append(reg.unsqueeze(0))
        anchors.append(anchor)
    return outputs, [anchors]


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("arch", ["fcos", "retinanet"])
def test_one_stage_sinkhorn_matches_native_nms_on_separated_clusters(
    arch: str, fused: bool
) -> None:
    host = tiny_host(arch, score_thresh=0.05).eval()
    model = with_sinkhorn_nms(host, fuse_boxes=fused).eval()
    outputs, anchors = _one_stage_inputs(arch, host)
    (ref,) = host.postprocess_detections(outputs, anchors, [(SIZE, SIZE)])
    (ours,) = model.postprocess(outputs, anchors, [(SIZE, SIZE)])
    _check_agreement(ours, ref, fused)


@pytest.mark.parametrize("fused", [False, True])
def test_box_head_sinkhorn_matches_native_nms_on_separated_clusters(fused: bool) -> None:
    host = tiny_host("fasterrcnn").eval()
    model = with_sinkhorn_nms(host, stage="box", fuse_boxes=fused).eval()
    boxes, scores, labels = clusters()
    proposals = torch.cat([boxes, torch.tensor([[50.0, 50.0, 70.0, 70.0]])])  # + background
    class_logits = torch.full((len(proposals), NUM_CLASSES + 1), -30.0)
    class_logits[:, 0] = 0.0
    # softmax over {background: 0, class: logit(p)} gives the class probability p
    class_logits[torch.arange(len(boxes)), labels + 1] = logit(scores)
    regression = torch.zeros(len(proposals), 4 * (NUM_CLASSES + 1))  # decode to the proposal
    args = (class_logits, regression, [proposals], [(SIZE, SIZE)])
    ref_boxes, ref_scores, ref_labels = host.roi_heads.postprocess_detections(*args)
    our_boxes, our_scores, our_labels = model.postprocess_detections(*args)
    ref = {"boxes": ref_boxes[0], "scores": ref_scores[0], "labels": ref_labels[0]}
    ours = {"boxes": our_boxes[0], "scores": our_scores[0], "labels": our_labels[0]}
    _check_agreement(ours, ref, fused)


def test_rpn_sinkhorn_matches_native_nms_on_separated_clusters() -> None:
    host = tiny_host("fasterrcnn").eval()
    model = with_sinkhorn_nms(host, stage="rpn", fuse_boxes=False).eval()
    boxes, scores, labels = clusters()
    # the RPN suppresses within a feature level: one level per class of the hand-made case
    order = torch.argsort(labels, stable=True)
    per_level = torch.bincount(labels).tolist()
    proposals = boxes[order].unsqueeze(0)
    objectness = logit(scores[order]).unsqueeze(1)
    args = (proposals, objectness, [(SIZE, SIZE)], per_level)
    ref_boxes, _ = host.rpn.filter_proposals(*args)
    ours = model.filter_proposals(*args)
    assert len(ref_boxes[0]) == 4
    torch.testing.assert_close(ours[0], ref_boxes[0])


def test_sinkhorn_and_greedy_differ_where_fusion_applies() -> None:
    # the switch is live: the same model, two NMS methods, two outputs
    host = tiny_host("retinanet", score_thresh=0.05).eval()
    model = with_sinkhorn_nms(host, fuse_boxes=True).eval()
    outputs, anchors = _one_stage_inputs("retinanet", host)
    model.nms_method = "greedy"
    (greedy,) = model.postprocess(outputs, anchors, [(SIZE, SIZE)])
    model.nms_method = "sinkhorn"
    (sinkhorn,) = model.postprocess(outputs, anchors, [(SIZE, SIZE)])
    assert not torch.allclose(greedy["boxes"], sinkhorn["boxes"])
