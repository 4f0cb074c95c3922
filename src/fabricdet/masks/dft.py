"""Real 2-D Fourier transforms: ``torch.fft``, or matrix products inside exported ONNX graphs.

ONNX runtimes run the ``DFT`` operator tens of times slower than ``torch.fft`` runs an FFT
(onnxruntime's CPU kernel), while matrix products are what they optimise: with ``DFT`` ops for
the texture channel the exported detector ran 3.4x slower than eager PyTorch at 640x256
(``benchmarks/export_speed.py``). So while either ONNX exporter traces, the transforms here
are products with cosine and sine matrices, built in the graph from the input's size (an
exported graph keeps dynamic image sizes); everywhere else (eager, TorchScript) they are
``torch.fft``.

When the caller knows its sides are multiples of some ``k`` (a detector pads its input to a
multiple of its largest stride), a length ``n`` is transformed in Cooley-Tukey's four steps
with ``f = gcd(k, MAX_FACTOR)``: ``f`` transforms of length ``n / f``, a twiddle, then ``n / f``
transforms of length ``f``. That costs ``n (n / f + f)`` complex multiplications instead of
``n^2``: 23 times fewer on a 2464 px row with ``f = 32``. The split is fixed by ``k``, not by
the size at hand, so an exported graph takes the same path at every valid input size."""

from __future__ import annotations

import math

import torch
from torch import Tensor

#: The longest short length of the four-step split.
MAX_FACTOR = 32


