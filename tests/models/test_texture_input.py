"""The texture channel: the weave removed, a defect kept; the detector and its backbones reading
it; RGB backbone weights loaded into a four-channel stem."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torchvision

from fabricdet.masks.texture import _hann, texture_residual
from fabricdet.models import ModelConfig, build_model
from fabricdet.models.backbones import build_backbone, load_backbone_weights
from fabricdet.models.texture_input import CLIP_SIGMA, texture_channel


def _woven(period: float = 8.0, h: int = 128, w: int = 256) -> torch.Tensor:
    """A plain weave (yarns every ``period`` px both ways, amplitude 0.25) with a 4x4 dark knot
    at rows 60-63, columns 100-103."""
    y = torch.arange(h, dtype=torch.float32).unsqueeze(1)
    x = torch.arange(w, dtype=torch.float32).unsqueeze(0)
    weave = 0.25 * torch.sin(2 * math.pi * y / period) * torch.sin(2 * math.pi * x / period)
    grey = 0.5 + weave
    grey[60:64, 100:104] -= 0.4
    return grey.expand(3, h, w).unsqueeze(0).clone()  # [1, 3, H, W]


def test_the_weave_is_removed_and_the_knot_kept() -> None:
    channel = texture_channel(_woven())
    assert channel.shape == (1, 1, 128, 256)
    assert channel.abs().max() <= CLIP_SIGMA
    peak = divmod(int(channel.abs().flatten().argmax()), 256)
    assert 58 <= peak[0] <= 65 and 98 <= peak[1] <= 105, peak
    away = channel[0, 0, :, 160:]  # weave only
    knot = channel[0, 0, 60:64, 100:104]
    # The raw weave swings as far as the knot; after the notch it is gone beside it.
    assert away.abs().max() < 0.05 * knot.abs().mean()


def test_a_period_off_the_frequency_grid_is_reduced() -> None:
    """6 px on 128 rows is 21.3 cycles: the weave's energy leaks beside the notched bins, so
    part of it stays; most of it goes and the knot stands far above what is left."""
    grey = _woven(period=6.0)[:, :1]
    residual = texture_residual(grey)[0, 0]
    weave_left = residual[:, 160:].std()
    assert weave_left < (grey[0, 0, :, 160:] - 0.5).std() / 3
    assert residual[60:64, 100:104].abs().mean() > 8 * weave_left


def test_a_flat_image_gives_a_zero_channel() -> None:
    channel = texture_channel(torch.full((2, 3, 64, 96), 0.3))
    assert channel.shape == (2, 1, 64, 96) and channel.abs().max() < 1e-3


@pytest.mark.parametrize("backbone", ["tiny", "resnet18", "mobilenet_v3"])
def test_the_detector_trains_and_predicts_with_the_texture_channel(backbone: str) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(backbone=backbone, width=8, fpn_channels=16, embed_dim=4, set_topk=50,
                      slots=20, texture_input=True)  # fmt: skip
    model = build_model(cfg, num_classes=2).train()
    images = [_woven()[0], _woven()[0].flip(-1)]
    knot = {"boxes": torch.tensor([[98.0, 58.0, 106.0, 66.0]]), "labels": torch.tensor([1])}
    targets = [knot, knot]
    losses = model(images, targets)
    sum(losses.values()).backward()
    first = next(m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.in_channels == 4
    assert first.weight.grad is not None and first.weight.grad[:, 3].abs().sum() > 0
    out = model.eval()(images)
    assert len(out) == 2 and out[0]["boxes"].shape[-1] == 4


def test_rgb_weights_fill_a_four_channel_stem(tmp_path: Path) -> None:
    torch.manual_seed(0)
    rgb = torchvision.models.resnet18(weights=None).state_dict()
    path = tmp_path / "resnet18.pt"
    torch.save(rgb, path)
    backbone = build_backbone("resnet18", in_channels=4)
    load_backbone_weights(backbone, path)
    stem = backbone.state_dict()["body.conv1.weight"]
    assert stem.shape == (64, 4, 7, 7)
    assert torch.equal(stem[:, :3], rgb["conv1.weight"]) and not stem[:, 3].any()
    assert torch.equal(backbone.state_dict()["body.layer1.0.conv1.weight"],
                       rgb["layer1.0.conv1.weight"])  # fmt: skip


@pytest.mark.parametrize("n", [2, 5, 128, 641])
def test_the_spelt_out_hann_window_is_torchs(n: int) -> None:
    torch.testing.assert_close(_hann(n, torch.device("cpu")), torch.hann_window(n, periodic=False))
