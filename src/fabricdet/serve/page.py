"""The upload page served at ``GET /``: one self-contained HTML document.

No external scripts, styles or fonts (the service often runs on a factory network without
internet access). The page posts the chosen file to ``detect`` as multipart field ``file``,
draws the returned boxes with names and scores on a canvas over the image, and shows the
JSON. URLs are relative so the page also works behind a reverse proxy under a path prefix.
Text from the server is only ever set with ``textContent`` / ``fillText``, never as HTML.
"""

from __future__ import annotations

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>fabricdet</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
  h1 { font-size: 1.3em; margin: 0 0 .3em; }
  #model { color: #666; margin-bottom: 1em; }
  form { display: flex; gap: .8em; align-items: center; flex-wrap: wrap; }
  #status { margin: .8em 0; }
  #status.error { color: #b00020; font-weight: bold; }
  canvas { max-width: 100%; border: 1px solid #ccc; display: block; }
  pre { background: #f6f6f6; padding: .8em; max-height: 30em; overflow: auto; }
</style>
</head>
<body>
<h1>fabricdet: fabric defect detection</h1>
<div id="model">loading model information...</div>
<form id="form">
  <input type="file" id="file" name="file" accept="image/*" required>
  <label>min score <input type="number" id="min" value="0" min="0" max="1" step="0.05"></label>
  <button type="submit" id="go">Detect</button>
</form>
<div id="status"></div>
<canvas id="canvas" width="0" height="0"></canvas>
<pre id="out"></pre>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let last = null;  // {file, det}: redrawn when the min score changes

function colour(label) {  // the golden-ratio hue steps of the annotated JPEGs
  return `hsl(${Math.round(((label * 0.618034) % 1) * 360)}, 90%, 50%)`;
}

function status(text, error) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

function draw(file, det) {
  const img = new Image();
  const url = URL.createObjectURL(file);
  img.onload = () => {
    const canvas = $("canvas"), ctx = canvas.getContext("2d");
    canvas.width = img.naturalWidth;
    canvas.height = img.naturalHeight;
    ctx.drawImage(img, 0, 0);
    // Boxes are in the original image's pixels; the canvas has the same size.
    const sx = img.naturalWidth / det.width, sy = img.naturalHeight / det.height;
    const thick = Math.max(1, Math.round(Math.max(canvas.width, canvas.height) / 800));
    const min = parseFloat($("min").value) || 0;
    ctx.font = `${12 * thick}px sans-serif`;
    ctx.lineWidth = thick;
    let shown = 0;
    det.boxes.forEach((b, k) => {
      if (det.scores[k] < min) return;
      shown += 1;
      const [x1, y1, x2, y2] = [b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy];
      ctx.strokeStyle = ctx.fillStyle = colour(det.labels[k]);
      ctx.strokeRect(x1, y1, Math.max(1, x2 - x1), Math.max(1, y2 - y1));
      const text = `${det.category_names[k]} ${det.scores[k].toFixed(2)}`;
      const h = 14 * thick, w = ctx.measureText(text).width + 4;
      const ty = y1 - h >= 0 ? y1 - h : Math.min(canvas.height - h, y2);
      ctx.fillRect(x1, ty, w, h);
      ctx.fillStyle = "#000";
      ctx.fillText(text, x1 + 2, ty + h - 3 * thick);
    });
    status(`${det.boxes.length} detections (${shown} drawn with score >= ${min}) in ` +
           `${det.width}x${det.height} ${det.file}`, false);
    URL.revokeObjectURL(url);
  };
  img.onerror = () => {
    status("the browser cannot display this image; the detections are below", false);
    URL.revokeObjectURL(url);
  };
  img.src = url;
}

async function detect(event) {
  event.preventDefault();
  const file = $("file").files[0];
  if (!file) { status("choose an image first", true); return; }
  const body = new FormData();
  body.append("file", file);
  $("go").disabled = true;
  status(`detecting in ${file.name}...`, false);
  try {
    const resp = await fetch("detect", { method: "POST", body });
    const data = await resp.json();
    $("out").textContent = JSON.stringify(data, null, 1);
    if (!resp.ok) {
      status(`HTTP ${resp.status}: ${data.message || JSON.stringify(data)}`, true);
      return;
    }
    last = { file, det: data };
    draw(file, data);
  } catch (err) {
    status(`request failed: ${err}`, true);
  } finally {
    $("go").disabled = false;
  }
}

async function model() {
  try {
    const h = await (await fetch("health")).json();
    const names = h.model.categories.map((c) => c.name).join(", ");
    $("model").textContent = `model ${h.model.path} (step ${h.model.step}, NMS ` +
      `${h.model.nms}, score >= ${h.model.score_threshold}, ${h.model.device}); ` +
      `categories: ${names}; limit ${h.limits.max_bytes} bytes`;
  } catch (err) {
    $("model").textContent = `cannot read /health: ${err}`;
  }
}

$("form").addEventListener("submit", detect);
$("min").addEventListener("input", () => { if (last) draw(last.file, last.det); });
model();
</script>
</body>
</html>
"""
