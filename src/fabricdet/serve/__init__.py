"""``fabricdet serve``: a loaded detector behind an HTTP service (FastAPI).

- ``POST /detect``: one image (multipart field ``file``, or the raw body with an ``image/*``
  content type) -> its detections, one entry of ``detections.json``
  (see :mod:`fabricdet.engine.predict`);
- ``GET /health``: status, model, limits, uptime and request counts;
- ``GET /``: a self-contained page to upload an image and see its detections drawn.

Importing this package imports FastAPI (and torch); the CLI imports it only when ``serve``
runs, so ``fabricdet --help`` stays light.
"""

from __future__ import annotations

from fabricdet.serve.app import ServeSettings, create_app
from fabricdet.serve.upload import ServeError, decode_image

__all__ = ["ServeError", "ServeSettings", "create_app", "decode_image"]
