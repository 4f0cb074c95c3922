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

    def __init__(self, width: int = 24, depth: int = 1, in_channels: int = 3) -> None:
        super().__init__()
        w = width
        self.stem = nn.Sequential(ConvBNAct(in_channels, w, 3, 2), ConvBNAct(w, w, 3, 1, groups=w))
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
    """A torchvision classification network cut at its stride-4..32 stages.

    Args:
        name: ``resnet18``, ``resnet50`` or ``mobilenet_v3``.
        in_channels: input channels (the first convolution is rebuilt for other than 3).
    """

    def __init__(self, name: str, in_channels: int = 3) -> None:
        super().__init__()
        if name == "mobilenet_v3":
            net = torchvision.models.mobilenet_v3_large(weights=None)
        else:
            net = getattr(torchvision.models, name)(weights=None)
        if in_channels != 3:
            parent, attr, first = _first_conv(net)
            setattr(parent, attr, nn.Conv2d(
                in_channels, first.out_channels, first.kernel_size, first.stride,
                first.padding, bias=first.bias is not None,
            ))  # fmt: skip
        self.body = create_feature_extractor(net, return_nodes=_TORCHVISION_NODES[name])
        with torch.no_grad():
            probe = self.body(torch.zeros(1, in_channels, 64, 64))
        self.out_channels = {k: v.shape[1] for k, v in probe.items()}

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        return OrderedDict(self.body(x))


def _first_conv(net: nn.Module) -> tuple[nn.Module, str, nn.Conv2d]:
    """(parent module, attribute name, layer) of a torchvision network's first convolution."""
    for name, module in net.named_modules():
        if isinstance(module, nn.Conv2d):
            parent_name, _, attr = name.rpartition(".")
            return net.get_submodule(parent_name), attr, module
    raise FabricdetError(f"{type(net).__name__} has no convolution")


BACKBONES = ("tiny", "resnet18", "resnet50", "mobilenet_v3")


def build_backbone(name: str, width: int = 24, in_channels: int = 3) -> nn.Module:
    """Backbone by name (one of :data:`BACKBONES`), randomly initialised, reading
    ``in_channels`` input channels."""
    if name == "tiny":
        return TinyBackbone(width, in_channels=in_channels)
    if name in _TORCHVISION_NODES:
        return TorchvisionBackbone(name, in_channels)
    raise FabricdetError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")


def load_backbone_weights(backbone: nn.Module, path: str | Path) -> None:
    """Load a local state dict (a torchvision checkpoint or our own) into ``backbone``.

    Keys may carry torchvision's names (``layer1.0.conv1.weight``) or ours (``body.`` prefix);
    classifier weights (``fc.``, ``classifier.``) are ignored. RGB weights of a first
    convolution that reads more channels (the texture channel) fill its first three input
    channels; the others start at zero, so the loaded network sees the image as it was
    trained to.
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
            if candidate not in target:
                continue
            fitted = _fit(value, target[candidate])
            if fitted is not None:
                mapped[candidate] = fitted
                break
    if not mapped:
        raise FabricdetError(
            f"no tensor in {path} matches the backbone's parameters; is it the right network?"
        )
    backbone.load_state_dict(mapped, strict=False)


def _fit(value: Tensor, want: Tensor) -> Tensor | None:
    """``value`` shaped as ``want``: as is, or an RGB convolution widened by zero weights for
    the extra input channels; None when it does not fit."""
    if value.shape == want.shape:
        return value
    rgb_conv = value.dim() == 4 and value.shape[1] == 3 < want.shape[1]
    if rgb_conv and want.shape[:1] + want.shape[2:] == value.shape[:1] + value.shape[2:]:
        extra = value.new_zeros(value.shape[0], want.shape[1] - 3, *value.shape[2:])
        return torch.cat([value, extra], 1)
    return None
