"""Realistic detector candidates for the NMS tests (imported by them; pytest puts this folder
on the path)."""

from __future__ import annotations

import torch


def detector_candidates(
    n: int, seed: int, num_classes: int = 20, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Clusters of jittered boxes around objects (compact ones and 1:100 threads) on a
    2446x1000 image, decaying scores, some class confusion and low-score clutter."""
    g = torch.Generator().manual_seed(seed)
    num_objects = max(1, n // 12)
    size = torch.tensor([2446.0, 1000.0])
    wh = 8 + torch.rand(num_objects, 2, generator=g) * 150
    thin = torch.rand(num_objects, generator=g) < 0.3
    long_side = 200 + torch.rand(num_objects, generator=g) * 800
    short_side = 2 + 6 * torch.rand(num_objects, generator=g)
    horizontal = torch.rand(num_objects, generator=g) < 0.5
    wh[thin & horizontal] = torch.stack([long_side, short_side], 1)[thin & horizontal]
    wh[thin & ~horizontal] = torch.stack([short_side, long_side.clamp(max=990)], 1)[
        thin & ~horizontal
    ]
    centre = wh / 2 + torch.rand(num_objects, 2, generator=g) * (size - wh).clamp_min(1)
    owner = torch.randint(0, num_objects, (n,), generator=g)
    jitter = torch.randn(n, 4, generator=g) * 0.06 * wh[owner].repeat(1, 2)
    c, s = centre[owner], wh[owner]
    boxes = torch.cat([c - s / 2, c + s / 2], 1) + jitter
    boxes[:, 2:] = torch.maximum(boxes[:, 2:], boxes[:, :2] + 1)
    offset = jitter.abs().mean(1) / (0.06 * wh[owner].mean(1))
    peak = 0.5 + 0.45 * torch.rand(num_objects, generator=g)
    scores = peak[owner] * torch.exp(-0.5 * offset) * (0.7 + 0.3 * torch.rand(n, generator=g))
    labels = torch.randint(0, num_classes, (num_objects,), generator=g)[owner]
    confused = torch.rand(n, generator=g) < 0.1
    labels[confused] = torch.randint(0, num_classes, (int(confused.sum()),), generator=g)
    scores[torch.rand(n, generator=g) < 0.1] *= 0.2
    return boxes.to(dtype), scores.clamp(0.01, 1.0).to(dtype), labels