def _cos_sin(rows: int, cols: int, n: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """``cos`` and ``sin`` of ``2 pi j k / n`` for ``j < rows``, ``k < cols``: Tensor[rows, cols].

    ``j k`` is reduced modulo ``n`` in integers first, so the angle stays exact at any size
    (``fmod`` rather than ``remainder``, equal for non-negative integers: the ONNX exporter
    translates only ``fmod`` with a symbolic ``n``).
    """
    j = torch.arange(rows, device=device)
    k = torch.arange(cols, device=device)
    angle = torch.fmod(j[:, None] * k[None, :], n).float() * (2.0 * math.pi / n)
    return torch.cos(angle), torch.sin(angle)


def _times_left(cos: Tensor, sin: Tensor, re: Tensor, im: Tensor | None) -> tuple[Tensor, Tensor]:
    """``(cos - i sin) @ (re + i im)``, ``im`` None meaning 0."""
    if im is None:
        return cos @ re, -(sin @ re)
    return cos @ re + sin @ im, cos @ im - sin @ re


def _dft(re: Tensor, im: Tensor | None, factor: int) -> tuple[Tensor, Tensor]:
    """Real and imaginary parts of ``torch.fft.fft(re + i im)`` along the last dimension.

    Args:
        re (Tensor[..., N]); im (Tensor[..., N]) or None (a real signal).
        factor: the four-step split's short length, a divisor of ``N`` (1: one dense product).

    Returns:
        two Tensor[..., N].
    """
    n = re.shape[-1]
    if factor == 1:
        cos, sin = _cos_sin(n, n, n, re.device)  # symmetric
        im_t = None if im is None else im.transpose(-1, -2)
        xr, xi = _times_left(cos, sin, re.transpose(-1, -2), im_t)
        return xr.transpose(-1, -2), xi.transpose(-1, -2)
    m = n // factor
    # Sample j = j1 + factor j2 at [j2, j1]: length-m transforms over j2 (the rows) ...
    shape = (*re.shape[:-1], m, factor)
    cos, sin = _cos_sin(m, m, m, re.device)
    yr, yi = _times_left(cos, sin, re.reshape(shape), None if im is None else im.reshape(shape))
    # ... times the twiddle exp(-2 pi i j1 k2 / n) at [k2, j1] ...
    cos, sin = _cos_sin(m, factor, n, re.device)
    yr, yi = yr * cos + yi * sin, yi * cos - yr * sin
    # ... then length-factor transforms over j1 (the columns): bin k2 + m k1 lands at [k1, k2]
    # once transposed, so flattening puts the bins in order.
    cos, sin = _cos_sin(factor, factor, factor, re.device)
    xr, xi = _times_left(cos, sin, yr.transpose(-1, -2), yi.transpose(-1, -2))  # [k1, k2]
    return xr.flatten(-2), xi.flatten(-2)


def _rfft2(x: Tensor, factor: int) -> tuple[Tensor, Tensor]:
    """Real and imaginary parts of ``torch.fft.rfft2(x)``.

    Args:
        x (Tensor[..., H, W]) float32; factor: as in :func:`_dft`, dividing H and W.

    Returns:
        two Tensor[..., H, W // 2 + 1].
    """
    wf = x.shape[-1] // 2 + 1
    re, im = _dft(x, None, factor)
    # Along H, on the half spectrum rfft keeps.
    re, im = _dft(re[..., :wf].transpose(-1, -2), im[..., :wf].transpose(-1, -2), factor)
    return re.transpose(-1, -2), im.transpose(-1, -2)


def _irfft2(re: Tensor, im: Tensor, w: int, factor: int) -> Tensor:
    """``torch.fft.irfft2(torch.complex(re, im), s=(H, w))``.

    Args:
        re, im (Tensor[..., H, w // 2 + 1]); factor: as in :func:`_dft`, dividing H and w.

    Returns:
        Tensor[..., H, w].
    """
    h = re.shape[-2]
    # The inverse transform is the conjugate of the forward one of the conjugate, over n.
    re, im = _dft(re.transpose(-1, -2), -im.transpose(-1, -2), factor)  # along H, conjugated
    re, im = re.transpose(-1, -2) / h, -im.transpose(-1, -2) / h
    # Each row is now the half spectrum of a real row: restore the other half by symmetry
    # (bin w - k is the conjugate of bin k).
    mirror = slice(1, (w + 1) // 2)
    re = torch.cat([re, re[..., mirror].flip(-1)], -1)
    im = torch.cat([im, -im[..., mirror].flip(-1)], -1)
    # The real part drops the imaginary parts of DC and Nyquist, as irfft does.
    return _dft(re, -im, factor)[0] / w


def _factor(sides_multiple_of: int) -> int:
    """The four-step split's short length for sides known to be multiples of this."""
    return math.gcd(sides_multiple_of, MAX_FACTOR)


def _as_matrices(as_matrices: bool | None) -> bool:
    """Whether to use matrix products: as asked, or (None) while an ONNX exporter traces."""
    if as_matrices is not None:
        return as_matrices
    return torch.compiler.is_exporting() or torch.onnx.is_in_onnx_export()


def rfft2_magnitude(
    x: Tensor, as_matrices: bool | None = None, sides_multiple_of: int = 1
) -> Tensor:
    """``torch.fft.rfft2(x).abs()``. ``x (Tensor[..., H, W])`` -> ``Tensor[..., H, W//2+1]``.

    ``as_matrices``: matrix products (True), ``torch.fft`` (False), or the module's rule (None).
    ``sides_multiple_of``: a number H and W are known to be multiples of (the four-step split).
    """
    if not _as_matrices(as_matrices):
        return torch.fft.rfft2(x).abs()
    re, im = _rfft2(x, _factor(sides_multiple_of))
    return torch.sqrt(re * re + im * im)


def spectral_filter(
    x: Tensor, gain: Tensor, as_matrices: bool | None = None, sides_multiple_of: int = 1
) -> Tensor:
    """``torch.fft.irfft2(torch.fft.rfft2(x) * gain, s=x.shape[-2:])``.

    Args:
        x (Tensor[..., H, W]); gain (Tensor[..., H, W // 2 + 1]) real, broadcastable.
        as_matrices, sides_multiple_of: as in :func:`rfft2_magnitude`.

    Returns:
        Tensor[..., H, W].
    """
    if not _as_matrices(as_matrices):
        return torch.fft.irfft2(torch.fft.rfft2(x) * gain, s=x.shape[-2:])
    factor = _factor(sides_multiple_of)
    re, im = _rfft2(x, factor)
    return _irfft2(re * gain, im * gain, x.shape[-1], factor)
