"""Synthetic woven-fabric defect images with exact masks, in the Tianchi layout.

The bundled benchmark and demo data, and the only source of exact defect masks: fabrics are
rendered at thread level (plain, twill, satin, basket, yarn-dyed check/stripe and jacquard
weaves), defects are made by editing the weave or painting on its surface, and a camera model
adds skew, lamp fall-off, blur, sensor noise and JPEG compression.

- :func:`generate_dataset`: write a dataset folder (``fabricdet synth``);
- :func:`load_or_generate`: that folder, rendered only if it is not there yet;
- :func:`render_sample`: one image and its instances, in memory;
- :class:`SynthConfig`: the statistics (class frequencies, defects per image, ...).

Modules: :mod:`.weave` (patterns, shading table), :mod:`.fabric` (yarn state and rendering),
:mod:`.defects` (painters for the 34 raw Tianchi names), :mod:`.camera`, :mod:`.masks`,
:mod:`.scene` (one image), :mod:`.generate` (the dataset writer).
"""

from __future__ import annotations

from fabricdet.data.synth.config import SynthConfig, SynthError
from fabricdet.data.synth.generate import DEFAULT_SIZE, generate_dataset, load_or_generate
from fabricdet.data.synth.scene import render_sample

__all__ = [
    "DEFAULT_SIZE",
    "SynthConfig",
    "SynthError",
    "generate_dataset",
    "load_or_generate",
    "render_sample",
]
