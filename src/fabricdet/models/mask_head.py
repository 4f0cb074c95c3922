"""Mask head: dynamic per-instance convolutions (CondInst/BoxInst) on instance grids, trained
from boxes (or from masks when the data has them and ``data.masks=full``), refined by the
entropy-constrained refinement of :mod:`fabricdet.masks.refine`.

Shared mask features (``MaskConfig.channels`` at ``MaskConfig.stride``) fuse the finest FPN
level with a detail branch that reads the image and its texture-suppressed residual at full
resolution (hair-thin threads vanish at stride 4). Each instance is a box; its expanded box is
sampled on an ``M x M`` grid (:mod:`fabricdet.masks.roi`), and a controller turns RoI-pooled
FPN features and the box's shape into the weights of a three-layer 1x1 network that maps
grid features + box-relative coordinates + the cell's background contrast to mask logits.
Instances come from the caller: ground-truth boxes in training (optionally jittered), the
detector's boxes at inference, or any boxes (the mask benchmark uses ground-truth boxes).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fabricdet.masks.evidence import appearance_logit
from fabricdet.masks.losses import (
    confidence_weighted_bce,
    mask_bce_dice,
    pairwise_loss,
    projection_loss,
)
from fabricdet.masks.refine import LN2, Refined, binary_entropy, refine_masks
from fabricdet.masks.roi import (
    box_masks_on_grid,
    expand_boxes,
    paste_masks,
    relative_coords,
    sample_rois,
)
from fabricdet.masks.texture import neighbour_affinity, neighbours, texture_residual
from fabricdet.models.config import MaskConfig

#: Output scale of the controller (see :meth:`MaskHead.forward`).
CONTROLLER_SCALE = 0.05


class MaskOutput(NamedTuple):
    """Per-instance grids of one forward pass of :class:`MaskHead`.

    Attributes:
        logits (Tensor[N, M, M]): mask logits of the head.
        rois (Tensor[N, 4]): each grid's box (the instance box expanded), xyxy input pixels.
        boxes (Tensor[N, 4]): the instance boxes the head was given.
        box_masks (Tensor[N, M, M]): 1 inside the given box.
        residual (Tensor[N, C, M, M]): texture-suppressed image on the grid (no gradient).
        appearance (Tensor[N, M, M]): model-free foreground logit from background contrast.
    """

    logits: Tensor
    rois: Tensor
    boxes: Tensor
    box_masks: Tensor
    residual: Tensor
    appearance: Tensor


class MaskHead(nn.Module):
    """See the module docstring.

    Args:
        cfg: mask options.
        in_channels: FPN channels.
        in_stride: stride of the finest FPN level (``feats[0]``).
    """

    def __init__(self, cfg: MaskConfig, in_channels: int, in_stride: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.in_stride = in_stride
        c, d = cfg.channels, cfg.dynamic_channels
        self.lateral = nn.Sequential(nn.Conv2d(in_channels, c, 1), nn.SiLU())
        # Image (3) + texture-suppressed residual (3) at full resolution, down to cfg.stride.
        self.detail = nn.Sequential(
            nn.Conv2d(6, 16, 3, stride=cfg.stride, padding=1), nn.SiLU(), nn.Conv2d(16, c, 1)
        )
        # Normalised output: the dynamic network multiplies three generated weight matrices,
        # so unnormalised features let its logits grow without bound (seen: 1e5 in 20 steps).
        self.fuse = nn.Sequential(
            nn.Conv2d(c, c, 3, padding=1), nn.SiLU(), nn.Conv2d(c, c, 3, padding=1),
            nn.GroupNorm(1, c),
        )  # fmt: skip
        cin = c + 3  # features, box-relative x and y, background contrast
        self.shapes = [(d, cin), (d, d), (1, d)]
        num_params = sum(o * i + o for o, i in self.shapes)
        pooled = in_channels * cfg.controller_pool**2 + 4
        self.controller = nn.Sequential(
            nn.LayerNorm(pooled), nn.Linear(pooled, 128), nn.SiLU(), nn.Linear(128, num_params)
        )
        nn.init.normal_(self.controller[-1].weight, std=0.1)
        self.prior = nn.Parameter(torch.tensor(2.0))  # logit of the box prior
        nn.init.zeros_(self.controller[-1].bias)

    # -- forward ---------------------------------------------------------------------------
    def features(self, feats: list[Tensor], images: Tensor) -> tuple[Tensor, Tensor]:
        """Shared mask features and the texture-suppressed residual of the batch.

        Args:
            feats: FPN levels, finest first; images (Tensor[B, 3, H, W]) normalised, padded.

        Returns:
            mask features (Tensor[B, C, H / stride, W / stride]); residual (Tensor[B, 3, H, W]).
        """
        with torch.no_grad():  # a fixed transform of the input: nothing to learn through it
            residual = texture_residual(images.float()).to(images.dtype)
        detail = self.detail(torch.cat([images, residual], 1))
        coarse = F.interpolate(
            self.lateral(feats[0]), size=detail.shape[-2:], mode="bilinear", align_corners=False
        )
        return self.fuse(detail + coarse), residual

    def forward(
        self,
        feats: list[Tensor],
        images: Tensor,
        boxes: Tensor,
        batch_index: Tensor,
        shared: tuple[Tensor, Tensor] | None = None,
    ) -> MaskOutput:
        """Mask logits of the instances ``boxes`` (Tensor[N, 4] xyxy input pixels) of images
        ``batch_index`` (Tensor[N] int64); ``shared``: :meth:`features` if already computed."""
        cfg, m = self.cfg, self.cfg.roi_size
        mask_feats, residual = shared if shared is not None else self.features(feats, images)
        rois = expand_boxes(boxes, cfg.roi_expand, cfg.roi_pad)
        box_masks = box_masks_on_grid(boxes, rois, m)
        grid_feats = sample_rois(mask_feats, rois, batch_index, m, float(cfg.stride))
        grid_res = sample_rois(residual, rois, batch_index, m, 1.0)
        appearance = appearance_logit(grid_res, box_masks, cfg.evidence_gain, cfg.evidence_offset)
        contrast = (appearance / cfg.evidence_gain + cfg.evidence_offset).clamp(0.0, 10.0) / 5.0
        x = torch.cat([grid_feats, relative_coords(boxes, rois, m), contrast.unsqueeze(1)], 1)
        # Scaled down: Adam moves every controller weight by ~lr per step, and each generated
        # parameter sums 128 of them, so unscaled the generated network changes ~100x faster
        # than any fixed weight and its logits saturate within a few steps.
        params = CONTROLLER_SCALE * self.controller(
            self._controller_input(feats[0], boxes, batch_index)
        )
        # Residual on a box prior: the network learns where the defect departs from its box.
        # From a flat start the projection loss pushes the whole grid up (inside-box columns
        # outnumber and outweigh outside ones) and the logits saturate before the outside
        # can be told apart; starting from the box, the losses only have to carve.
        logits = self._dynamic(x, params) + self.prior * (2 * box_masks - 1)
        return MaskOutput(logits, rois, boxes, box_masks, grid_res, appearance)

    def _controller_input(self, feat: Tensor, boxes: Tensor, batch_index: Tensor) -> Tensor:
        """RoI-pooled finest FPN features and the box's log size and aspect. Tensor[N, F]."""
        p = self.cfg.controller_pool
        pooled = sample_rois(feat, boxes, batch_index, p, float(self.in_stride)).flatten(1)
        wh = (boxes[:, 2:] - boxes[:, :2]).clamp_min(1.0)
        shape = torch.stack(
            [wh[:, 0].log() / 5, wh[:, 1].log() / 5, (wh[:, 0] / wh[:, 1]).log() / 5,
             (wh[:, 0] * wh[:, 1]).log() / 10], 1,
        )  # fmt: skip
        return torch.cat([pooled, shape.to(pooled.dtype)], 1)

    def _dynamic(self, x: Tensor, params: Tensor) -> Tensor:
        """The per-instance 1x1 network: x (Tensor[N, Cin, M, M]) -> logits (Tensor[N, M, M])."""
        n, _, h, w = x.shape
        out = x.flatten(2)  # [N, Cin, P]
        offset = 0
        for k, (o, i) in enumerate(self.shapes):
            weight = params[:, offset : offset + o * i].view(n, o, i)
            offset += o * i
            bias = params[:, offset : offset + o].view(n, o, 1)
            offset += o
            if k < len(self.shapes) - 1:
                # Unit-norm rows in the hidden layers: the logits are then linear in the last
                # layer's weights instead of a product of three generated matrices, which
                # under Adam grew to 1e5 within a few steps at lr 3e-3.
                weight = weight / weight.norm(dim=-1, keepdim=True).clamp_min(1e-6)
                out = F.relu(torch.baddbmm(bias, weight, out))
            else:
                out = torch.baddbmm(bias, weight, out)
        return out.view(n, h, w)

    # -- refinement ------------------------------------------------------------------------
    def refine(self, out: MaskOutput, logits: Tensor | None = None) -> Refined:
        """Entropy-constrained refinement of the head's masks (``logits`` overrides
        ``out.logits``, e.g. detached). Sources: the head, the head smoothed over
        appearance-similar neighbours, and the image's background contrast."""
        cfg = self.cfg
        z = out.logits if logits is None else logits
        affinity = neighbour_affinity(out.residual, 1, cfg.affinity_theta)  # [N, 8, M, M]
        nb = neighbours(z.unsqueeze(1), 1)[:, 0]
        smoothed = (affinity * nb).sum(1) / affinity.sum(1).clamp_min(1e-6)
        evidence = torch.stack([z, smoothed, out.appearance], 1)
        weights = torch.tensor(cfg.evidence_weights, device=z.device, dtype=z.dtype)
        return refine_masks(
            evidence, affinity, weights, temperature=cfg.refine_temperature,
            pair_weight=cfg.refine_pair_weight, floor_gain=cfg.refine_floor_gain,
            num_iters=cfg.refine_iters,
        )  # fmt: skip

    def probabilities(self, out: MaskOutput) -> tuple[Tensor, Tensor]:
        """The output masks and uncertainty maps on the grids (Tensor[N, M, M] each): refined
        when ``cfg.refine``, else the head's sigmoid and its normalised entropy."""
        if self.cfg.refine:
            r = self.refine(out)
            return r.probs, r.uncertainty
        p = out.logits.sigmoid()
        return p, refine_entropy(p)

    # -- training --------------------------------------------------------------------------
    def losses(
        self, feats: list[Tensor], images: Tensor, targets: list[dict[str, Tensor]],
        progress: float,
    ) -> dict[str, Tensor]:  # fmt: skip
        """Mask losses on the targets' boxes.

        Box supervision (default, and whenever the targets carry no ``masks``): projection
        (Tversky/Dice on both axes) + pairwise affinity on the texture-suppressed image
        (ramped in over ``cfg.warmup`` of training) + self-training towards the refined mask,
        each pixel weighted by the refinement's confidence ``1 - uncertainty`` (after
        ``cfg.self_start``). Full supervision (targets carry ``masks``, i.e.
        ``data.masks=full``): BCE + Dice on the true masks.

        Returns:
            ``mask_proj``, ``mask_pair``, ``mask_self`` or ``mask_full``: weighted scalars.
        """
        cfg = self.cfg
        boxes, index, gt_masks = self._instances(targets, images)
        zero = feats[0].sum() * 0
        if boxes.shape[0] == 0:
            if gt_masks is not None:
                return {"mask_full": zero}
            return {"mask_proj": zero, "mask_pair": zero, "mask_self": zero}
        given = boxes
        if cfg.jitter > 0:  # the head must find the extent when the box is not exact
            wh = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
            given = boxes + torch.randn_like(boxes) * wh * cfg.jitter
            given = torch.cat([torch.minimum(given[:, :2], given[:, 2:] - 1), given[:, 2:]], 1)
        out = self(feats, images, given, index)
        rois = out.rois
        if gt_masks is not None:
            target = sample_rois(gt_masks, rois, torch.arange(len(rois), device=rois.device),
                                 cfg.roi_size, 1.0)[:, 0]  # fmt: skip
            return {"mask_full": cfg.full_weight * mask_bce_dice(out.logits, target).mean()}
        box_masks = box_masks_on_grid(boxes, rois, cfg.roi_size)  # the true box, not the given
        probs = out.logits.sigmoid()
        proj = projection_loss(probs, box_masks, cfg.tversky_alpha, cfg.tversky_beta).mean()
        with torch.no_grad():
            affinity = neighbour_affinity(out.residual, cfg.pairwise_dilation, cfg.affinity_theta)
        pair = pairwise_loss(
            out.logits, affinity, box_masks, cfg.pairwise_threshold, cfg.pairwise_dilation
        ).mean()
        ramp = min(1.0, progress / max(cfg.warmup, 1e-9))
        selfw = zero
        if cfg.self_weight > 0 and progress >= cfg.self_start:
            with torch.no_grad():
                ref = self.refine(out, out.logits.detach())
                target = (ref.probs >= 0.5).to(probs.dtype)
                confidence = 1.0 - ref.uncertainty
            selfw = cfg.self_weight * confidence_weighted_bce(out.logits, target, confidence).mean()
        return {
            "mask_proj": cfg.projection_weight * proj,
            "mask_pair": cfg.pairwise_weight * ramp * pair,
            "mask_self": selfw,
        }

    def _instances(
        self, targets: list[dict[str, Tensor]], images: Tensor
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Boxes (Tensor[N, 4]), image index (Tensor[N]) and, when every target has masks,
        the masks padded to the batch (Tensor[N, 1, H, W] float), capped at
        ``cfg.max_instances`` (a random subset)."""
        dev = images.device
        boxes = torch.cat([t["boxes"].to(dev, images.dtype) for t in targets]).reshape(-1, 4)
        index = torch.cat(
            [torch.full((len(t["boxes"]),), b, dtype=torch.long) for b, t in enumerate(targets)]
        ).to(dev)
        gt = None
        if targets and all("masks" in t for t in targets):
            h, w = images.shape[-2:]
            gt = torch.cat(
                [F.pad(t["masks"].to(dev, images.dtype), (0, w - t["masks"].shape[-1],
                 0, h - t["masks"].shape[-2])) for t in targets]
            ).reshape(-1, 1, h, w)  # fmt: skip
        if boxes.shape[0] > self.cfg.max_instances:
            keep = torch.randperm(boxes.shape[0], device=dev)[: self.cfg.max_instances]
            boxes, index = boxes[keep], index[keep]
            gt = gt[keep] if gt is not None else None
        return boxes, index, gt

    # -- inference -------------------------------------------------------------------------
    def paste(self, grids: Tensor, rois: Tensor, height: int, width: int) -> Tensor:
        """Grid maps (Tensor[N, M, M]) pasted into an image: Tensor[N, 1, H, W]."""
        return paste_masks(grids, rois, height, width).clamp(0.0, 1.0).unsqueeze(1)


def refine_entropy(p: Tensor) -> Tensor:
    """Normalised binary entropy ``H(p) / ln 2`` (the uncertainty of unrefined masks)."""
    return binary_entropy(p) / LN2
