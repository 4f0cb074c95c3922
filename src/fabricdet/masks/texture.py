"""Texture suppression: the image minus its periodic (woven) background, and the neighbour
affinities computed on that residual.

Raw colour affinity (BoxInst's ``exp(-||dLab|| / 2)``) reads every warp/weft crossing of a
woven fabric as an edge: neighbours two pixels apart straddle a bright yarn and a dark gap,
so the pairwise loss would cut masks along the weave. A weave is periodic, so its energy sits
in sharp peaks of the 2-D spectrum (the fundamental yarn frequencies and their harmonics),
while a defect is local and spreads its energy over many frequencies. Notching the peaks
removes the weave and keeps the defect, including one-pixel lines, which a spatial low-pass
filter would smear.

- :func:`periodic_background`: the notch filter, batched, on the transforms of
  :mod:`fabricdet.masks.dft` (``torch.fft``; matrix products in exported ONNX graphs);
- :func:`texture_residual`: image minus background;
- :func:`neighbour_affinity`: ``exp(-||r_i - r_j|| / (theta * s))`` over the 8 neighbours at a
  dilation, ``s`` the map's own robust neighbour-difference scale (so one threshold works for
  any contrast and any sampling grid).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from fabricdet.masks import dft

#: Offsets (dy, dx) of the 8 neighbours, in the order of every ``[..., 8, H, W]`` tensor here.
NEIGHBOUR_OFFSETS: tuple[tuple[int, int], ...] = (
    (-1, -1),
    (-1, 0),
    (-1, 1),
    (0, -1),
    (0, 1),
    (1, -1),
    (1, 0),
    (1, 1),
)


def periodic_background(
    images: Tensor,
    peak_ratio: float = 4.0,
    min_radius: float = 3.0,
    reach: int = 4,
    softness: float = 0.0,
    sides_multiple_of: int = 1,
) -> Tensor:
    """The periodic part of each image (the weave), by notching the spectrum's peaks.

    A frequency bin is a peak when its log-magnitude exceeds, by ``log(peak_ratio)``, both
    the lowest of its neighbours 2..``reach`` bins away along ``kx`` and the lowest of those
    along ``ky``. A weave's peaks are isolated in both directions. A straight thread
    crossing the whole image is not: its energy forms a ridge along one axis of the
    spectrum, which fails the test along the ridge, so the thread is kept (a plain local
    maximum test would notch it away). Neighbours at distance 1 are skipped because a
    slightly skewed or jittered weave spreads each peak over them; the peaks are then
    dilated by one bin for the same reason. Bins within ``min_radius`` of DC are never
    notched: large defects (stains, bars) live there.

    Args:
        images (Tensor[B, C, H, W]): any float images.
        peak_ratio: peak-to-floor magnitude ratio.
        min_radius: protected low-frequency radius, in bins.
        reach: farthest neighbour (bins) in each direction that defines the floor.
        softness: 0, a bin is notched or not; above 0, the notch depth is a sigmoid of the
            excess over the margin with this width (log units), so the background changes
            continuously with the image: float rounding (another runtime, another device)
            cannot flip a bin and change the output by a whole yarn pattern.
        sides_multiple_of: a number H and W are known to be multiples of (a padded batch's
            divisor): lets an exported graph's transforms take the faster four-step split
            (:mod:`fabricdet.masks.dft`).

    Returns:
        Tensor[B, C, H, W]: the background, zero mean per channel.
    """
    h, w = images.shape[-2:]
    if h < 2 or w < 2:
        return torch.zeros_like(images)
    x = (images - images.mean(dim=(-2, -1), keepdim=True)).float()
    # Peaks are found on the Hann-windowed spectrum: a period that is not a whole number of
    # bins leaks sinc tails along both axes, which would fail the isolation test below.
    # One notch per image, from the channel-summed magnitude: the weave's period is the
    # same in every colour channel.
    hann = torch.outer(_hann(h, x.device), _hann(w, x.device))
    magnitude = dft.rfft2_magnitude(x * hann, sides_multiple_of=sides_multiple_of)
    windowed = magnitude.sum(1, keepdim=True)  # [B, 1, H, W//2+1]
    logm = torch.log(windowed + 1e-6)  # [B, 1, H, Wf]
    wf = logm.shape[-1]
    # The spectrum wraps around in H (full axis); the half axis W is padded by replication.
    col = F.pad(logm, (0, 0, reach, reach), mode="circular")
    row = F.pad(logm, (reach, reach, 0, 0), mode="replicate")
    offsets = [d for d in range(-reach, reach + 1) if abs(d) >= 2]
    floor_y = torch.stack([col[..., reach + d : reach + d + h, :] for d in offsets]).amin(0)
    floor_x = torch.stack([row[..., reach + d : reach + d + wf] for d in offsets]).amin(0)
    margin = math.log(peak_ratio)
    excess = torch.minimum(logm - floor_y, logm - floor_x) - margin
    peaks = (excess > 0).float() if softness <= 0 else torch.sigmoid(excess / softness)
    # |frequency| in bins, as fftfreq(h).abs() * h and rfftfreq(w) * w (spelt out: the ONNX
    # exporter has no fftfreq).
    ky = torch.arange(h, device=images.device, dtype=torch.float32)
    fy = torch.minimum(ky, h - ky)  # [H]
    fx = torch.arange(wf, device=images.device, dtype=torch.float32)  # [Wf]
    radius = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    outside = radius > min_radius
    peaks = peaks * outside
    peaks = F.max_pool2d(peaks, 3, stride=1, padding=1) * outside  # dilate by one bin
    back = dft.spectral_filter(x, peaks, sides_multiple_of=sides_multiple_of)
    return back.to(images.dtype)


def _hann(n: int, device: torch.device) -> Tensor:
    """``torch.hann_window(n, periodic=False)``, spelt out: torch.export fixes the length of
    hann_window, which would freeze the exported detector's image size."""
    k = torch.arange(n, device=device, dtype=torch.float32)
    return 0.5 - 0.5 * torch.cos(k * (2.0 * math.pi / (n - 1)))


