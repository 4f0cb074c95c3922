"""Masks from boxes: box-supervised losses, texture suppression, instance grids, image
evidence and the uncertainty-aware, entropy-constrained refinement.

Nothing here knows the detector: the mask head (:mod:`fabricdet.models.mask_head`) uses it.
"""

from fabricdet.masks.evidence import appearance_logit
from fabricdet.masks.losses import (
    confidence_weighted_bce,
    mask_bce_dice,
    pairwise_loss,
    projection_loss,
    tversky_loss,
)
from fabricdet.masks.refine import (
    Refined,
    binary_entropy,
    inverse_binary_entropy,
    pool_evidence,
    project_entropy,
    refine_masks,
)
from fabricdet.masks.texture import neighbour_affinity, periodic_background, texture_residual

__all__ = [
    "Refined",
    "appearance_logit",
    "binary_entropy",
    "confidence_weighted_bce",
    "inverse_binary_entropy",
    "mask_bce_dice",
    "neighbour_affinity",
    "pairwise_loss",
    "periodic_background",
    "pool_evidence",
    "project_entropy",
    "projection_loss",
    "refine_masks",
    "texture_residual",
    "tversky_loss",
]
