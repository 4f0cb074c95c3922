"""Real 2-D Fourier transforms: ``torch.fft``, or matrix products inside exported ONNX graphs.

ONNX runtimes run the ``DFT`` operator tens of times slower than ``torch.fft`` runs an FFT
(onnxruntime's CPU kernel), while matrix products are what they optimise: with ``DFT`` ops for
the texture channel the exported detector ran 3.4x slower than eager PyTorch at 640x256, with
these 1.4x (``benchmarks/export_speed.py``). So while either ONNX exporter traces, the
transforms here are products with cosine and sine matrices, built in the graph from the
input's size (an exported graph keeps dynamic image sizes); everywhere else (eager,
TorchScript) they are ``torch.fft``."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _cos_sin(n: int, m: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """``cos`` and ``sin`` of ``2 pi j k / n`` for ``j < n``, ``k < m``: Tensor[n, m] each.

    ``j k`` is reduced modulo ``n`` in integers first, so the angle stays exact at any size
    (``fmod`` rather than ``remainder``, equal for non-negative integers: the ONNX exporter
    translates only ``fmod`` with a symbolic ``n``).
    """
    j = torch.arange(n, device=device)
    k = torch.arange(m, device=device)
    angle = torch.fmod(j[:, None] * k[None, :], n).float() * (2.0 * math.pi / n)
    return torch.cos(angle), torch.sin(angle)


def _rfft2(x: Tensor) -> tuple[Tensor, Tensor]:
    """Real and imaginary parts of ``torch.fft.rfft2(x)``.

    Args:
        x (Tensor[..., H, W]) float32.

    Returns:
        two Tensor[..., H, W // 2 + 1].
    """
    h, w = x.shape[-2:]
    cos_w, sin_w = _cos_sin(w, w // 2 + 1, x.device)  # [W, Wf]
    cos_h, sin_h = _cos_sin(h, h, x.device)  # [H, H], symmetric
    # Along W: sum_n x[n] exp(-2 pi i n k / W).
    re_w, im_w = x @ cos_w, -(x @ sin_w)
    # Along H: (cos - i sin) (re + i im).
    return cos_h @ re_w + sin_h @ im_w, cos_h @ im_w - sin_h @ re_w


def _irfft2(re: Tensor, im: Tensor, w: int) -> Tensor:
    """``torch.fft.irfft2(torch.complex(re, im), s=(H, w))``.

    Args:
        re, im (Tensor[..., H, w // 2 + 1]).

    Returns:
        Tensor[..., H, w].
    """
    h, wf = re.shape[-2:]
    cos_h, sin_h = _cos_sin(h, h, re.device)
    # Inverse along H: (cos + i sin) (re + i im) / H.
    re_h = (cos_h @ re - sin_h @ im) / h
    im_h = (cos_h @ im + sin_h @ re) / h
    # Inverse along W from the half spectrum: bins other than DC and Nyquist stand for their
    # mirror images too, so they count twice; the imaginary parts of DC and Nyquist drop out
    # (their sines are zero), as in irfft.
    k = torch.arange(wf, device=re.device)
    twice = (2 - (k == 0).long() - (2 * k == w).long()).float()
    cos_w, sin_w = _cos_sin(w, wf, re.device)  # [W, Wf]
    return (re_h @ (cos_w * twice).T - im_h @ (sin_w * twice).T) / w


def _as_matrices(as_matrices: bool | None) -> bool:
    """Whether to use matrix products: as asked, or (None) while an ONNX exporter traces."""
    if as_matrices is not None:
        return as_matrices
    return torch.compiler.is_exporting() or torch.onnx.is_in_onnx_export()


def rfft2_magnitude(x: Tensor, as_matrices: bool | None = None) -> Tensor:
    """``torch.fft.rfft2(x).abs()``. ``x (Tensor[..., H, W])`` -> ``Tensor[..., H, W//2+1]``.

    ``as_matrices``: matrix products (True), ``torch.fft`` (False), or the module's rule (None).
    """
    if not _as_matrices(as_matrices):
        return torch.fft.rfft2(x).abs()
    re, im = _rfft2(x)
    return torch.sqrt(re * re + im * im)


def spectral_filter(x: Tensor, gain: Tensor, as_matrices: bool | None = None) -> Tensor:
    """``torch.fft.irfft2(torch.fft.rfft2(x) * gain, s=x.shape[-2:])``.

    Args:
        x (Tensor[..., H, W]); gain (Tensor[..., H, W // 2 + 1]) real, broadcastable.
        as_matrices: as in :func:`rfft2_magnitude`.

    Returns:
        Tensor[..., H, W].
    """
    if not _as_matrices(as_matrices):
        return torch.fft.irfft2(torch.fft.rfft2(x) * gain, s=x.shape[-2:])
    re, im = _rfft2(x)
    return _irfft2(re * gain, im * gain, x.shape[-1])