def texture_residual(images: Tensor, **kwargs: float) -> Tensor:
    """``images`` minus their periodic background (:func:`periodic_background`, which takes
    ``kwargs``).

    Args:
        images (Tensor[B, C, H, W]).

    Returns:
        Tensor[B, C, H, W]: the residual, zero mean per channel.
    """
    x = images - images.mean(dim=(-2, -1), keepdim=True)
    return x - periodic_background(images, **kwargs)  # type: ignore[arg-type]


def neighbours(x: Tensor, dilation: int = 1) -> Tensor:
    """The 8 neighbours of every pixel (zero beyond the border).

    Args:
        x (Tensor[N, C, H, W]).
        dilation: neighbour distance in pixels.

    Returns:
        Tensor[N, C, 8, H, W], neighbours in :data:`NEIGHBOUR_OFFSETS` order.
    """
    n, c, h, w = x.shape
    d = dilation
    cols = F.unfold(x, kernel_size=3, dilation=d, padding=d)  # [N, C*9, H*W]
    cols = cols.view(n, c, 9, h, w)
    return torch.cat([cols[:, :, :4], cols[:, :, 5:]], 2)


def neighbour_valid(h: int, w: int, dilation: int, device: torch.device) -> Tensor:
    """Which neighbours of :func:`neighbours` lie inside the map. Tensor[8, H, W] bool."""
    ones = torch.ones(1, 1, h, w, device=device)
    return neighbours(ones, dilation)[0, 0] > 0


def neighbour_affinity(residual: Tensor, dilation: int = 2, theta: float = 2.0) -> Tensor:
    """Appearance similarity of every pixel with its 8 neighbours, in (0, 1].

    ``exp(-||r_i - r_j|| / (theta * s))`` with ``s`` the median neighbour difference of each
    map: most neighbour pairs lie inside one region, so the median is the map's noise level
    and ``theta`` says how many noise levels still count as "the same".

    Args:
        residual (Tensor[N, C, H, W]): texture-suppressed maps (one per instance or image).
        dilation: neighbour distance.
        theta: similarity scale in units of ``s``.

    Returns:
        Tensor[N, 8, H, W]; 0 for neighbours beyond the border.
    """
    n, _, h, w = residual.shape
    nb = neighbours(residual, dilation)  # [N, C, 8, H, W]
    diff = (residual.unsqueeze(2) - nb).norm(dim=1)  # [N, 8, H, W]
    valid = neighbour_valid(h, w, dilation, residual.device)
    inside = diff.masked_fill(~valid, float("nan")).flatten(1)
    scale = torch.nanmedian(inside, dim=1).values.clamp_min(1e-6).nan_to_num(1.0)  # [N]
    sim = torch.exp(-diff / (theta * scale.view(n, 1, 1, 1)))
    return sim * valid
