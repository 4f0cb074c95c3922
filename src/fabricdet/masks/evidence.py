"""Image evidence for the refinement: how far each grid cell's texture-suppressed appearance
lies from the instance's own background.

The expanded grid's cells outside the box are background by construction, so they give the
background appearance and its spread without any model: a cell's distance from their mean,
in units of their median deviation, says how unlike the background it looks. This is the
refinement's model-free source of evidence, and the one that disagrees with the mask head
on low-contrast defects (stains, bars): those pixels keep their uncertainty.
"""

from __future__ import annotations

import torch
from torch import Tensor


def appearance_logit(
    residual: Tensor, box_masks: Tensor, gain: float = 1.5, offset: float = 3.0
) -> Tensor:
    """Foreground logit of every cell from its contrast with the outside-box cells.

    Args:
        residual (Tensor[N, C, M, M]): texture-suppressed image on each instance's grid.
        box_masks (Tensor[N, M, M]): 1 inside the box.
        gain: logit per unit of contrast.
        offset: contrast (in background deviations) at which the logit is 0.

    Returns:
        Tensor[N, M, M]; outside the box ``-gain * offset`` (background); 0 everywhere for an
        instance whose grid has no outside cells (no evidence).
    """
    out = (1.0 - box_masks).unsqueeze(1)  # [N, 1, M, M]
    count = out.sum((2, 3))  # [N, 1]
    mean = (residual * out).sum((2, 3)) / count.clamp_min(1.0)  # [N, C]
    dist = (residual - mean[:, :, None, None]).norm(dim=1)  # [N, M, M]
    outside = dist.masked_fill(box_masks > 0, float("nan")).flatten(1)
    scale = torch.nanmedian(outside, dim=1).values.nan_to_num(1.0).clamp_min(1e-6)  # [N]
    logit = gain * (dist / scale[:, None, None] - offset)
    logit = torch.where(box_masks > 0, logit, torch.full_like(logit, -gain * offset))
    return logit * (count[:, :, None] > 0).to(logit.dtype)
