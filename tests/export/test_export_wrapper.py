"""ExportableDetector in eager mode: the padded outputs are the detector's own detections."""

from __future__ import annotations

import pytest
import torch
from export_models import biased_detector, tiny_config

from fabricdet.export import ExportableDetector, ExportError
from fabricdet.export.wrapper import PIXEL_MEAN, PIXEL_STD, compact_kept


def _images(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def _assert_same_as_eager(wrapper: ExportableDetector, images: torch.Tensor) -> int:
    """The wrapper's rows ``:n`` are ``detector(list(images))``; returns the kept total."""
    det = wrapper.detector
    det.nms_method = "sinkhorn"  # the sparse solve of the eager eval path
    with torch.no_grad():
        boxes, scores, labels, count = wrapper(images)
        ref = det(list(images))
    kept = 0
    for b, r in enumerate(ref):
        n = int(count[b])
        assert n == len(r["scores"])
        assert torch.equal(labels[b, :n], r["labels"])
        torch.testing.assert_close(scores[b, :n], r["scores"], rtol=0, atol=1e-6)
        torch.testing.assert_close(boxes[b, :n], r["boxes"], rtol=1e-3, atol=1e-3)
        kept += n
    return kept


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_wrapper_equals_eager_sinkhorn_postprocess(seed: int) -> None:
    # Every detection kept (max_det = topk) so the whole kept set is compared, not a prefix.
    cfg = tiny_config("model.topk_candidates=300", "model.detections_per_img=300")
    wrapper = ExportableDetector(biased_detector(cfg, 3, seed))
    kept = _assert_same_as_eager(wrapper, _images((2, 3, 128, 256), seed))
    assert 100 < kept < 2 * 300  # candidates pass the threshold and NMS suppresses some


def test_wrapper_keeps_the_best_max_det_in_score_order() -> None:
    cfg = tiny_config("model.topk_candidates=300", "model.detections_per_img=20")
    wrapper = ExportableDetector(biased_detector(cfg, 2))
    images = _images((2, 3, 96, 192))
    _assert_same_as_eager(wrapper, images)
    with torch.no_grad():
        _boxes, scores, _labels, count = wrapper(images)
    assert count.tolist() == [20, 20]
    assert bool((scores[:, :-1] >= scores[:, 1:]).all())


def test_rows_past_the_count_are_zero() -> None:
    # Fewer candidates (50) than rows (80): the outputs are padded to the promised shape.
    cfg = tiny_config("model.topk_candidates=50")
    wrapper = ExportableDetector(biased_detector(cfg, 2), max_det=80)
    with torch.no_grad():
        boxes, scores, labels, count = wrapper(_images((2, 3, 64, 128)))
    assert boxes.shape == (2, 80, 4) and scores.shape == labels.shape == (2, 80)
    assert count.dtype == labels.dtype == torch.int64
    for b in range(2):
        n = int(count[b])
        assert 0 < n <= 50
        assert not boxes[b, n:].any() and not scores[b, n:].any() and not labels[b, n:].any()
        assert bool((scores[b, :n] > 0).all())


def test_compact_kept_orders_kept_slots_first() -> None:
    keep = torch.tensor([[False, True, False, True, True]])
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.6, 0.5]])
    boxes = torch.arange(20.0).reshape(1, 5, 4)
    labels = torch.tensor([[4, 3, 2, 1, 0]])
    b, s, lab, n = compact_kept(keep, boxes, scores, labels, max_det=4)
    assert n.tolist() == [3]
    assert torch.equal(s, torch.tensor([[0.8, 0.6, 0.5, 0.0]]))
    assert lab.tolist() == [[3, 1, 0, 0]]
    assert torch.equal(b[0, :3], boxes[0, [1, 3, 4]]) and not b[0, 3].any()


def test_normalisation_matches_the_detector() -> None:
    det = biased_detector(tiny_config(), 2)
    images = _images((2, 3, 64, 96))
    torch.testing.assert_close((images - PIXEL_MEAN) / PIXEL_STD, det._batch(list(images)))


def test_uses_the_eval_eps_and_a_slot_per_candidate() -> None:
    cfg = tiny_config()
    det = biased_detector(cfg, 2)
    assert det.sinkhorn.eps == cfg.model.sinkhorn.eps_start  # a loaded model's state
    wrapper = ExportableDetector(det)
    assert wrapper.nms.eps == cfg.model.sinkhorn.eps
    assert wrapper.nms.max_slots is None
    # training's capacities are the look-alike mass by default; the eval decode's the config's
    assert det.sinkhorn.appearance_capacity and not wrapper.nms.appearance_capacity
    classes = biased_detector(tiny_config("model.set_loss_appearance_capacity=false"), 2)
    assert not classes.sinkhorn.appearance_capacity
    assert det.sinkhorn.eps == cfg.model.sinkhorn.eps_start  # the detector is left alone


def test_refuses_other_models() -> None:
    with pytest.raises(ExportError, match="only the fabricdet detector"):
        ExportableDetector(torch.nn.Linear(2, 2))
    with pytest.raises(ExportError, match="max_det"):
        ExportableDetector(biased_detector(tiny_config(), 2), max_det=0)
