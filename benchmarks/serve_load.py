"""Load test of ``fabricdet serve``: latency, throughput, errors and memory growth.

Starts the service (``python -m fabricdet serve``) with uvicorn on a free loopback port in a
subprocess, waits for ``/health``, sends ``--warmup`` untimed requests, then ``--requests``
multipart ``POST /detect`` of one image from ``--concurrency`` parallel clients (httpx), and
prints a markdown table: latency percentiles, throughput, errors (non-200 answers, answers
without the detection keys, answers that differ from the first one, timeouts) and the server's
resident memory (``VmRSS`` of ``/proc/PID/status``) after the warm-up and at the end.

Without ``--model`` a tiny model is trained for two steps on a small synthetic dataset in a
temporary folder (seconds); without ``--image`` one synthetic fabric image of ``--image-size``
is rendered. Exits 1 on any error, so it can gate a release.

    python benchmarks/serve_load.py [--model RUN_OR_MODEL_PT] [--image IMAGE]
        [--requests 200] [--concurrency 4] [--timeout-s 120] [--warmup 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

DETECTION_KEYS = {
    "file",
    "width",
    "height",
    "boxes",
    "scores",
    "labels",
    "category_ids",
    "category_names",
}


@dataclass
class Results:
    """What the load phase saw."""

    latencies_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    first: dict | None = None  # the first good answer: every other must equal it
    wall_s: float = 0.0


def free_port() -> int:
    """A TCP port free on loopback now (the server binds it a moment later; a collision
    shows up as the server exiting at startup, reported with its log)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mib(pid: int) -> float:
    """Resident memory of a process in MiB, from ``/proc/PID/status``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024  # reported in kB
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


def tiny_model(work: Path) -> Path:
    """A ``tiny``-preset model trained for two steps on 8 small synthetic images."""
    from fabricdet.data.synth import generate_dataset
    from fabricdet.engine import apply_overrides, preset, train

    ds = generate_dataset(work / "synth", 8, seed=0, size=(256, 128), workers=1, progress=False)
    cfg = apply_overrides(preset("tiny"), ["train.max_steps=2"])
    return train(cfg, ds, work / "run", progress=False)


def synthetic_image(work: Path, size: tuple[int, int]) -> Path:
    """One rendered fabric image of ``size`` (width, height) with defects."""
    from fabricdet.data.synth import generate_dataset

    ds = generate_dataset(work / "image", 1, seed=7, size=size, workers=1, progress=False)
    return ds.image_path(ds.images[0])


def start_server(model: Path, port: int, device: str, log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "fabricdet", "serve", str(model), "--port", str(port)]
    cmd += ["--device", device, "--log-level", "warning"]
    with log.open("wb") as out:  # the child keeps its own handle
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)


def wait_ready(proc: subprocess.Popen[bytes], url: str, timeout_s: float, log: Path) -> dict:
    """``/health`` once the server answers it (it loads and warms up the model first)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            resp = httpx.get(f"{url}/health", timeout=2)
            if resp.status_code == 200:
                return resp.json()
        except httpx.TransportError:
            pass  # not listening yet
        time.sleep(0.2)
    raise RuntimeError(f"the server did not answer /health in {timeout_s} s:\n{log.read_text()}")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """Ctrl-C (uvicorn's graceful shutdown), then kill if it hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def check_answer(resp: httpx.Response, res: Results) -> str | None:
    """Why an answer is wrong, or None."""
    if resp.status_code != 200:
        return f"HTTP {resp.status_code}: {resp.text[:200]}"
    body = resp.json()
    missing = DETECTION_KEYS - set(body)
    if missing:
        return f"answer lacks keys {sorted(missing)}"
    if res.first is None:
        res.first = body
    elif body != res.first:
        return "answer differs from the first answer for the same image"
    return None


async def one(client: httpx.AsyncClient, url: str, files: dict, res: Results) -> None:
    start = time.perf_counter()
    try:
        resp = await client.post(f"{url}/detect", files=files)
    except httpx.HTTPError as err:
        res.errors.append(f"{type(err).__name__}: {err}")
        return
    res.latencies_s.append(time.perf_counter() - start)
    problem = check_answer(resp, res)
    if problem:
        res.errors.append(problem)


async def load(url: str, image: Path, n: int, concurrency: int, timeout_s: float) -> Results:
    """``n`` requests from ``concurrency`` clients; those not done in ``timeout_s`` are
    errors."""
    res = Results()
    files = {"file": (image.name, image.read_bytes())}
    todo = iter(range(n))
    limits = httpx.Limits(max_connections=concurrency)

    async def worker(client: httpx.AsyncClient) -> None:
        for _ in todo:  # a shared iterator: each request is sent once, by whichever is free
            await one(client, url, files, res)

    async with httpx.AsyncClient(timeout=timeout_s, limits=limits) as client:
        start = time.perf_counter()
        tasks = [asyncio.create_task(worker(client)) for _ in range(concurrency)]
        _, pending = await asyncio.wait(tasks, timeout=timeout_s)
        for t in pending:
            t.cancel()
        res.wall_s = time.perf_counter() - start
    finished = len(res.latencies_s) + len(res.errors)
    if finished < n:
        res.errors.append(f"{n - finished} requests not finished within --timeout-s {timeout_s}")
    return res


def warm_up(url: str, image: Path, n: int) -> None:
    files = {"file": (image.name, image.read_bytes())}
    for _ in range(n):
        httpx.post(f"{url}/detect", files=files, timeout=60).raise_for_status()


def table(rows: list[tuple[str, str]]) -> str:
    lines = ["| metric | value |", "|---|---|"]
    return "\n".join(lines + [f"| {k} | {v} |" for k, v in rows])


def report(res: Results, args: argparse.Namespace, health: dict, rss: tuple[float, float]) -> str:
    ms = np.array(res.latencies_s) * 1000
    p50, p90, p99 = np.percentile(ms, [50, 90, 99]) if len(ms) else (float("nan"),) * 3
    done = len(res.latencies_s)
    detections = len(res.first["scores"]) if res.first else "-"
    return table(
        [
            ("requests (concurrency)", f"{args.requests} ({args.concurrency})"),
            ("errors", str(len(res.errors))),
            ("latency p50 / p90 / p99 (ms)", f"{p50:.1f} / {p90:.1f} / {p99:.1f}"),
            ("latency max (ms)", f"{ms.max():.1f}" if done else "-"),
            ("throughput (req/s)", f"{done / res.wall_s:.2f}" if res.wall_s else "-"),
            ("server inference mean (ms)", str(health["requests"]["mean_inference_ms"])),
            ("detections per answer", str(detections)),
            ("server RSS after warm-up / end (MiB)", f"{rss[0]:.1f} / {rss[1]:.1f}"),
            ("server RSS growth (MiB)", f"{rss[1] - rss[0]:+.1f}"),
        ]
    )


def parse_size(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    return int(w), int(h)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="model.pt or run folder (default: train one)")
    parser.add_argument("--image", type=Path, help="image to send (default: a synthetic one)")
    parser.add_argument("--image-size", type=parse_size, default=(2446, 1000), help="WxH")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--timeout-s", type=float, default=120.0, help="for the load phase")
    parser.add_argument("--warmup", type=int, default=5, help="untimed requests first")
    parser.add_argument("--startup-timeout-s", type=float, default=120.0)
    parser.add_argument("--device", default="cpu", help="the server's --device")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="serve_load_") as tmp:
        work = Path(tmp)
        if args.model is None:
            print("training a tiny model (2 steps)...", file=sys.stderr, flush=True)
        model = args.model or tiny_model(work)
        image = args.image or synthetic_image(work, args.image_size)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = work / "server.log"
        proc = start_server(model, port, args.device, log)
        try:
            wait_ready(proc, url, args.startup_timeout_s, log)
            warm_up(url, image, args.warmup)
            rss_start = rss_mib(proc.pid)
            res = asyncio.run(load(url, image, args.requests, args.concurrency, args.timeout_s))
            rss_end = rss_mib(proc.pid)
            health = httpx.get(f"{url}/health", timeout=10).json()
        finally:
            stop_server(proc)
        m = health["model"]
        print(f"model {model} (NMS {m['nms']}, device {m['device']}, max_size {m['max_size']})")
        print(f"image {image.name}: {image.stat().st_size} bytes; {os.cpu_count()} CPUs visible\n")
        print(report(res, args, health, (rss_start, rss_end)))
        for err in res.errors[:10]:
            print(f"error: {err}", file=sys.stderr)
        if res.errors:
            print(
                f"{len(res.errors)} errors; server log:\n{log.read_text()[-4000:]}", file=sys.stderr
            )
    return 1 if res.errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
