"""Throughput of the synthetic generator: images per second, JPEG writing included.

    python benchmarks/synth_speed.py                      # 40 images of 2446x1000, 2 workers
    python benchmarks/synth_speed.py --num-images 80 --workers 4 --repeats 3

Prints one line per repeat and the best and median rates.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from fabricdet.data.synth import generate_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-images", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--size", default="2446x1000", help="WxH")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    w, h = (int(v) for v in args.size.lower().split("x"))

    rates = []
    for r in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            generate_dataset(
                Path(tmp) / "ds",
                args.num_images,
                seed=args.seed + r,
                size=(w, h),
                workers=args.workers,
                progress=False,
            )
            elapsed = time.perf_counter() - start
        rates.append(args.num_images / elapsed)
        print(f"run {r + 1}: {args.num_images} images in {elapsed:.2f} s = {rates[-1]:.2f} img/s")
    print(
        f"synth {w}x{h}, {args.workers} workers: best {max(rates):.2f} img/s, "
        f"median {statistics.median(rates):.2f} img/s (JPEG writing and annotation files included)"
    )


if __name__ == "__main__":
    main()
