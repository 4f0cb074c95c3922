"""Where the detector's post-processing time goes, part by part, on one image.

Times, on the same head outputs: candidate selection (score threshold and top-k), greedy NMS
and SinkhornNMS on the selected candidates (``batched_nms``, as the detector calls them; with
CUDA inputs SinkhornNMS copies them to the host and runs its compiled kernel there), the same
call on host copies of the inputs (the kernel without the device copies), the medoid boxes of
greedy NMS' kept detections, and the whole post-processing with each NMS, with and without
medoid boxes. The image is noise, whose candidates fill the ``topk_candidates`` cap: the
worst case.

    python benchmarks/postprocess_parts.py [--model fabricdet-demo/model.pt] [--size 2446x1000]
        [--device cuda] [--repeats 30]
"""

from __future__ import annotations

import argparse

import torch

from detector_speed import _median_ms, _model  # benchmarks/ is a folder of scripts
from fabricdet.models.candidates import select_candidates
from fabricdet.ops.medoid import medoid_boxes
from fabricdet.ops.nms import batched_nms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a trained model.pt (default: random-init default model)")
    parser.add_argument("--size", default="2446x1000")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    model = _model(args.model, []).to(device)
    cfg, sk = model.cfg, model.cfg.sinkhorn
    w, h = (int(v) for v in args.size.split("x"))
    images = [torch.rand(3, h, w, generator=torch.Generator().manual_seed(0)).to(device)]
    sizes = [(h, w)]

    def ms(fn: object) -> float:
        return _median_ms(fn, args.repeats, device)  # type: ignore[arg-type]

    with torch.inference_mode():
        feats = model.features(model._batch(images))
        out = model.head(feats)
        rows = {"candidate selection": ms(
            lambda: select_candidates(out, sizes, cfg.topk_candidates, cfg.score_thresh)
        )}  # fmt: skip
        cand = select_candidates(out, sizes, cfg.topk_candidates, cfg.score_thresh)
        m = cand.mask[0]
        boxes, scores, labels = cand.boxes[0][m], cand.scores[0][m], cand.labels[0][m]
        emb = cand.embeddings[0][m] if cand.embeddings.shape[-1] else None
        options = sk.solver_options(sk.eps)
        thr = sk.iou_threshold
        rows["greedy NMS"] = ms(lambda: batched_nms(boxes, scores, labels, thr))
        rows["SinkhornNMS (batched_nms)"] = ms(
            lambda: batched_nms(boxes, scores, labels, thr, "sinkhorn", embeddings=emb, **options)
        )
        on_host = [t.cpu() for t in (boxes, scores, labels)]
        host_emb = None if emb is None else emb.cpu()
        rows["SinkhornNMS on host copies"] = ms(
            lambda: batched_nms(*on_host, thr, "sinkhorn", embeddings=host_emb, **options)
        )
        keep = batched_nms(boxes, scores, labels, thr)[: cfg.detections_per_img]
        rows["medoid boxes"] = ms(
            lambda: medoid_boxes(boxes, scores, labels, keep, thr, cfg.medoid_power)
        )
        for method in ("greedy", "sinkhorn"):
            model.nms_method = method
            for medoid in (False, True):
                cfg.medoid_boxes = medoid
                name = f"post-processing, {method}" + (" + medoid boxes" if medoid else "")
                rows[name] = ms(lambda: model.postprocess(out, sizes, feats))
    print(f"device {device}, model {args.model or 'random'}, {args.size}, {len(scores)} candidates")
    print("| part | median ms |\n|---|---|")
    for name, value in rows.items():
        print(f"| {name} | {value:.2f} |")


if __name__ == "__main__":
    main()
