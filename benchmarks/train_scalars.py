"""Training scalars of several runs side by side: losses and gradient norm along the schedule.

Reads each run's TensorBoard log (``RUN/tb``, written by ``fabricdet train``) and prints one
table per scalar: a row per run, a column per chosen step, each cell the mean over the logged
values within ``--window`` steps of it (single log points are noisy). It answers how two
configurations train differently, e.g. whether an extra loss crowds out the others.

    python benchmarks/train_scalars.py RUN [RUN ...] [--steps 100 500 1000 1500 2000 2400]
        [--window 50] [--tags train/grad_norm train/loss/cls ...]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def read_scalars(run: Path) -> dict[str, dict[int, float]]:
    """``{tag: {step: value}}`` of ``run/tb``; a resumed run's repeated steps keep the last."""
    log_dir = run / "tb"
    if not log_dir.is_dir():
        raise SystemExit(f"{run}: no TensorBoard log at {log_dir} (train with tensorboard on)")
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}


def window_mean(points: dict[int, float], step: int, window: int) -> float | None:
    values = [v for s, v in points.items() if abs(s - step) <= window]
    return statistics.mean(values) if values else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", type=Path, nargs="+")
    p.add_argument("--steps", type=int, nargs="+", default=[100, 500, 1000, 1500, 2000, 2400])
    p.add_argument("--window", type=int, default=50)
    p.add_argument("--tags", nargs="+", help="scalars to show (default: every one logged)")
    args = p.parse_args()
    logs = {run: read_scalars(run) for run in args.runs}
    tags = args.tags or sorted({t for log in logs.values() for t in log})
    for tag in tags:
        print(f"\n{tag} (mean within {args.window} steps)")
        print("| run | " + " | ".join(str(s) for s in args.steps) + " |")
        print("|---" * (len(args.steps) + 1) + "|")
        for run, log in logs.items():
            cells = [window_mean(log.get(tag, {}), s, args.window) for s in args.steps]
            shown = ["-" if c is None else f"{c:.3f}" for c in cells]
            print(f"| {run} | " + " | ".join(shown) + " |")


if __name__ == "__main__":
    main()
