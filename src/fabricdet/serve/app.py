"""The FastAPI application of ``fabricdet serve`` (see :mod:`fabricdet.serve`).

Inference runs on one dedicated worker thread: the model is not safe to call concurrently
(:func:`~fabricdet.engine.predict.detect_image` switches its NMS, and parallel forward passes
would only fight over the same cores), while reading and decoding uploads runs in FastAPI's
thread pool and overlaps with it. At most ``max_pending`` uploads are held at once; past that
the service answers 503 instead of queueing without bound.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect
from starlette.types import Message

from fabricdet import __version__
from fabricdet.engine.checkpoint import LoadedModel
from fabricdet.engine.config import ConfigError
from fabricdet.engine.distributed import resolve_device
from fabricdet.engine.inference import check_nms
from fabricdet.engine.predict import ImageDetections, detect_image
from fabricdet.errors import FabricdetError
from fabricdet.serve.page import PAGE
from fabricdet.serve.upload import (
    FIELD,
    HOW_TO,
    MULTIPART,
    ServeError,
    check_content_type,
    decode_image,
    too_large,
    upload_name,
)

log = logging.getLogger("fabricdet.serve")
T = TypeVar("T")

# Room for the multipart boundaries and part headers around a file of max_bytes.
_MULTIPART_OVERHEAD = 64 * 1024


@dataclass(frozen=True)
class ServeSettings:
    """How the service runs the model and what it accepts.

    Attributes:
        nms: NMS method; default the run's ``eval.nms``, else the model's own.
        score_threshold: report detections scoring at least this; default the run's
            ``eval.defect_threshold`` (as ``fabricdet detect``).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        max_bytes: largest accepted image file, in bytes.
        max_pixels: largest accepted image, in pixels (checked before decoding).
        max_pending: uploads held at once (decoding, waiting or running); more get 503.
        warm_up: run the model once at startup, so the first request is not the slow one.
    """

    nms: str | None = None
    score_threshold: float | None = None
    device: str = "auto"
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    max_pending: int = 16
    warm_up: bool = True

    def check(self) -> ServeSettings:
        """``self`` if every value is usable.

        Raises:
            ConfigError: naming the setting and what it accepts.
        """
        if self.nms is not None:
            check_nms(self.nms)
        if self.score_threshold is not None and not 0.0 <= self.score_threshold <= 1.0:
            raise ConfigError(f"score threshold {self.score_threshold}: expected 0..1")
        for name in ("max_bytes", "max_pixels", "max_pending"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} {getattr(self, name)}: expected an integer >= 1")
        return self


@dataclass
class Stats:
    """Request counters (only touched on the event loop thread, so no lock)."""

    served: int = 0
    rejected: int = 0
    failed: int = 0
    busy: int = 0
    pending: int = 0
    inference_s: float = 0.0


class Service:
    """The model, its single inference thread and the counters behind the endpoints."""

    def __init__(self, loaded: LoadedModel, settings: ServeSettings) -> None:
        self.loaded = loaded
        self.settings = settings.check()
        cfg = loaded.config
        self.nms = settings.nms or cfg.eval_nms()
        threshold = settings.score_threshold
        self.score_threshold = cfg.eval.defect_threshold if threshold is None else threshold
        self.device = str(resolve_device(settings.device))
        self.stats = Stats()
        self.started = time.monotonic()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fabricdet-infer")

    def _infer(self, image: np.ndarray, name: str) -> tuple[ImageDetections, float]:
        """Detections of one decoded image and the seconds they took (inference thread)."""
        start = time.perf_counter()
        det = detect_image(
            self.loaded,
            image,
            name,
            nms=self.nms,
            score_threshold=self.score_threshold,
            device=self.device,
        )
        return det, time.perf_counter() - start

    async def _on_inference_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def warm_up(self) -> None:
        """One pass on a blank image (allocations, lazy initialisation, cuDNN autotuning)."""
        blank = np.zeros((64, 64, 3), np.uint8)
        await self._on_inference_thread(self._infer, blank, "warm-up")

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    async def detect(self, request: Request) -> Response:
        """``POST /detect``: see the package docstring."""
        kind = check_content_type(request.headers.get("content-type"))
        if self.stats.pending >= self.settings.max_pending:
            self.stats.busy += 1
            raise ServeError(
                503,
                "busy",
                f"{self.stats.pending} images are already being processed; retry in a moment "
                "(or start the service with a larger --max-pending)",
            )
        self.stats.pending += 1
        try:
            data, name = await self._read_upload(request, kind)
            image = await run_in_threadpool(decode_image, data, self.settings.max_pixels)
            del data  # the encoded bytes are not needed while the image waits for the model
            det, seconds = await self._run_model(image, name)
        finally:
            self.stats.pending -= 1
        self.stats.served += 1
        self.stats.inference_s += seconds
        return JSONResponse(det.to_json(), headers={"X-Inference-Ms": f"{1000 * seconds:.1f}"})

    async def _run_model(self, image: np.ndarray, name: str) -> tuple[ImageDetections, float]:
        """:meth:`_infer` on the inference thread; a crash becomes a logged JSON 500."""
        try:
            return await self._on_inference_thread(self._infer, image, name)
        except FabricdetError:
            raise  # a user-level error, answered by its own handler
        except Exception as err:
            log.exception("inference failed on %s", name)
            raise ServeError(
                500,
                "inference_failed",
                f"the model failed on this image ({type(err).__name__}: {err}); the traceback "
                "is in the service's log. Retry, or report it with the image",
            ) from err

    async def _read_upload(self, request: Request, kind: str) -> tuple[bytes, str]:
        """The image bytes and the name to report for them."""
        max_bytes = self.settings.max_bytes
        if kind != MULTIPART:
            return await read_body(request, max_bytes, max_bytes), "upload"
        body = await read_body(request, max_bytes + _MULTIPART_OVERHEAD, max_bytes)
        data, filename = await multipart_file(request, body)
        if len(data) > max_bytes:
            raise too_large(len(data), max_bytes)
        return data, upload_name(filename)

    def health(self) -> dict[str, Any]:
        """``GET /health``."""
        s = self.stats
        mean_ms = round(1000 * s.inference_s / s.served, 2) if s.served else None
        return {
            "status": "ok",
            "version": __version__,
            "uptime_s": round(time.monotonic() - self.started, 3),
            "model": {
                "path": str(self.loaded.path),
                "step": self.loaded.step,
                "categories": [{"id": c.id, "name": c.name} for c in self.loaded.categories],
                "nms": self.nms,
                "score_threshold": self.score_threshold,
                "max_size": self.loaded.config.data.max_size,
                "device": self.device,
            },
            "limits": {
                "max_bytes": self.settings.max_bytes,
                "max_pixels": self.settings.max_pixels,
                "max_pending": self.settings.max_pending,
            },
            "requests": {
                "served": s.served,
                "rejected": s.rejected,
                "failed": s.failed,
                "busy": s.busy,
                "pending": s.pending,
                "mean_inference_ms": mean_ms,
            },
        }


async def read_body(request: Request, limit: int, max_bytes: int) -> bytes:
    """The request body, refused as soon as it exceeds ``limit`` bytes.

    A declared Content-Length is checked before reading; a chunked body is counted as it
    arrives, so an oversized upload is never held in memory whole.

    Raises:
        ServeError: 413 (the message quotes ``max_bytes``, the limit the user controls).
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(int(declared), max_bytes)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large(None, max_bytes)
            chunks.append(chunk)
    except ClientDisconnect:
        raise ServeError(
            400, "incomplete_upload", "the client disconnected during the upload; send it again"
        ) from None
    return b"".join(chunks)


