"""Latency of an evaluation: per-image milliseconds summarised and drawn as a histogram.

The per-image times are those :func:`fabricdet.engine.evaluate.predict_dataset` measures: each
timed batch (model call and post-processing, after warm-up) divided evenly among its images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fabricdet.report.plots import figure_png, new_figure


@dataclass(frozen=True)
class LatencyStats:
    """Summary of per-image latencies in milliseconds (NaN when nothing was timed)."""

    count: int
    mean: float
    median: float
    p90: float
    p99: float
    max: float

    @classmethod
    def of(cls, ms: Sequence[float]) -> LatencyStats:
        a = np.asarray(ms, dtype=np.float64)
        a = a[np.isfinite(a)]
        if not a.size:
            nan = float("nan")
            return cls(0, nan, nan, nan, nan, nan)
        p50, p90, p99 = np.percentile(a, [50, 90, 99])
        return cls(a.size, float(a.mean()), float(p50), float(p90), float(p99), float(a.max()))

    def rows(self) -> list[list[object]]:
        """``[name, value]`` rows for a report table."""
        return [
            ["images timed", self.count],
            ["mean (ms/image)", self.mean],
            ["median", self.median],
            ["90th percentile", self.p90],
            ["99th percentile", self.p99],
            ["max", self.max],
        ]


def plot_latency(ms: Sequence[float]) -> bytes:
    """Histogram of per-image latencies (ms) with the median marked; PNG bytes."""
    a = np.asarray(ms, dtype=np.float64)
    a = a[np.isfinite(a)]
    fig = new_figure(6.0, 2.8)
    ax = fig.add_subplot(1, 1, 1)
    if a.size:
        ax.hist(a, bins=min(40, max(5, a.size // 4)), color="#4c72b0")
        ax.axvline(float(np.median(a)), color="#c44e52", linestyle="--", label="median")
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "nothing timed", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("ms per image")
    ax.set_ylabel("images")
    return figure_png(fig)
