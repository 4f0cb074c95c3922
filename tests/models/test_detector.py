"""The detector: torchvision's contract, assignment, and gradients through SinkhornNMS."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from fabricdet.errors import FabricdetError
from fabricdet.models import ModelConfig, build_model
from fabricdet.models.assigner import assign
from fabricdet.models.candidates import Candidates
from fabricdet.models.detector import FabricDetector
from fabricdet.models.head import HeadOutput
from fabricdet.models.losses import embedding_loss, neighbour_embedding_loss
from fabricdet.ops import NMS_METHODS

SMALL = ModelConfig(width=8, fpn_channels=16, embed_dim=8, set_topk=50, slots=20)


def _batch() -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 96, 256, generator=g), torch.rand(3, 80, 200, generator=g)]
    targets = [
        {"boxes": torch.tensor([[20.0, 20.0, 60.0, 40.0], [0.0, 50.0, 250.0, 52.0]]),
         "labels": torch.tensor([1, 2])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)},
    ]  # fmt: skip
    return images, targets


@pytest.mark.parametrize("spatial_grad", [True, False])
def test_training_returns_named_finite_losses_and_gradients_reach_heads(
    spatial_grad: bool,
) -> None:
    torch.manual_seed(0)
    cfg = dataclasses.replace(SMALL, set_loss_plan_grad="raw", set_loss_spatial_grad=spatial_grad)
    model = build_model(cfg, num_classes=3).train()
    images, targets = _batch()
    losses = model(images, targets)
    assert set(losses) == {"cls", "quality", "box", "box_l1", "embed", "set_keep", "set_box"}
    assert all(torch.isfinite(v) for v in losses.values())
    # gradients of the set loss alone reach the classification, box and embedding convs
    model.zero_grad()
    (losses["set_keep"] + losses["set_box"]).backward()
    head = model.head
    assert head.cls.weight.grad is not None and head.cls.weight.grad.abs().sum() > 0
    reg_grad = head.reg.weight.grad
    assert reg_grad is not None
    assert reg_grad[5:].abs().sum() > 0  # embedding
    # box: through the plan's spatial term, or only through the fused boxes of matched slots
    box_reached = bool(reg_grad[:4].abs().sum() > 0)
    assert box_reached == (spatial_grad or bool(losses["set_box"] > 0))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA autocast needs a GPU")
def test_training_runs_under_cuda_autocast() -> None:
    # the trainer's AMP path (float16 autocast) on the default losses, set loss included
    torch.manual_seed(0)
    model = build_model(SMALL, num_classes=3).cuda().train()
    images, targets = _batch()
    images = [im.cuda() for im in images]
    targets = [{k: v.cuda() for k, v in t.items()} for t in targets]
    with torch.autocast("cuda", dtype=torch.float16):
        losses = model(images, targets)
    assert "set_keep" in losses and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()  # type: ignore[union-attr]


def test_the_ranking_term_joins_the_set_loss_when_weighted() -> None:
    torch.manual_seed(0)
    model = build_model(dataclasses.replace(SMALL, set_loss_rank_weight=1.0), num_classes=3)
    losses = model.train()(*_batch())
    # an untrained head has no matched slot to rank: tests/models/test_set_loss.py checks
    # what the term does on one
    assert "set_rank" in losses and torch.isfinite(losses["set_rank"])


def test_the_set_loss_can_be_kept_off_the_backbone() -> None:
    images, targets = _batch()
    values, reached = {}, {}
    for backbone in (True, False):
        torch.manual_seed(0)
        cfg = dataclasses.replace(SMALL, set_loss_backbone=backbone)
        model = build_model(cfg, num_classes=3).train()
        losses = model(images, targets)
        set_loss = losses["set_keep"] + losses["set_box"]
        set_loss.backward()
        values[backbone] = float(set_loss.detach())
        grads = [p.grad for p in model.backbone.parameters()]
        reached[backbone] = any(g is not None and bool(g.abs().sum() > 0) for g in grads)
        assert model.head.cls.weight.grad is not None
        assert model.head.cls.weight.grad.abs().sum() > 0
    # the head's second pass computes the same set loss; only where its gradient goes differs
    assert values[True] == pytest.approx(values[False], rel=1e-5)
    assert reached == {True: True, False: False}


def test_eps_plan_grad_holds_the_plan_gradient_at_its_starting_size() -> None:
    sk = SMALL.sinkhorn
    raw = build_model(dataclasses.replace(SMALL, set_loss_plan_grad="raw"), num_classes=3)
    scaled = build_model(dataclasses.replace(SMALL, set_loss_plan_grad="eps"), num_classes=3)
    for progress, expected in ((0.0, 1.0), (1.0, sk.eps / sk.eps_start)):
        for model in (raw, scaled):
            model.set_epoch_progress(progress)
        assert raw.sinkhorn.plan_grad_scale == 1.0
        assert scaled.sinkhorn.plan_grad_scale == pytest.approx(expected)
        assert scaled.sinkhorn.plan_grad_scale * sk.eps_start == pytest.approx(scaled.sinkhorn.eps)


def test_without_plan_gradient_the_set_loss_trains_scores_only_directly() -> None:
    images, targets = _batch()
    torch.manual_seed(0)
    model = build_model(dataclasses.replace(SMALL, set_loss_plan_grad="none"), num_classes=3)
    assert model.sinkhorn.plan_grad_scale == 0.0
    losses = model.train()(images, targets)
    losses["set_keep"].backward()
    # the keep loss still reaches the classification branch through the slots' own scores
    # (not by float rounding: a kept fraction differentiated as plan / score would cancel
    # them), but nothing reaches the embeddings, which enter only the plan
    assert model.head.cls.weight.grad is not None
    assert model.head.cls.weight.grad.norm() > 1e-4
    reg_grad = model.head.reg.weight.grad
    assert reg_grad is None or reg_grad[5:].abs().sum() == 0


def test_eval_contract_for_every_nms_method() -> None:
    cfg = ModelConfig(**{**SMALL.__dict__, "topk_candidates": 200})
    model = build_model(cfg, num_classes=3).eval()
    torch.nn.init.zeros_(model.head.cls.bias)  # scores ~0.5: candidates above every floor
    torch.nn.init.zeros_(model.head.reg.bias[4:5])  # quality
    images, _ = _batch()
    with torch.no_grad():
        for method in NMS_METHODS:
            model.nms_method = method
            out = model(images)
            assert len(out) == 2
            for det, img in zip(out, images, strict=True):
                assert set(det) == {"boxes", "scores", "labels"}
                assert det["boxes"].shape[1] == 4 and det["boxes"].dtype == torch.float32
                assert det["labels"].dtype == torch.int64
                assert len(det["boxes"]) == len(det["scores"]) == len(det["labels"])
                assert 0 < len(det["boxes"]) <= cfg.detections_per_img
                assert det["boxes"][:, 2].max() <= img.shape[-1]
    with pytest.raises(FabricdetError, match="unknown NMS method"):
        model.nms_method = "fastest"


@pytest.mark.parametrize("method", ["greedy", "sinkhorn"])
def test_kept_detections_take_their_cluster_medoid(method: str) -> None:
    cfg = ModelConfig(**{**SMALL.__dict__, "topk_candidates": 200})
    model = build_model(cfg, num_classes=3).eval()
    torch.nn.init.zeros_(model.head.cls.bias)
    torch.nn.init.constant_(model.head.reg.bias[2:4], math.log(4.0))  # boxes 4 strides wide:
    model.nms_method = method  # neighbouring locations' boxes overlap, duplicates of each other
    images, _ = _batch()
    with torch.no_grad():
        medoid = model(images)
        model.cfg.medoid_boxes = False
        own = model(images)
    moved = 0
    for a, b in zip(medoid, own, strict=True):
        assert torch.equal(a["scores"], b["scores"]) and torch.equal(a["labels"], b["labels"])
        moved += int((a["boxes"] != b["boxes"]).any(1).sum())
    assert moved > 0  # the same detections, some of them on another member's box


def test_wide_images_stay_wide() -> None:
    model = build_model(SMALL, num_classes=3)
    batch = model._batch([torch.rand(3, 100, 245)])
    assert batch.shape[-2:] == (128, 256)  # padded to the stride, aspect kept


def test_assigner_gives_thin_and_tiny_objects_positives() -> None:
    # a 2 px thread across the image and a 3 px knot
    points, strides = [], []
    for s in (4, 8, 16):
        ys, xs = torch.meshgrid(torch.arange(128 // s), torch.arange(512 // s), indexing="ij")
        points.append((torch.stack([xs, ys], -1).reshape(-1, 2) + 0.5) * s)
        strides.append(torch.full((xs.numel(),), float(s)))
    pts, st = torch.cat(points).float(), torch.cat(strides)
    gt = torch.tensor([[0.0, 60.0, 512.0, 62.0], [200.0, 20.0, 203.0, 23.0]])
    pred = torch.cat([pts - 3, pts + 3], 1)
    scores = torch.full((len(pts), 2), 0.1)
    a = assign(pts, st, pred, scores, gt, torch.tensor([0, 1]))
    assert (a.gt_index == 0).sum() >= 1 and (a.gt_index == 1).sum() >= 1


def test_embedding_loss_pulls_and_pushes() -> None:
    same = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    mixed = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1], [0.1, 1.0]])
    ids = torch.tensor([0, 0, 1, 1])
    assert embedding_loss(same, ids) < 1e-6
    assert embedding_loss(mixed, ids) > 0.3


def test_neighbour_loss_pushes_only_overlapping_same_class_pairs_on_two_objects() -> None:
    # two parallel threads 4 px apart: candidates 0, 1 on thread A, 2 on thread B, 3 far away
    boxes = torch.tensor(
        [[0.0, 0, 100, 6], [2, 0, 100, 6], [0, 2, 100, 8], [0, 50, 100, 56]]
    )  # fmt: skip
    owner = torch.tensor([0, 0, 1, 2])
    labels = torch.tensor([3, 3, 3, 3])
    alike = torch.ones(4, 2)
    # 0-2 and 1-2 overlap on different objects; 0-1 is one object, 3 overlaps nothing
    assert neighbour_embedding_loss(alike, boxes, owner, labels, 0.5) == pytest.approx(1.0)
    apart = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    assert neighbour_embedding_loss(apart, boxes, owner, labels, 0.5) == 0
    other_class = torch.tensor([3, 3, 5, 3])
    assert neighbour_embedding_loss(alike, boxes, owner, other_class, 0.5) == 0
    # the gradient turns the neighbours' embeddings apart
    emb = alike.clone().requires_grad_(True)
    neighbour_embedding_loss(emb, boxes, owner, labels, 0.5).backward()
    assert emb.grad is not None and emb.grad[3].abs().sum() == 0
    assert emb.grad[:3].abs().sum() > 0


def test_neighbour_loss_reads_the_candidates_on_exactly_one_object() -> None:
    gt_boxes = torch.tensor([[0.0, 0, 100, 6], [0, 3, 100, 9]])  # parallel threads, 3 px apart
    cand = Candidates(
        boxes=torch.tensor([[
            [0.0, 0.5, 100, 7],  # on thread A (IoU 0.79; 0.44 with B)
            [0.0, 2.0, 100, 8.5],  # on thread B (0.79; 0.47 with A), IoU 0.62 with the first
            [0.0, 1.5, 100, 7.5],  # between the two (0.6 with each): no side to push to
        ]]),
        scores=torch.ones(1, 3),
        labels=torch.zeros(1, 3, dtype=torch.long),
        embeddings=torch.ones(1, 3, 4),
        mask=torch.tensor([[True, True, True]]),
    )  # fmt: skip
    model = build_model(SMALL, num_classes=3)
    assert model._neighbour_loss(cand, 0, gt_boxes) == pytest.approx(1.0)
    cand.embeddings[0, 1] = torch.tensor([1.0, -1.0, 1.0, -1.0])  # B turned away from A
    assert model._neighbour_loss(cand, 0, gt_boxes) == 0
    assert model._neighbour_loss(cand, 0, gt_boxes[:1]) == 0  # one object: nothing to push
    weighted = build_model(dataclasses.replace(SMALL, embed_neighbour_weight=1.0), 3).train()
    assert all(torch.isfinite(v) for v in weighted(*_batch()).values())


def test_eps_is_annealed() -> None:
    model = build_model(SMALL, num_classes=3)
    model.set_epoch_progress(0.0)
    assert model.sinkhorn.eps == pytest.approx(SMALL.sinkhorn.eps_start)
    model.set_epoch_progress(1.0)
    assert model.sinkhorn.eps == pytest.approx(SMALL.sinkhorn.eps)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3"])
def test_torchvision_backbones_give_strides_4_to_32(name: str) -> None:
    from fabricdet.models.backbones import build_backbone

    feats = build_backbone(name)(torch.rand(1, 3, 64, 128))
    assert {k: tuple(v.shape[-2:]) for k, v in feats.items()} == {
        "4": (16, 32), "8": (8, 16), "16": (4, 8), "32": (2, 4),
    }  # fmt: skip


def test_embedding_loss_covers_duplicates_outside_the_positives() -> None:
    """A candidate on an object that the assignment left out still trains its embedding: the
    appearance term would otherwise read its noise as another object."""
    a = 3  # locations
    out = HeadOutput(
        cls_logits=torch.zeros(1, a, 2),
        quality_logits=torch.zeros(1, a),
        distances=torch.zeros(1, a, 4),
        embeddings=torch.arange(a * 4, dtype=torch.float32).reshape(1, a, 4),
        points=torch.zeros(a, 2),
        strides=torch.ones(a),
    )
    cand = Candidates(
        boxes=torch.tensor([[[0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 10.0, 10.0], [50.0, 50, 60, 60]]]),
        scores=torch.ones(1, 3),
        labels=torch.zeros(1, 3, dtype=torch.long),
        embeddings=torch.full((1, 3, 4), 7.0),
        mask=torch.tensor([[True, True, True]]),
    )
    pos = torch.tensor([True, False, False])
    gt_index = torch.tensor([0, -1, -1])
    gt_boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    emb, owner = FabricDetector._embedding_targets(out, cand, 0, pos, gt_index, gt_boxes)
    assert owner.tolist() == [0, 0, 0]  # the positive, and the two candidates on the object
    assert torch.equal(emb[0], out.embeddings[0, 0])
    assert torch.equal(emb[1:], cand.embeddings[0, :2])


def test_the_detector_trains_the_head_on_detached_features() -> None:
    torch.manual_seed(0)
    model = build_model(dataclasses.replace(SMALL, box_quality=True), num_classes=3).train()
    losses = model(*_batch())
    assert "box_quality" in losses and torch.isfinite(losses["box_quality"])
    losses["box_quality"].backward()
    head_grad = model.box_quality.fc[-1].weight.grad  # type: ignore[union-attr]
    assert head_grad is not None and head_grad.abs().sum() > 0
    # the detector trains as without it: nothing reaches the backbone, FPN or dense head
    for p in [*model.backbone.parameters(), *model.neck.parameters(), *model.head.parameters()]:
        assert p.grad is None or p.grad.abs().sum() == 0


def test_rescoring_replaces_the_dense_quality_in_the_scores() -> None:
    images, _ = _batch()
    outputs = []
    for box_quality, rescore in [(False, True), (True, False), (True, True)]:
        torch.manual_seed(0)  # the head is built last: the detector's own weights are equal
        cfg = dataclasses.replace(SMALL, box_quality=box_quality, box_quality_rescore=rescore)
        model = build_model(cfg, num_classes=3).eval()
        model.nms_method = "greedy"
        with torch.no_grad():
            outputs.append(model(images))
    without, off, on = outputs
    for a, b in zip(without, off, strict=True):  # switched off: the detector's own output
        assert all(torch.equal(a[k], b[k]) for k in ("boxes", "scores", "labels"))
    for r in on:
        assert set(r) == {"boxes", "scores", "labels"}
        assert ((r["scores"] >= 0) & (r["scores"] <= 1)).all()
    assert not all(
        len(r["scores"]) == len(p["scores"]) and torch.allclose(r["scores"], p["scores"])
        for r, p in zip(on, off, strict=True)
    )
