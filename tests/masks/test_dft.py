"""The matrix-product Fourier transforms of exported graphs equal torch.fft's."""

from __future__ import annotations

import pytest
import torch

from fabricdet.masks import dft


# (shape, what its sides are declared multiples of): 1 takes one dense product per axis, the
# others the four-step split with short length gcd(k, 32): 32, 16 and 4 here. The 2464-wide
# rows are a full-width Tianchi frame's: index products up to 6e6 would lose float32
# precision as angles, unless reduced modulo the length first.
@pytest.mark.parametrize(
    ("shape", "multiple_of"),
    [
        ((1, 1, 8, 5), 1),
        ((2, 3, 7, 6), 1),
        ((2, 1, 33, 32), 1),
        ((1, 1, 4, 2464), 1),
        ((1, 1, 64, 160), 32),
        ((2, 1, 48, 80), 16),
        ((1, 1, 32, 2464), 32),
        ((1, 1, 12, 20), 4),
    ],
)
def test_the_transforms_equal_torch_fft(shape: tuple[int, ...], multiple_of: int) -> None:
    g = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(shape, generator=g)
    h, w = shape[-2:]
    spectrum = torch.fft.rfft2(x)
    scale = spectrum.abs().max()
    magnitude = dft.rfft2_magnitude(x, as_matrices=True, sides_multiple_of=multiple_of)
    torch.testing.assert_close(magnitude / scale, spectrum.abs() / scale)
    # A gain shared by the channels, as the texture notch is (broadcast over C).
    gain = torch.rand(shape[0], 1, h, w // 2 + 1, generator=g)
    expected = torch.fft.irfft2(spectrum * gain, s=(h, w))
    got = dft.spectral_filter(x, gain, as_matrices=True, sides_multiple_of=multiple_of)
    torch.testing.assert_close(got / scale, expected / scale, atol=1e-6, rtol=0)
