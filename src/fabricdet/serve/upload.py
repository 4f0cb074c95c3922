"""Checking and decoding uploaded images, independent of the web framework.

Every refusal is a :class:`ServeError` carrying the HTTP status, a stable machine-readable
code and a message that names the problem and the fix; the app turns it into a JSON answer.
"""

from __future__ import annotations

import io
from pathlib import PurePosixPath

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from fabricdet.errors import FabricdetError

#: what the service decodes (formats both Pillow, for the header check, and OpenCV read).
FORMATS = "JPEG, PNG, BMP, TIFF or WebP"
MULTIPART = "multipart/form-data"
FIELD = "file"
#: how to send an image, appended to the messages of refused requests.
HOW_TO = (
    f"send the image as multipart form field '{FIELD}' (curl -F {FIELD}=@image.jpg URL/detect) "
    "or as the raw request body with Content-Type image/jpeg, image/png, ..."
)


class ServeError(FabricdetError):
    """A request the service refuses (or cannot answer), as an HTTP status and a JSON body.

    Attributes:
        status: HTTP status code (4xx: the client's request; 5xx: the service).
        code: short stable identifier, e.g. ``"not_an_image"``.
        message: what is wrong and how to fix it.
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def to_json(self) -> dict[str, str | int]:
        return {"error": self.code, "status": self.status, "message": self.message}


def media_type(content_type: str | None) -> str:
    """``"image/png"`` of ``"Image/PNG; charset=x"``; ``""`` when there is no header."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def check_content_type(content_type: str | None) -> str:
    """The media type of a ``POST /detect``: multipart form data or ``image/*``.

    Raises:
        ServeError: 415 for anything else (JSON, text, a missing header, ...).
    """
    kind = media_type(content_type)
    if kind == MULTIPART or kind.startswith("image/"):
        return kind
    got = f"Content-Type {kind!r}" if kind else "no Content-Type header"
    raise ServeError(415, "unsupported_media_type", f"the request has {got}; {HOW_TO}")


def too_large(size: int | None, max_bytes: int) -> ServeError:
    """The 413 answer for an upload of ``size`` bytes (None: not known, the read stopped)."""
    what = f"is {size} bytes" if size is not None else "is larger than that"
    return ServeError(
        413,
        "too_large",
        f"the limit is {max_bytes} bytes and the upload {what}; send a smaller (e.g. JPEG "
        "compressed or downscaled) image, or start the service with a larger --max-bytes",
    )


def upload_name(filename: str | None, default: str = "upload") -> str:
    """The client's file name without any folder (reported back as ``file``; never opened)."""
    name = PurePosixPath((filename or "").replace("\\", "/")).name
    return name or default


def _header_size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` from the image header, before anything is decoded.

    Raises:
        ServeError: 400 when the header is not one of :data:`FORMATS`.
    """
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size
    except Image.DecompressionBombError as err:
        # Pillow refuses absurd sizes itself (> ~179 MP); that is our "too many pixels" too.
        raise ServeError(
            413, "too_many_pixels", f"{err}; downscale the image before sending it"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        # Pillow signals broken headers with several exception types, depending on the plugin.
        raise ServeError(
            400,
            "not_an_image",
            f"the uploaded bytes ({len(data)}) are not a {FORMATS} image (unknown or damaged "
            f"header); {HOW_TO}",
        ) from None


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """Uploaded bytes as ``ndarray[H, W, 3]`` uint8 RGB, decoded like image files are
    (:func:`~fabricdet.engine.data.read_image`: OpenCV, colour, EXIF orientation applied).

    The size in the header is checked first: a few KB of PNG can hold a gigapixel image, and
    decoding it would take the memory of the whole service.

    Raises:
        ServeError: 400 for empty or undecodable bytes, 413 above ``max_pixels``.
    """
    if not data:
        raise ServeError(400, "empty_upload", f"the uploaded image is empty (0 bytes); {HOW_TO}")
    width, height = _header_size(data)
    if width * height > max_pixels:
        raise ServeError(
            413,
            "too_many_pixels",
            f"the image is {width}x{height} = {width * height} pixels; the limit is "
            f"{max_pixels}. Downscale it, or start the service with a larger --max-pixels",
        )
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ServeError(
            400,
            "undecodable_image",
            f"the {width}x{height} image cannot be decoded (corrupt or truncated data, or an "
            f"unsupported variant); re-export it as {FORMATS} and send it again",
        )
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
