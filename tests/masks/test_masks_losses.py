"""Box-supervised losses and texture suppression: values and gradient directions on toy cases."""

from __future__ import annotations

import math

import pytest
import torch

from fabricdet.masks import pairwise_loss, projection_loss, texture_residual
from fabricdet.masks.texture import neighbour_affinity, neighbours


def _box_mask(h: int = 12, w: int = 16) -> torch.Tensor:
    m = torch.zeros(1, h, w)
    m[0, 3:8, 4:13] = 1.0
    return m


def test_mask_filling_its_box_has_zero_projection_loss():
    box = _box_mask()
    assert float(projection_loss(box, box)[0]) == pytest.approx(0.0, abs=1e-6)
    shrunk = box.clone()
    shrunk[0, :, 4:6] = 0  # misses two columns of the box
    assert float(projection_loss(shrunk, box)[0]) > 0.05
    # A 1-pixel line through the box is a perfect mask for its box: projections match.
    line = torch.zeros(1, 12, 16)
    line[0, 5, 4:13] = 1.0
    line_box = torch.zeros(1, 12, 16)
    line_box[0, 5:6, 4:13] = 1.0
    assert float(projection_loss(line, line_box)[0]) == pytest.approx(0.0, abs=1e-6)


def test_projection_gradient_grows_inside_and_shrinks_outside():
    box = _box_mask()
    logits = torch.zeros(1, 12, 16, requires_grad=True)
    projection_loss(logits.sigmoid(), box)[0].backward()
    g = logits.grad[0]
    # Max-projections route the gradient through one pixel per row/column: the columns of
    # the box are pulled up (negative gradient), the columns outside pushed down.
    assert (g[:, 4:13].sum(0) < 0).all()
    assert (g[:, :4].sum(0) > 0).all() and (g[:, 13:].sum(0) > 0).all()


def test_tversky_beta_weighs_misses_over_false_alarms():
    box = _box_mask()
    miss = box.clone()
    miss[0, :, 4:7] = 0
    extra = box.clone()
    extra[0, 3:8, 1:4] = 1
    dice = projection_loss(miss, box)[0] - projection_loss(extra, box)[0]
    tversky = projection_loss(miss, box, 0.3, 0.7)[0] - projection_loss(extra, box, 0.3, 0.7)[0]
    assert tversky > dice  # misses cost relatively more with beta > alpha


def test_pairwise_pulls_a_pixel_towards_similar_neighbours_only():
    logits = torch.full((1, 7, 7), 3.0)
    logits[0, 3, 3] = -2.0
    logits.requires_grad_(True)
    box = torch.ones(1, 7, 7)
    similar = torch.ones(1, 8, 7, 7)
    pairwise_loss(logits, similar, box, dilation=1)[0].backward()
    assert logits.grad[0, 3, 3] < 0  # raise the odd pixel towards its neighbours
    # Edges below the threshold (a boundary) carry no loss and no gradient.
    logits.grad = None
    loss = pairwise_loss(logits, torch.zeros(1, 8, 7, 7), box, dilation=1)[0]
    assert float(loss.detach()) == 0.0
    # Agreeing neighbours: confident and equal -> near-zero loss.
    same = pairwise_loss(torch.full((1, 7, 7), 8.0), similar, box, dilation=1)[0]
    assert float(same) < 1e-3


def _weave(period: int, amp: float, contrast: float):
    torch.manual_seed(0)
    h = w = 64
    y, x = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    weave = 0.5 + amp * torch.cos(2 * math.pi * x / period) * torch.cos(2 * math.pi * y / period)
    gt = torch.zeros(h, w)
    gt[20:40, 24:44] = 1
    img = (weave + contrast * gt + 0.01 * torch.randn(h, w)).expand(3, h, w)[None]
    g = gt[None, None]
    nb = neighbours(g, 2)[0, 0]
    valid = neighbours(torch.ones_like(g), 2)[0, 0] > 0
    crossing = (nb != g[0, 0]) & valid
    background = (g[0, 0] == 0) & (nb == 0) & valid
    return img, crossing, background


@pytest.mark.parametrize(
    ("period", "amp", "contrast"), [(5, 0.2, 0.2), (6, 0.2, 0.2), (8, 0.3, 0.15)]
)
def test_texture_suppressed_affinity_cuts_defects_not_the_weave(period, amp, contrast):
    img, crossing, background = _weave(period, amp, contrast)
    raw = neighbour_affinity(img, 2)[0]
    res = neighbour_affinity(texture_residual(img), 2)[0]
    # On the residual the defect's outline is an edge and the weave is not...
    assert (res[crossing] < 0.3).float().mean() > 0.9
    assert (res[background] < 0.3).float().mean() < 0.2
    # ...while raw colour affinity, dominated by yarn crossings, misses most of the outline.
    assert (raw[crossing] < 0.3).float().mean() < 0.5


def test_texture_residual_keeps_a_one_pixel_line():
    img, _, _ = _weave(6, amp=0.3, contrast=0.0)
    img = img.clone()
    img[..., :, 30] += 0.2  # a one-pixel bright thread
    res = texture_residual(img)[0, 0]
    line = res[:, 30].mean()
    others = res[:, [28, 32]].abs().mean()
    assert line > 0.1 and line > 3 * others
