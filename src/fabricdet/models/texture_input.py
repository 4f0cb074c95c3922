"""The texture-suppressed channel the detector reads beside the image.

A woven fabric is a strong periodic pattern and a defect a small break in it. Learning to see
the break through the weave from scratch costs the network many steps; the notch filter of
:func:`fabricdet.masks.texture.periodic_background` removes the weave directly, leaving the
defects (knots, holes, stains and one-pixel threads) on a flat residual. The detector takes
that residual as a fourth input channel, so the backbone starts from an image in which the
defects already stand out. On an image without a periodic background (general photographs)
the filter finds no peaks and the channel is the grey image minus its mean: harmless.

One grey channel rather than three: the weave has the same period in every colour channel,
and a third of the transforms costs a third of the time.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fabricdet.masks.texture import texture_residual

#: Residual values beyond this many standard deviations are clipped (a hole or a dark stain
#: would otherwise dominate the channel's scale).
CLIP_SIGMA = 6.0
#: Width of the soft notch (:func:`fabricdet.masks.texture.periodic_background`): the channel
#: must not jump when float rounding differs (an exported graph, another device), or the
#: detections would.
SOFTNESS = 0.05
#: Smallest residual scale divided by (normalised units: a sixteenth of a grey level).
MIN_SCALE = 1e-3


@torch.no_grad()
def texture_channel(images: Tensor, sides_multiple_of: int = 1) -> Tensor:
    """The grey image minus its woven background, in units of its own standard deviation.

    No gradient flows through it (it is a fixed preprocessing step of the input).

    Args:
        images (Tensor[B, 3, H, W]): normalised images.
        sides_multiple_of: a number H and W are multiples of (the batch's padding divisor;
            :func:`fabricdet.masks.texture.periodic_background`).

    Returns:
        Tensor[B, 1, H, W], clipped to ``+-CLIP_SIGMA``.
    """
    residual = texture_residual(
        images.mean(1, keepdim=True).float(),
        softness=SOFTNESS,
        sides_multiple_of=sides_multiple_of,
    )
    # The floor keeps a flat image (whose residual is float rounding) at zero.
    scale = residual.std(dim=(1, 2, 3), keepdim=True).clamp_min(MIN_SCALE)
    return (residual / scale).clamp(-CLIP_SIGMA, CLIP_SIGMA).to(images.dtype)
