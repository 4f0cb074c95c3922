"""with_sinkhorn_nms: which models it takes, what it leaves alone, its options; the shared
candidate helpers."""

from __future__ import annotations

import pytest
import torch
from adapter_testdata import tiny_host
from torch import nn
from torchvision.models.detection import KeypointRCNN
from torchvision.models.detection.keypoint_rcnn import KeypointRCNNHeads, KeypointRCNNPredictor

from fabricdet.errors import FabricdetError
from fabricdet.models.adapters import (
    AdapterOptions,
    OneStageAdapter,
    TwoStageAdapter,
    with_sinkhorn_nms,
)
from fabricdet.models.adapters.set_training import pad_stack, top_candidates


@pytest.mark.parametrize(
    ("arch", "kind"),
    [("fcos", OneStageAdapter), ("retinanet", OneStageAdapter), ("maskrcnn", TwoStageAdapter)],
)
def test_wraps_without_modifying_the_host(arch: str, kind: type) -> None:
    host = tiny_host(arch)
    keys = list(host.state_dict())
    model = with_sinkhorn_nms(host, eps=0.02)
    assert isinstance(model, kind) and model.host is host
    assert model.options.eps == 0.02
    assert list(host.state_dict()) == keys  # no new buffers or parameters on the host
    # the adapter owns exactly the host's parameters (SinkhornNMS has none)
    assert {id(p) for p in model.parameters()} == {id(p) for p in host.parameters()}


def test_rejects_other_models() -> None:
    with pytest.raises(TypeError, match="FCOS, RetinaNet"):
        with_sinkhorn_nms(nn.Linear(2, 2))
    faster = tiny_host("fasterrcnn")
    keypoints = KeypointRCNN(
        faster.backbone,
        num_classes=2,
        keypoint_head=KeypointRCNNHeads(32, (32,)),
        keypoint_predictor=KeypointRCNNPredictor(32, 3),
    )
    with pytest.raises(TypeError, match="Keypoint"):
        with_sinkhorn_nms(keypoints)


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="stage"):
        AdapterOptions(stage="roi")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="nms_method"):
        AdapterOptions(nms_method="fast")
    with pytest.raises(ValueError, match="iou_threshold"):
        AdapterOptions(iou_threshold=0.0)
    with pytest.raises(ValueError, match="fuse_power"):
        AdapterOptions(fuse_power=-2.0)
    with pytest.raises(TypeError):
        with_sinkhorn_nms(tiny_host("fcos"), no_such_option=1)
    model = with_sinkhorn_nms(tiny_host("fcos"))
    with pytest.raises(FabricdetError, match="unknown NMS method"):
        model.nms_method = "fast"
    model.nms_method = "soft"
    assert model.options.nms_method == "soft"


def test_thresholds_default_to_the_hosts() -> None:
    host = tiny_host("fasterrcnn")
    model = with_sinkhorn_nms(host, stage="both")
    assert model.rpn_terms.nms.iou_threshold == host.rpn.nms_thresh
    assert model.box_terms.nms.iou_threshold == host.roi_heads.nms_thresh
    fixed = with_sinkhorn_nms(host, iou_threshold=0.4)
    assert fixed.rpn_terms.nms.iou_threshold == fixed.box_terms.nms.iou_threshold == 0.4


def test_training_rejects_degenerate_target_boxes() -> None:
    model = with_sinkhorn_nms(tiny_host("fcos")).train()
    target = {"boxes": torch.tensor([[10.0, 10.0, 10.0, 30.0]]), "labels": torch.tensor([0])}
    with pytest.raises(ValueError, match="x2 > x1"):
        model([torch.rand(3, 128, 128)], [target])
    with pytest.raises(ValueError, match="needs targets"):
        model([torch.rand(3, 128, 128)])


def test_top_candidates_match_a_per_image_loop() -> None:
    gen = torch.Generator().manual_seed(0)
    scores = torch.rand(2, 7, 3, generator=gen, requires_grad=True)
    boxes = torch.rand(2, 7, 3, 4, generator=gen) * 50
    boxes = torch.cat([boxes[..., :2], boxes[..., :2] + boxes[..., 2:] + 1], -1)
    valid = torch.ones(2, 7, dtype=torch.bool)
    valid[1, 5:] = False
    cand = top_candidates(scores, boxes, [(40, 60), (40, 60)], 4, valid)
    for b in range(2):
        n = int(valid[b].sum())
        flat = scores[b, :n].detach().flatten()
        best = flat.topk(4).indices
        torch.testing.assert_close(cand.scores[b].detach(), flat[best])
        assert torch.equal(cand.labels[b], best % 3)
        expect = boxes[b, :n].reshape(-1, 4)[best]
        expect = torch.minimum(expect.clamp_min(0), torch.tensor([60.0, 40.0, 60.0, 40.0]))
        torch.testing.assert_close(cand.boxes[b], expect)
    assert cand.mask.all()
    cand.scores.sum().backward()  # the scores keep their gradient
    assert scores.grad is not None and scores.grad.sum() == 8


def test_top_candidates_mask_padding_when_too_few() -> None:
    scores = torch.rand(1, 2, 1)
    valid = torch.tensor([[True, False]])
    cand = top_candidates(scores, torch.zeros(1, 2, 4), [(10, 10)], 2, valid)
    assert cand.mask.tolist() == [[True, False]]


def test_pad_stack() -> None:
    padded, valid = pad_stack([torch.ones(2, 3), torch.ones(0, 3)], fill=-1.0)
    assert padded.shape == (2, 2, 3) and valid.tolist() == [[True, True], [False, False]]
    assert padded[1].eq(-1).all()