async def multipart_file(request: Request, body: bytes) -> tuple[bytes, str | None]:
    """The bytes and client file name of form field ``file`` of a multipart ``body``.

    Raises:
        ServeError: 400 for a malformed form, 422 when the field is missing or not a file.
    """

    async def replay() -> Message:
        # The body was already read under the size limit; parse it from memory.
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=1, max_fields=16)
    except (MultiPartException, HTTPException) as err:
        detail = getattr(err, "detail", None) or getattr(err, "message", str(err))
        message = f"malformed multipart form ({detail}); {HOW_TO}"
        raise ServeError(400, "bad_multipart", message) from None
    try:
        upload = form.get(FIELD)
        if upload is None:
            fields = ", ".join(repr(k) for k in form) or "none"
            raise ServeError(
                422,
                "missing_field",
                f"the form has no field '{FIELD}' (fields: {fields}); {HOW_TO}",
            )
        if not isinstance(upload, UploadFile):
            raise ServeError(
                422,
                "field_not_a_file",
                f"form field '{FIELD}' is text, not a file upload; {HOW_TO}",
            )
        return await upload.read(), upload.filename
    finally:
        await form.close()


def create_app(loaded: LoadedModel, settings: ServeSettings | None = None) -> FastAPI:
    """The HTTP service around ``loaded`` (see :mod:`fabricdet.serve`).

    Raises:
        FabricdetError: an unusable setting (unknown NMS method, limit below 1, ...).
    """
    service = Service(loaded, settings or ServeSettings())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if service.settings.warm_up:
            await service.warm_up()
        try:
            yield
        finally:
            service.close()

    app = FastAPI(
        title="fabricdet",
        version=__version__,
        description="Fabric defect detection: POST an image to /detect.",
        lifespan=lifespan,
    )
    app.state.service = service
    _add_error_handlers(app, service)

    @app.post("/detect")
    async def detect(request: Request) -> Response:
        return await service.detect(request)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return service.health()

    @app.get("/", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE)

    return app


def _add_error_handlers(app: FastAPI, service: Service) -> None:
    """Refusals and failures answer JSON ``{"error", "status", "message"}`` and are counted."""

    @app.exception_handler(ServeError)
    async def refused(_: Request, err: ServeError) -> JSONResponse:
        if err.status < 500:
            service.stats.rejected += 1
        elif err.status != 503:  # 503 "busy" has its own counter
            service.stats.failed += 1
        headers = {"Retry-After": "1"} if err.status == 503 else None
        return JSONResponse(err.to_json(), status_code=err.status, headers=headers)

    @app.exception_handler(FabricdetError)
    async def model_error(_: Request, err: FabricdetError) -> JSONResponse:
        # A user-level error from the engine on an image that passed the checks (e.g. an
        # array the model cannot take): the request's fault, reported as such.
        service.stats.rejected += 1
        body = ServeError(400, "bad_image", str(err)).to_json()
        return JSONResponse(body, status_code=400)

    @app.exception_handler(Exception)
    async def crashed(_: Request, err: Exception) -> JSONResponse:
        # A bug outside the model call: the client still gets JSON, and the server logs the
        # traceback (Starlette re-raises the exception to it after this answer is sent).
        service.stats.failed += 1
        body = ServeError(
            500,
            "internal_error",
            f"the service failed on this request ({type(err).__name__}: {err}); the traceback "
            "is in the service's log. Retry, or report it with the image",
        ).to_json()
        return JSONResponse(body, status_code=500)
