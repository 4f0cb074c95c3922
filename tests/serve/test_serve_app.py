"""``fabricdet serve``'s app: detections as ``fabricdet detect`` gives them, health, the upload
page, every refused input answered 4xx in JSON (and the service still serving), inference
kept to one at a time, and the command line."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from serve_models import MAX_BYTES, MAX_PIXELS, PAINTED

from fabricdet.cli import main
from fabricdet.engine import ConfigError, load_model
from fabricdet.engine.predict import detect, detect_image
from fabricdet.serve import ServeSettings, create_app

KEYS = {"file", "width", "height", "boxes", "scores", "labels", "category_ids", "category_names"}


def expected(model: Path, image: Path, name: str) -> dict[str, Any]:
    """What ``fabricdet detect`` reports for ``image``, with the name the service reports."""
    (det,) = detect(load_model(model), [image], device="cpu", progress=False)
    return {**det.to_json(), "file": name}


def post_file(client: TestClient, path: Path, **kwargs: Any) -> Any:
    return client.post("/detect", files={"file": (path.name, path.read_bytes())}, **kwargs)


def assert_good(client: TestClient, path: Path) -> dict[str, Any]:
    resp = post_file(client, path)
    assert resp.status_code == 200, resp.text
    return resp.json()


# --- detections ----------------------------------------------------------------------------


def test_multipart_matches_detect_on_the_file(real, files):
    got = assert_good(real, files["jpeg"])
    assert set(got) == KEYS
    want = expected(files["real"], files["jpeg"], files["jpeg"].name)
    assert got == want and len(got["scores"]) > 0  # same count, boxes, scores and names


def test_raw_body_matches_detect_on_the_file(real, files):
    resp = real.post(
        "/detect", content=files["jpeg"].read_bytes(), headers={"Content-Type": "image/jpeg"}
    )
    assert resp.status_code == 200, resp.text
    assert float(resp.headers["X-Inference-Ms"]) > 0
    assert resp.json() == expected(files["real"], files["jpeg"], "upload")


def test_masks_names_and_original_pixels(painted, files):
    got = assert_good(painted, files["png"])
    # With masks come their measurements (as in ``fabricdet detect``'s JSON).
    assert set(got) == KEYS | {"masks", "areas_px", "lengths_px", "shapes"}
    assert (got["width"], got["height"]) == (300, 120)
    assert sorted(got["category_ids"]) == [1, 2]
    assert sorted(got["category_names"]) == ["hole", "knot"]
    by_cat = dict(zip(got["category_ids"], got["boxes"], strict=True))
    for cat, box in PAINTED:
        np.testing.assert_allclose(by_cat[cat], box, atol=1.5)
    assert all(m["size"] == [120, 300] and m["counts"] for m in got["masks"])
    assert all(area > 0 for area in got["areas_px"]) and len(got["lengths_px"]) == 2
    assert got == expected(files["painted"], files["png"], "painted.png")


def test_detect_image_equals_detect_on_the_file(files):
    loaded = load_model(files["real"])
    pixels = cv2.cvtColor(cv2.imread(str(files["jpeg"])), cv2.COLOR_BGR2RGB)
    (from_file,) = detect(loaded, [files["jpeg"]], device="cpu", progress=False)
    from_array = detect_image(loaded, pixels, files["jpeg"], device="cpu")
    assert from_array.to_json() == from_file.to_json()
    with pytest.raises(ValueError, match="expected an H x W x 3 uint8 RGB image"):
        detect_image(loaded, pixels[:, :, 0], device="cpu")


def test_client_folders_are_dropped_from_the_name(painted, files):
    data = files["png"].read_bytes()
    resp = painted.post("/detect", files={"file": ("C:\\shots\\../x/a.png", data, "image/png")})
    assert resp.status_code == 200 and resp.json()["file"] == "a.png"


def test_concurrent_requests_all_answered_identically(real, files):
    want = expected(files["real"], files["jpeg"], files["jpeg"].name)
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: post_file(real, files["jpeg"]), range(12)))
    assert [a.status_code for a in answers] == [200] * 12
    assert all(a.json() == want for a in answers)


# --- health and page -----------------------------------------------------------------------


def test_health_reports_model_limits_and_counts(painted, files):
    before = painted.get("/health").json()
    assert_good(painted, files["png"])
    painted.post("/detect", content=b"not an image", headers={"Content-Type": "image/png"})
    h = painted.get("/health").json()
    assert h["status"] == "ok" and h["uptime_s"] >= before["uptime_s"] >= 0
    assert h["model"]["categories"] == [{"id": 1, "name": "hole"}, {"id": 2, "name": "knot"}]
    assert h["model"]["nms"] == "sinkhorn" and h["model"]["device"] == "cpu"
    assert h["model"]["path"] == str(files["painted"])
    assert h["limits"] == {"max_bytes": MAX_BYTES, "max_pixels": MAX_PIXELS, "max_pending": 16}
    counts, old = h["requests"], before["requests"]
    assert counts["served"] == old["served"] + 1 and counts["rejected"] == old["rejected"] + 1
    assert counts["pending"] == 0 and counts["mean_inference_ms"] > 0


def test_upload_page_is_self_contained(painted):
    resp = painted.get("/")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    page = resp.text
    assert "<canvas" in page and 'type="file"' in page and 'fetch("detect"' in page
    assert "http://" not in page and "https://" not in page and "src=" not in page


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to parse JavaScript")
def test_upload_page_script_parses(painted, tmp_path):
    script = painted.get("/").text.split("<script>")[1].split("</script>")[0]
    (tmp_path / "page.js").write_text(script)
    subprocess.run(["node", "--check", str(tmp_path / "page.js")], check=True)


# --- refused input -------------------------------------------------------------------------


def _png(width: int, height: int) -> bytes:
    ok, buf = cv2.imencode(".png", np.zeros((height, width, 3), np.uint8))
    assert ok
    return buf.tobytes()


def _truncated_png() -> bytes:
    """A PNG whose header is intact but whose pixel data stops short."""
    data = _png(64, 64)
    idat = data.index(b"IDAT")
    return data[: idat + 12]


def _chunks(total: int) -> Any:
    # A generator body is sent chunked, without Content-Length: the limit must hold as it streams.
    for _ in range(total // 10_000):
        yield b"\0" * 10_000


BAD = {
    "not an image (raw)": (
        {"content": b"hello, I am text", "headers": {"Content-Type": "image/jpeg"}},
        400,
        "not_an_image",
    ),
    "not an image (form)": ({"files": {"file": ("a.jpg", b"garbage" * 10)}}, 400, "not_an_image"),
    "empty": ({"content": b"", "headers": {"Content-Type": "image/png"}}, 400, "empty_upload"),
    "truncated": (
        {"content": _truncated_png(), "headers": {"Content-Type": "image/png"}},
        400,
        "undecodable_image",
    ),
    "too large (raw)": (
        {"content": b"\0" * (MAX_BYTES + 1), "headers": {"Content-Type": "image/png"}},
        413,
        "too_large",
    ),
    "too large (form)": (
        {"files": {"file": ("big.png", b"\0" * (MAX_BYTES + 1))}},
        413,
        "too_large",
    ),
    "too large (chunked)": (
        {"content": _chunks(MAX_BYTES + 20_000), "headers": {"Content-Type": "image/png"}},
        413,
        "too_large",
    ),
    "too many pixels": (
        {"content": _png(2000, 1000), "headers": {"Content-Type": "image/png"}},
        413,
        "too_many_pixels",
    ),
    "json": ({"json": {"image": "a.jpg"}}, 415, "unsupported_media_type"),
    "no content type": ({"content": b"\xff\xd8\xff"}, 415, "unsupported_media_type"),
    "form without file": ({"data": {"image": "x"}, "files": {"other": ("a.jpg", b"x")}}, 422, None),
    "url-encoded form": ({"data": {"file": "a.jpg"}}, 415, "unsupported_media_type"),
    "file as text": (
        {"data": {"file": "a.jpg"}, "files": {"other": ("a.jpg", b"x")}},
        422,
        "field_not_a_file",
    ),
    "broken multipart": (
        {"content": b"--x\r\nbroken", "headers": {"Content-Type": "multipart/form-data"}},
        400,
        "bad_multipart",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_refused_in_json_and_service_keeps_serving(painted, files, case):
    kwargs, status, code = BAD[case]
    resp = painted.post("/detect", **kwargs)
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["status"] == status and body["error"] == (code or "missing_field")
    assert len(body["message"]) > 40  # names the problem and the fix
    assert len(assert_good(painted, files["png"])["boxes"]) == len(PAINTED)


def test_messages_say_how_to_fix(painted):
    msg = painted.post("/detect", json={}).json()["message"]
    assert "application/json" in msg and "multipart form field 'file'" in msg
    msg = painted.post("/detect", files={"other": ("a.jpg", b"x")}).json()["message"]
    assert "no field 'file'" in msg and "'other'" in msg
    big = b"\0" * (MAX_BYTES + 1)
    msg = painted.post("/detect", content=big, headers={"Content-Type": "image/png"}).json()
    msg = msg["message"]
    assert str(MAX_BYTES) in msg and "--max-bytes" in msg


# --- one inference at a time, busy and crashes -----------------------------------------------


def test_busy_when_pending_limit_reached_then_recovers(files):
    app_iter = create_app(load_model(files["painted"]), ServeSettings(device="cpu", max_pending=1))
    with TestClient(app_iter) as client:
        model = client.app.state.service.loaded.model
        model.entered.clear()
        model.gate = threading.Event()
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(post_file, client, files["png"])
            assert model.entered.wait(10)  # the first request is inside the model
            busy = post_file(client, files["png"])
            model.gate.set()
            assert first.result().status_code == 200
        assert busy.status_code == 503 and busy.json()["error"] == "busy"
        assert busy.headers["Retry-After"] == "1"
        model.gate = None
        assert post_file(client, files["png"]).status_code == 200
        counts = client.get("/health").json()["requests"]
        assert (counts["busy"], counts["served"], counts["pending"]) == (1, 2, 0)


def test_inference_crash_is_a_json_500_and_service_keeps_serving(painted, files):
    model = painted.app.state.service.loaded.model
    model.fail = True
    try:
        resp = post_file(painted, files["png"])
    finally:
        model.fail = False
    assert resp.status_code == 500
    assert resp.json()["error"] == "inference_failed" and "RuntimeError" in resp.json()["message"]
    assert painted.get("/health").json()["requests"]["failed"] >= 1
    assert post_file(painted, files["png"]).status_code == 200


def test_settings_are_checked(files):
    loaded = load_model(files["painted"])
    with pytest.raises(ConfigError, match="unknown NMS method 'nope'"):
        create_app(loaded, ServeSettings(nms="nope"))
    with pytest.raises(ConfigError, match="max_bytes 0"):
        create_app(loaded, ServeSettings(max_bytes=0))


# --- command line --------------------------------------------------------------------------


def test_cli_refuses_bad_options_before_serving(files, capsys):
    assert main(["serve", str(files["painted"]), "--nms", "nope"]) == 2
    assert "unknown NMS method 'nope'" in capsys.readouterr().err
    assert main(["serve", str(files["painted"]), "--port", "70000"]) == 2
    assert "--port 70000" in capsys.readouterr().err
    assert main(["serve", str(files["painted"].with_name("missing.pt"))]) == 2


def test_help_imports_neither_torch_nor_fastapi():
    code = (
        "import sys\nfrom fabricdet.cli import main\n"
        "for argv in (['--help'], ['serve', '--help']):\n"
        "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
        "print(sorted(m for m in ('torch', 'fastapi', 'uvicorn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_pixel_limit_does_not_rely_on_the_file_size():
    # The "too many pixels" PNG is a few KB: only the header check stops it being decoded.
    assert len(_png(2000, 1000)) < MAX_BYTES // 10
