"""``fabricdet serve MODEL [--host H] [--port P]``: the model as an HTTP service.

``POST /detect`` takes one image (multipart field ``file``, or the raw body with an
``image/*`` Content-Type) and answers its detections as one entry of ``detections.json``
(see ``fabricdet detect``); ``GET /health`` reports the model and request counts; ``GET /``
is an upload page. For example::

    fabricdet serve runs/demo --port 8000
    curl -F file=@image.jpg http://127.0.0.1:8000/detect

The service has no authentication: keep the default loopback host, or put it behind a proxy
that adds it before binding to a public interface.
"""

from __future__ import annotations

import argparse
from pathlib import Path

_DEFAULT_MAX_BYTES = 20 * 1024 * 1024
_LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="model.pt (or the run folder holding it)")
    parser.add_argument("--host", default="127.0.0.1", help="interface (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default: %(default)s)")
    parser.add_argument(
        "--nms",
        default=None,
        help="NMS method, as for `fabricdet detect` (default: the run's; an unknown name "
        "is refused with the list of methods)",
    )
    parser.add_argument(
        "--score-threshold",
        type=float,
        default=None,
        help="report detections scoring at least this (default: the run's eval.defect_threshold)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument(
        "--max-bytes",
        type=int,
        default=_DEFAULT_MAX_BYTES,
        help="largest accepted image file in bytes; larger uploads get 413 (default: %(default)s)",
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=40_000_000,
        help="largest accepted image in pixels, checked before decoding (default: %(default)s)",
    )
    parser.add_argument(
        "--max-pending",
        type=int,
        default=16,
        help="images held at once (decoding, queued or running); more get 503 "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--log-level", default="info", choices=_LOG_LEVELS, help="uvicorn's log level"
    )


def run(args: argparse.Namespace) -> int:
    # Imported here, not at module level: `fabricdet serve --help` stays fast.
    import uvicorn

    from fabricdet.engine.checkpoint import load_model
    from fabricdet.engine.config import ConfigError
    from fabricdet.serve import ServeSettings, create_app

    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port}: expected 0..65535")

    settings = ServeSettings(
        nms=args.nms,
        score_threshold=args.score_threshold,
        device=args.device,
        max_bytes=args.max_bytes,
        max_pixels=args.max_pixels,
        max_pending=args.max_pending,
    ).check()  # before loading the model: a typo should not cost the load time
    loaded = load_model(args.model, device="cpu")
    app = create_app(loaded, settings)
    print(
        f"serving {loaded.path} at http://{args.host}:{args.port}/ "
        "(POST /detect, GET /health; Ctrl-C stops)",
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0
