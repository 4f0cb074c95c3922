"""Backbones: a small CPU-friendly default and torchvision's ResNet-18/50 and MobileNetV3.

Every backbone maps ``images (Tensor[B, 3, H, W])`` to an ordered dict of feature maps keyed by
their stride (``{"4": Tensor[B, C4, H/4, W/4], "8": ..., "16": ..., "32": ...}``) and exposes
``out_channels: dict[str, int]``. Weights start random (nothing is downloaded); a local state
dict can be loaded with :func:`load_backbone_weights`.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
import torchvision
from torch import Tensor, nn
from torchvision.models.feature_extraction import create_feature_extractor

from fabricdet.errors import FabricdetError


class ConvBNAct(nn.Sequential):
    """Conv -> BatchNorm -> SiLU."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.SiLU(inplace=True),
        )


class DWBlock(nn.Module):
    """Depthwise-separable residual block (MobileNet style): cheap on CPU, keeps thin lines."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.dw = ConvBNAct(channels, channels, 3, groups=channels)
        self.pw = ConvBNAct(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.pw(self.dw(x))


class TinyBackbone(nn.Module):
    """Five downsamplings, strides 4..32, ``width * (2, 4, 8, 8)`` channels.

    Args:
        width: channels after the stem.
        depth: residual blocks per stage.
    """

    def __init__(self, width: int = 24, depth: int = 1) -> None:
        super().__init__()
        w = width
        self.stem = nn.Sequential(ConvBNAct(3, w, 3, 2), ConvBNAct(w, w, 3, 1, groups=w))
        chans = [2 * w, 4 * w, 8 * w, 8 * w]
        stages = []
        cin = w
        for cout in chans:
            stages.append(
                nn.Sequential(ConvBNAct(cin, cout, 3, 2), *[DWBlock(cout) for _ in range(depth)])
            )
            cin = cout
        self.stages = nn.ModuleList(stages)
        self.out_channels = {str(2 ** (i + 2)): c for i, c in enumerate(chans)}

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        x = self.stem(x)
        out: OrderedDict[str, Tensor] = OrderedDict()
        for i, stage in enumerate(self.stages):
            x = stage(x)
            out[str(2 ** (i + 2))] = x
        return out


# torchvision node -> stride of the stages each network is cut at
_TORCHVISION_NODES: dict[str, dict[str, str]] = {
    "resnet18": {"layer1": "4", "layer2": "8", "layer3": "16", "layer4": "32"},
    "resnet50": {"layer1": "4", "layer2": "8", "layer3": "16", "layer4": "32"},
    "mobilenet_v3": {
        "features.3": "4",
        "features.6": "8",
        "features.12": "16",
        "features.16": "32",
    },
}


class TorchvisionBackbone(nn.Module):
    """A torchvision classification network cut at its stride-4..32 stages."""

    def __init__(self, name: str) -> None:
        super().__init__()
        if name == "mobilenet_v3":
            net = torchvision.models.mobilenet_v3_large(weights=None)
        else:
            net = getattr(torchvision.models, name)(weights=None)
        self.body = create_feature_extractor(net, return_nodes=_TORCHVISION_NODES[name])
        with torch.no_grad():
            probe = self.body(torch.zeros(1, 3, 64, 64))
        self.out_channels = {k: v.shape[1] for k, v in probe.items()}

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        return OrderedDict(self.body(x))


BACKBONES = ("tiny", "resnet18", "resnet50", "mobilenet_v3")


def build_backbone(name: str, width: int = 24) -> nn.Module:
    """Backbone by name (one of :data:`BACKBONES`), randomly initialised."""
    if name == "tiny":
        return TinyBackbone(width)
    if name in _TORCHVISION_NODES:
        return TorchvisionBackbone(name)
    raise FabricdetError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")


def load_backbone_weights(backbone: nn.Module, path: str | Path) -> None:
    """Load a local state dict (a torchvision checkpoint or our own) into ``backbone``.

    Keys may carry torchvision's names (``layer1.0.conv1.weight``) or ours (``body.`` prefix);
    classifier weights (``fc.``, ``classifier.``) are ignored.
    """
    path = Path(path)
    if not path.is_file():
        raise FabricdetError(f"backbone weights {path} not found; give a local .pt state dict")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    target = backbone.state_dict()
    mapped = {}
    for key, value in state.items():
        for candidate in (key, f"body.{key}"):
            if candidate in target and target[candidate].shape == value.shape:
                mapped[candidate] = value
                break
    if not mapped:
        raise FabricdetError(
            f"no tensor in {path} matches the backbone's parameters; is it the right network?"
        )
    backbone.load_state_dict(mapped, strict=False)
