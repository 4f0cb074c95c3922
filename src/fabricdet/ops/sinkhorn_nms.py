r"""SinkhornNMS: duplicate removal as entropy-regularised matching of candidates to slots.

Formulation
-----------
Candidates ``i = 1..N`` carry boxes ``b_i``, scores ``s_i`` in (0, 1], labels ``l_i`` and
optional embeddings ``f_i``. Slots ``j = 1..K`` are seeded by the ``K`` best-scored candidates
(``seed(j)``; by default ``K = N``, every candidate can survive). Each candidate sends its
mass to the slot that stands for the object it belongs to; a slot survives when its own seed
stays in it. The transport plan ``P`` solves the balanced problem of
:func:`fabricdet.ops.sinkhorn.sinkhorn` on the dustbin-augmented matrix
(:func:`fabricdet.ops.sinkhorn.add_dustbin`, one dustbin pair per class: :func:`class_dustbins`)::

    C_ij = w_sp * relu(theta - sigma(b_i, b_seed(j))) / theta              spatial
         + w_ft * A_ij,  A_ij = relu(d_ij - mu) / (1 - mu),  d_ij = 1 - cos(f_i, f_seed(j))
         + w_q  * r * tanh((log s_i - log s_seed(j)) / r)                  quality prior
         + BIG * [l_i != l_seed(j)]                                         (unless class-agnostic)

    a_i = s_i                            candidate supply: its confidence
    k_ij = exp(-A_ij / tau) * [l_i == l_seed(j)]     (1 without embeddings)
    c_j = sum_{i ~ j} a_i k_ij           slot capacity: the mass around it that looks like its seed
    cost of the dustbin column (candidate explained by no slot) = delta; of the dustbin row = 0.

``sigma`` is a spatial similarity (default: max of IoU and the size-normalised
Gaussian-Wasserstein similarity, which keeps duplicates of hair-thin boxes together where IoU
falls apart, and parallel threads a few thicknesses apart as two;
:func:`fabricdet.ops.boxes.pairwise_nwd`). The hinge makes every slot that overlaps a
candidate by more than ``theta`` equally close, so among them the quality prior decides: mass
flows to the best-scored overlapping seed, which is what greedy NMS does, softly.
Matching is worth it only when ``C_ij < delta``. The quality prior is relative to the
candidate's own score, so a seed's own slot costs 0 and no absolute score floor is imposed (an
absolute prior ``-log s_j`` would drop every box below ``exp(-delta / w_q)``, hurting recall at
low thresholds); only candidates that no slot explains go to the dustbin. It saturates at
``+-w_q r`` (``quality_range``; ``r = inf`` gives the raw log-ratio): it only has to order the
seeds, and unbounded it would outweigh the spatial term, so that a box 150x weaker than any
same-class box anywhere in the image went to that box's slot. With ``w_q r < w_sp`` a box never
joins a slot it overlaps by less than ``theta (1 - w_q r / w_sp)``, and pairs below the floor of
:mod:`fabricdet.ops.sparse_sinkhorn_nms` provably carry no mass (that is what lets the eval path
skip them). The appearance term
is what lets two overlapping objects that look different (two adjacent broken threads) keep
their own slots, which greedy NMS cannot.
The appearance term starts at the margin ``mu`` (``feature_margin``): duplicates of one object
rarely have identical embeddings (least of all early in training), and without a margin that
small difference outweighs the quality prior, so duplicates keep their own slots.
The capacity bounds how much look-alike mass a slot can absorb: without embeddings it is the
whole class mass (never binding, greedy-like); with them, mass of a different-looking object
cannot be absorbed. The price: a capacity of the mass around a slot binds, so the column
scalings follow how crowded each slot's neighbourhood is, and a crowded duplicate's own slot
can outbid the better-scored slot that should claim it; when the embeddings do not tell
instances apart, that only keeps duplicates (``appearance_capacity=False`` keeps the
appearance term in the cost and gives every slot its class mass). ``i ~ j`` are the
same-class candidates that can reach slot ``j`` at all, ``sigma >= m``
(:func:`similarity_floor`; every same-class candidate when there is no floor):
look-alikes elsewhere in the image cannot be matched to ``j``, so they must not loosen its
capacity (and the eval path then needs no class-wide appearance matrix). The capacity kernel
sees looks through the same margin as the cost: a candidate within ``mu`` of its seed's look
costs nothing to match, and it counts fully toward the capacity.

Outputs
-------
- ``keep_prob[j] = P[seed(j), j] / a_seed(j)``: the soft probability that slot ``j`` survives;
- ``keep[j]``: hard decode, greedy NMS with the plan in place of the IoU test: slot ``j'``
  *claims* seed ``j`` when ``j'`` is better-ranked and ``P[seed(j), j'] >= P[seed(j), j]``;
  slot ``j`` survives unless its seed's dustbin entry beats its own slot's or a surviving slot
  claims it (a removed slot removes nothing, as in greedy NMS; :func:`greedy_fixed_point`).
  Because the column scalings are monotone in the quality prior, this decode keeps exactly the
  best-scored box of each cluster of boxes that overlap by more than ``theta``, for any
  ``eps`` (see tests). (Decoding by each seed's argmax alone, or by two rounds of it, lets
  suppressed slots suppress, or leaves boxes that greedy NMS removes: on a trained detector's
  candidates the two-round decode kept far more boxes than greedy NMS.)
- ``boxes[j] = sum_i w_ij b_i / sum_i w_ij`` with ``w_ij = P_ij s_i^gamma``: plan-weighted box
  fusion (``gamma = fuse_power``; 0 weights duplicates by their plan mass, which is linear in
  their score; larger lets the best-scored dominate);
- ``survival[i]``: ``keep_prob`` of the slot candidate ``i`` seeds (0 if it seeds none).

Everything is batched (``[B, N]`` with a padding mask), has static shapes, runs a fixed number
of Sinkhorn iterations and synchronises with the host only in eager mode (to validate inputs
and, on CPU, where it is free, to stop the decode's fixed point once settled), so it runs
under ``torch.compile`` and exports to ONNX. With ``edges=True`` eager calls solve the same
plan on the candidate-slot pairs that can carry mass (:mod:`fabricdet.ops.sinkhorn_nms_edges`):
about 1% of the pairs at N = 1000, K = 100 and 20 classes, several times faster forward and
backward, at the cost of reading edge counts on the host; the detector trains that way.

Compared with the authors' code (PAPER.md): the quality term sits on the slot side so it does
not cancel under row normalisation; marginals are consistent (supplies and capacities with
dustbins, a balanced problem); there is a dustbin; the solver works in the log domain with
eps down to 1e-3 of the cost scale; K is static (no host sync to count scores above 0.5).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fabricdet.ops.boxes import NWD_SCALE, OverlapKind, check_finite, pairwise_overlap, tracing
from fabricdet.ops.sinkhorn import GradMode, SolverMode, sinkhorn
from fabricdet.ops.sinkhorn_nms_edges import PlanEntries, edge_plan
from fabricdet.ops.sinkhorn_nms_terms import (
    SEED_FUSE_WEIGHT,
    appearance_cost,
    fusion_factor,
    quality_prior,
    scale_grad,
    similarity_floor,
)

# Cost of pairing across classes: large enough that exp(-BIG / eps) is exactly 0 in float32 for
# any eps <= 1, small enough to keep the solver's log-kernel finite.
_BIG = 1e4


# Passes of the hard decode's fixed-point iteration: claim chains of real candidates are a few
# links long, and each pass over K slots is a K x K matrix-vector product (the export decodes
# K = 1000 slots, so passes are not free).
DECODE_ITERS = 16


def class_dustbins(
    cost: Tensor,
    supply: Tensor,
    capacity: Tensor,
    labels: Tensor,
    seed_labels: Tensor,
    row_mask: Tensor,
    col_mask: Tensor,
    dustbin_cost: float,
    num_classes: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """:func:`~fabricdet.ops.sinkhorn.add_dustbin` with one dustbin row and column per class.

    Classes never exchange mass (``_BIG`` across them), so with one dustbin pair per class the
    problem splits into independent per-class problems, each with SuperGlue's augmented
    matrix: class ``c``'s dustbin column takes its candidates' unmatched mass at ``delta``, its
    dustbin row fills its slots' unused capacity at 0, its corner holds the rest. One shared
    pair would couple the classes (mass moves between them through the dustbins), and the
    result would depend on what else is in the image.

    Args:
        cost (Tensor[B, N, K]); supply (Tensor[B, N]); capacity (Tensor[B, K]);
        labels (Tensor[B, N] int64), seed_labels (Tensor[B, K] int64): in
            ``0 .. num_classes - 1``; row_mask (Tensor[B, N] bool), col_mask (Tensor[B, K]
            bool): padding.

    Returns:
        cost (Tensor[B, N+G, K+G]), a (Tensor[B, N+G]), b (Tensor[B, K+G]), row_mask
        (Tensor[B, N+G] bool), col_mask (Tensor[B, K+G] bool); G = ``num_classes``, dustbins
        last, those of classes absent from the image masked.
    """
    classes = torch.arange(num_classes, device=cost.device)
    row_of = (labels.unsqueeze(-1) == classes) & row_mask.unsqueeze(-1)  # [B, N, G]
    col_of = (seed_labels.unsqueeze(-1) == classes) & col_mask.unsqueeze(-1)  # [B, K, G]
    supply = supply * row_mask
    capacity = capacity * col_mask
    to_dust = torch.where(row_of, dustbin_cost, _BIG).to(cost.dtype)  # [B, N, G]
    from_dust = torch.where(col_of, 0.0, _BIG).to(cost.dtype).transpose(1, 2)  # [B, G, K]
    same = classes.unsqueeze(1) == classes.unsqueeze(0)
    corner = torch.where(same, 0.0, _BIG).to(cost.dtype).expand(cost.shape[0], -1, -1)
    aug = torch.cat([torch.cat([cost, to_dust], -1), torch.cat([from_dust, corner], -1)], 1)
    class_supply = (supply.unsqueeze(-1) * row_of).sum(1)  # [B, G]
    class_capacity = (capacity.unsqueeze(-1) * col_of).sum(1)
    present = row_of.any(1)
    return (
        aug,
        torch.cat([supply, class_capacity], -1),
        torch.cat([capacity, class_supply], -1),
        torch.cat([row_mask, present], -1),
        torch.cat([col_mask, present], -1),
    )


def greedy_fixed_point(seed_rows: Tensor, own: Tensor, alive: Tensor, max_passes: int) -> Tensor:
    """The hard decode: greedy NMS with "slot ``j'`` claims seed ``j``" for "IoU above theta".

    Slot ``j`` survives unless its seed's dustbin entry beats its own slot's, or a surviving
    better-ranked slot's entry in the seed's row is at least as large (ties go to the
    better-ranked slot: the order of a stable argmax over score-sorted slots, dustbin last).
    Greedy NMS' rule (a removed box removes nothing) is solved by fixed-point iteration, as in
    Cluster-NMS: starting from every slot alive, each pass settles one more link of the longest
    claim chain, so ``max_passes`` passes are exact for chains of that depth.

    Args:
        seed_rows (Tensor[B, K, K+G]): each slot's seed row of the plan, slots sorted by
            decreasing score, then the G dustbins (a seed's mass reaches its own class's only).
        own (Tensor[B, K]): ``P[seed(j), j]``.
        alive (Tensor[B, K] bool): real slots with a positive score.

    Returns:
        keep (Tensor[B, K] bool).
    """
    k = own.shape[1]
    slots = torch.arange(k, device=own.device)
    better = slots.unsqueeze(0) < slots.unsqueeze(1)  # [K, K]: column ranks above row
    claims = ((seed_rows[..., :k] >= own.unsqueeze(-1)) & better).to(own.dtype)
    alive = alive & ~(seed_rows[..., k:].amax(-1) > own)
    keep = alive
    # Stop once a pass changes nothing where that test is free (eager, on CPU); on a GPU it
    # would synchronise with the host, and traced graphs need a fixed number of passes.
    settle = own.device.type == "cpu" and not tracing()
    for _ in range(max_passes):
        # A matrix-vector product rather than an any() over [B, K, K]: the cheap reduction.
        claimed = (claims @ keep.to(own.dtype).unsqueeze(-1)).squeeze(-1) > 0
        new = alive & ~claimed
        if settle and torch.equal(new, keep):
            break
        keep = new
    return keep


class SinkhornNMSOutput(NamedTuple):
    """Per-slot and per-candidate outputs; K = number of slots.

    Attributes:
        slot_index (Tensor[B, K] int64): candidate index of each slot's seed.
        slot_mask (Tensor[B, K] bool): slot holds a real (non-padding) seed.
        keep_prob (Tensor[B, K]): soft survival probability of each slot.
        keep (Tensor[B, K] bool or None): hard decode (always False on padding slots); None
            when the module was built with ``decode_iters=0``.
        boxes (Tensor[B, K, 4]): fused xyxy box of each slot (its seed's box without fusion).
        scores (Tensor[B, K]): score of each slot's seed.
        labels (Tensor[B, K] int64): label of each slot's seed.
        survival (Tensor[B, N]): soft survival probability of each candidate.
        plan (Tensor[B, N+G, K+G]): the transport plan, a dustbin row and column per class last
            (G = 1 class-agnostic).
    """

    slot_index: Tensor
    slot_mask: Tensor
    keep_prob: Tensor
    keep: Tensor | None
    boxes: Tensor
    scores: Tensor
    labels: Tensor
    survival: Tensor
    plan: Tensor


class SinkhornNMS(nn.Module):
    """Differentiable NMS by Sinkhorn matching (formulation in the module docstring).

    Args:
        iou_threshold: ``theta``, the overlap above which two boxes compete for one slot.
        eps: entropic regularisation (cost units; anneal it during training for sharper plans).
        num_iters: Sinkhorn iterations (fixed, no early exit: static graph).
        spatial_weight, feature_weight, quality_weight: ``w_sp``, ``w_ft``, ``w_q``; set one to
            0 to switch its term off.
        feature_margin: ``mu``, the embedding dissimilarity below which looks cost nothing.
        quality_range: ``r``, where the quality prior saturates (log-score units; ``inf``:
            never).
        dustbin_cost: ``delta``, the cost of leaving a candidate unexplained.
        capacity_temperature: ``tau`` of the appearance kernel of the capacities.
        appearance_capacity: with embeddings, each slot's capacity is the look-alike mass
            that reaches it (``False``: its class mass, as without embeddings; the appearance
            term stays in the cost).
        overlap: spatial similarity, see :func:`fabricdet.ops.boxes.pairwise_overlap`.
        nwd_scale: scale of the Wasserstein similarity.
        max_slots: ``K`` cap (``None``: one slot per candidate).
        class_agnostic: ignore labels when matching.
        grad: ``"unrolled"`` or ``"implicit"`` Sinkhorn gradients.
        solver_mode: ``"hybrid"`` (default; costs here are bounded, so after one log-domain
            iteration the plan can be rescaled directly, ~5x cheaper) or ``"log"``.
        decode_iters: passes of the hard decode's fixed-point iteration (static graph; exact
            for claim chains up to that depth: :func:`greedy_fixed_point`); 0: no hard decode
            (``keep`` is None; training losses use the soft outputs only).
        fuse_boxes: output plan-weighted fused boxes (default) or each slot's seed box.
        fuse_power: ``gamma``: each candidate's plan mass is weighted by its score to this
            power in the fused box (0: the plan alone; larger: the best-scored duplicates
            dominate, so an error the duplicates share is not dragged further by the worse
            placed ones).
        num_classes: labels lie in ``0 .. num_classes - 1``: the static number of per-class
            dustbins (needed for tracing and export; ``None``: read from the labels).
        spatial_grad: the plan's gradient reaches the boxes through the spatial term (``False``:
            the similarity is computed on detached boxes, so a loss on the plan cannot move
            boxes apart or together to change the matching; the fused boxes still pass their
            gradient to the boxes they average).
        plan_grad_scale: factor on the gradient that flows back from the plan into its costs
            and marginals (forward unchanged). The plan's derivative grows like ``1 / eps``,
            so a trainer that anneals ``eps`` can hold that gradient's size constant with
            ``eps / eps_start``. At 0 the plan and the kept fractions are constants: a kept
            fraction is the plan's mass over the seed's score, and differentiated through that
            denominator alone it would cancel the score's own gradient in ``score x keep_prob``
            exactly.
        edges: solve on the pairs that can carry mass
            (:mod:`fabricdet.ops.sinkhorn_nms_edges`; the same plan up to ``exp(-20)`` of a
            row's mass, several times faster forward and backward, but it reads edge counts on
            the host). Used in eager mode with unrolled gradients; while tracing (compile,
            export) and with ``grad="implicit"`` the dense solve runs.
    """

    def __init__(
        self,
        iou_threshold: float = 0.5,
        eps: float = 0.05,
        num_iters: int = 10,
        spatial_weight: float = 10.0,
        feature_weight: float = 1.0,
        feature_margin: float = 0.5,
        quality_weight: float = 1.0,
        quality_range: float = 1.0,
        dustbin_cost: float = 3.0,
        capacity_temperature: float = 0.1,
        appearance_capacity: bool = True,
        overlap: OverlapKind = "iou+nwd",
        nwd_scale: float = NWD_SCALE,
        max_slots: int | None = None,
        class_agnostic: bool = False,
        grad: GradMode = "unrolled",
        solver_mode: SolverMode = "hybrid",
        decode_iters: int = DECODE_ITERS,
        fuse_boxes: bool = True,
        fuse_power: float = 0.0,
        num_classes: int | None = None,
        spatial_grad: bool = True,
        plan_grad_scale: float = 1.0,
        edges: bool = False,
    ) -> None:
        super().__init__()
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
        if not eps > 0 or num_iters < 1:
            raise ValueError(f"need eps > 0 and num_iters >= 1, got {eps}, {num_iters}")
        if not 0.0 <= feature_margin < 1.0:
            raise ValueError(f"feature_margin must be in [0, 1), got {feature_margin}")
        if not quality_range > 0:
            raise ValueError(f"quality_range must be > 0, got {quality_range}")
        if not fuse_power >= 0:
            raise ValueError(f"fuse_power must be >= 0, got {fuse_power}")
        self.iou_threshold = iou_threshold
        self.eps = eps
        self.num_iters = num_iters
        self.spatial_weight = spatial_weight
        self.feature_weight = feature_weight
        self.feature_margin = feature_margin
        self.quality_weight = quality_weight
        self.quality_range = quality_range
        self.dustbin_cost = dustbin_cost
        self.capacity_temperature = capacity_temperature
        self.appearance_capacity = appearance_capacity
        self.overlap = overlap
        self.nwd_scale = nwd_scale
        self.max_slots = max_slots
        self.class_agnostic = class_agnostic
        self.grad = grad
        self.solver_mode = solver_mode
        self.decode_iters = decode_iters
        self.fuse_boxes = fuse_boxes
        self.fuse_power = fuse_power
        self.num_classes = num_classes
        self.spatial_grad = spatial_grad
        self.plan_grad_scale = plan_grad_scale
        self.edges = edges

    def extra_repr(self) -> str:
        return (
            f"iou_threshold={self.iou_threshold}, eps={self.eps}, num_iters={self.num_iters}, "
            f"w_sp={self.spatial_weight}, w_ft={self.feature_weight}, "
            f"w_q={self.quality_weight}, r={self.quality_range}, overlap={self.overlap!r}"
        )

    def forward(
        self,
        boxes: Tensor,
        scores: Tensor,
        labels: Tensor | None = None,
        embeddings: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> SinkhornNMSOutput:
        """Match candidates to slots.

        Args:
            boxes (Tensor[B, N, 4] or Tensor[N, 4]): xyxy candidate boxes.
            scores (Tensor[B, N] or Tensor[N]): confidences in [0, 1].
            labels (Tensor[B, N] or Tensor[N] int64, optional): class labels (``None``:
                class-agnostic).
            embeddings (Tensor[B, N, D] or Tensor[N, D], optional): appearance embeddings.
            mask (Tensor[B, N] or Tensor[N] bool, optional): ``False`` marks padding.

        Returns:
            :class:`SinkhornNMSOutput`; unbatched inputs give outputs with B = 1.
        """
        check_finite("boxes", boxes)
        check_finite("scores", scores)
        if boxes.dim() == 2:
            boxes, scores = boxes.unsqueeze(0), scores.unsqueeze(0)
            labels = None if labels is None else labels.unsqueeze(0)
            embeddings = None if embeddings is None else embeddings.unsqueeze(0)
            mask = None if mask is None else mask.unsqueeze(0)
        if boxes.dim() != 3 or boxes.shape[-1] != 4 or scores.shape != boxes.shape[:2]:
            raise ValueError(
                f"expected boxes [B, N, 4] and scores [B, N], got {tuple(boxes.shape)} and "
                f"{tuple(scores.shape)}"
            )
        batch, n = scores.shape
        if mask is None:
            mask = torch.ones_like(scores, dtype=torch.bool)
        if labels is None or self.class_agnostic:
            labels_eff = torch.zeros_like(scores, dtype=torch.long)
        else:
            labels_eff = labels.long()
        k = n if self.max_slots is None else min(n, self.max_slots)

        # Seeds: the K best-scored real candidates (stable sort: ties keep input order).
        ranked = scores.masked_fill(~mask, -1.0)
        slot_index = torch.sort(ranked, dim=1, descending=True, stable=True).indices[:, :k]
        slot_mask = torch.gather(mask, 1, slot_index)
        num_groups = self._num_dustbins(labels_eff, labels is None or self.class_agnostic)
        fuse_power = self.fuse_power if self.fuse_boxes else None  # None: each seed's own box
        if self.edges and self.grad == "unrolled" and not tracing():
            entries = edge_plan(
                self, boxes, scores, labels_eff, embeddings, mask, slot_index, slot_mask,
                num_groups,
            )  # fmt: skip
            return _decode_entries(
                entries, boxes, scores, labels_eff, slot_index, slot_mask, num_groups,
                self.decode_iters, fuse_power, self.plan_grad_scale,
            )  # fmt: skip
        plan = self._dense_plan(
            boxes, scores, labels_eff, embeddings, mask, slot_index, slot_mask, num_groups
        )
        return self._decode(
            plan, boxes, scores, labels_eff, slot_index, slot_mask, n, k, batch,
            self.decode_iters, fuse_power, self.plan_grad_scale,
        )  # fmt: skip

    def _dense_plan(
        self,
        boxes: Tensor,
        scores: Tensor,
        labels: Tensor,
        embeddings: Tensor | None,
        mask: Tensor,
        slot_index: Tensor,
        slot_mask: Tensor,
        num_groups: int,
    ) -> Tensor:
        """The plan over every candidate-slot pair, ``Tensor[B, N + G, K + G]``."""
        seed_boxes = torch.gather(boxes, 1, slot_index.unsqueeze(-1).expand(-1, -1, 4))
        seed_scores = torch.gather(scores, 1, slot_index)
        seed_labels = torch.gather(labels, 1, slot_index)
        same_class = labels.unsqueeze(-1) == seed_labels.unsqueeze(-2)  # [B, N, K]
        cost, kernel = self._cost(boxes, scores, seed_boxes, seed_scores, embeddings, slot_index)
        cost = torch.where(same_class, cost, torch.full_like(cost, _BIG))
        supply = scores * mask
        capacity = ((supply.unsqueeze(-1) * kernel) * same_class).sum(1)  # [B, K]
        aug_cost, a, b, row_mask, col_mask = class_dustbins(
            cost, supply, capacity, labels, seed_labels, mask, slot_mask, self.dustbin_cost,
            num_groups,
        )  # fmt: skip
        plan = sinkhorn(
            aug_cost, a, b, self.eps, max_iter=self.num_iters, tol=None,
            row_mask=row_mask, col_mask=col_mask, grad=self.grad, mode=self.solver_mode,
        )  # fmt: skip
        return scale_grad(plan, self.plan_grad_scale)

    def _num_dustbins(self, labels: Tensor, agnostic: bool) -> int:
        if agnostic:
            return 1
        if self.num_classes is not None:
            return self.num_classes
        if tracing():
            raise ValueError("SinkhornNMS needs num_classes to trace or export with labels")
        return int(labels.max()) + 1 if labels.numel() else 1  # host sync

    def _cost(
        self,
        boxes: Tensor,
        scores: Tensor,
        seed_boxes: Tensor,
        seed_scores: Tensor,
        embeddings: Tensor | None,
        slot_index: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """Candidate-to-slot cost and capacity kernel ``k_ij [i ~ j]``, both ``[B, N, K]``."""
        if not self.spatial_grad:
            boxes, seed_boxes = boxes.detach(), seed_boxes.detach()
        sigma = pairwise_overlap(boxes, seed_boxes, self.overlap, self.nwd_scale)
        # A seed always overlaps itself fully, zero-area boxes (IoU 0/0) included.
        candidate = torch.arange(boxes.shape[1], device=boxes.device).view(1, -1, 1)
        sigma = torch.where(candidate == slot_index.unsqueeze(1), torch.ones_like(sigma), sigma)
        # Relative prior log(s_i / s_seed): the candidate's own slot costs 0, stronger seeds
        # less. Its row-constant part cancels between slots and only sets the slot/dustbin
        # balance, so no score floor is imposed (that is the detector's score threshold).
        log_s = torch.log(scores.clamp_min(1e-6))
        log_seed = torch.log(seed_scores.clamp_min(1e-6))
        log_ratio = log_s.unsqueeze(2) - log_seed.unsqueeze(1)
        dissim = None
        if embeddings is not None:
            emb = F.normalize(embeddings.to(sigma.dtype), dim=-1)
            seed_emb = torch.gather(emb, 1, slot_index.unsqueeze(-1).expand(-1, -1, emb.shape[-1]))
            dissim = 1.0 - emb @ seed_emb.transpose(1, 2)
        cost, look = self.pair_cost(sigma, log_ratio, dissim)
        if look is None or not self.appearance_capacity:
            return cost, torch.ones_like(cost)
        kernel = torch.exp(-look / self.capacity_temperature)
        floor = self.similarity_floor()
        if floor is not None:  # only candidates that can reach the slot count in its capacity
            kernel = kernel * (sigma >= floor)
        return cost, kernel

    def pair_cost(
        self, sigma: Tensor, log_ratio: Tensor, dissim: Tensor | None
    ) -> tuple[Tensor, Tensor | None]:
        """``C`` of candidate-slot pairs (module docstring), elementwise over any layout.

        Args:
            sigma: spatial similarity; log_ratio: ``log s_i - log s_seed``; dissim:
                ``1 - cos`` of the embeddings (None without).

        Returns:
            the cost, and the appearance term ``A`` (None without embeddings).
        """
        theta = self.iou_threshold
        cost = self.spatial_weight * torch.relu(theta - sigma) / theta
        cost = cost + quality_prior(log_ratio, self.quality_weight, self.quality_range)
        if dissim is None:
            return cost, None
        look = appearance_cost(dissim, self.feature_margin)
        return cost + self.feature_weight * look, look

    def similarity_floor(self) -> float | None:
        """:func:`~fabricdet.ops.sinkhorn_nms_terms.similarity_floor` at this module's options."""
        return similarity_floor(
            self.iou_threshold, self.eps, self.spatial_weight, self.dustbin_cost,
            self.quality_weight * self.quality_range,
        )  # fmt: skip

    @staticmethod
    def _decode(
        plan: Tensor,
        boxes: Tensor,
        scores: Tensor,
        labels: Tensor,
        slot_index: Tensor,
        slot_mask: Tensor,
        n: int,
        k: int,
        batch: int,
        decode_iters: int,
        fuse_power: float | None,
        plan_grad_scale: float,
    ) -> SinkhornNMSOutput:
        """Outputs of a dense plan; ``fuse_power``: see
        :func:`~fabricdet.ops.sinkhorn_nms_terms.fusion_factor` (``None``: the seeds' own
        boxes); ``plan_grad_scale``: see :func:`_kept_fraction`."""
        match = plan[:, :n, :k]  # candidate -> slot mass
        rows = plan[:, :n, :]
        seed_rows = torch.gather(rows, 1, slot_index.unsqueeze(-1).expand(-1, -1, rows.shape[-1]))
        own = torch.arange(k, device=plan.device)
        seed_mass = seed_rows[:, own, own]  # P[seed(j), j]
        seed_scores = torch.gather(scores, 1, slot_index)
        keep_prob = _kept_fraction(seed_mass, seed_scores, slot_mask, plan_grad_scale)
        keep = None
        if decode_iters:
            alive = slot_mask & (seed_scores > 0)
            keep = greedy_fixed_point(seed_rows, seed_mass, alive, decode_iters)

        out_boxes = torch.gather(boxes, 1, slot_index.unsqueeze(-1).expand(-1, -1, 4))  # seeds'
        if fuse_power is not None:
            weight = match  # power 0: skip a [B, N, K] product (it is in the exported graph)
            if fuse_power != 0.0:
                weight = match * fusion_factor(scores, fuse_power).to(match.dtype).unsqueeze(-1)
            fused = weight.transpose(1, 2) @ boxes.to(match.dtype) + SEED_FUSE_WEIGHT * out_boxes
            out_boxes = fused / (weight.sum(1).unsqueeze(-1) + SEED_FUSE_WEIGHT)
        return _output(slot_index, slot_mask, keep_prob, keep, out_boxes.to(boxes.dtype),
                       seed_scores, labels, n, plan)  # fmt: skip


def _decode_entries(
    plan: PlanEntries,
    boxes: Tensor,
    scores: Tensor,
    labels: Tensor,
    slot_index: Tensor,
    slot_mask: Tensor,
    num_groups: int,
    decode_iters: int,
    fuse_power: float | None,
    plan_grad_scale: float,
) -> SinkhornNMSOutput:
    """:meth:`SinkhornNMS._decode` of a plan given by its entries (the edge-list solve): the
    same outputs, without the dense ``[B, N + G, K + G]`` intermediates in the backward pass."""
    batch, n = scores.shape
    k = slot_index.shape[1]
    dev = scores.device
    # Candidate -> slot entries, in flat indices: candidate b * N + i, slot b * K + j.
    at = ((plan.row < n) & (plan.col < k)).nonzero().squeeze(1)
    mass = plan.value.index_select(0, at)
    image = plan.image.index_select(0, at)
    cand = image * n + plan.row.index_select(0, at)
    slot = image * k + plan.col.index_select(0, at)
    seeds = (slot_index + torch.arange(batch, device=dev).unsqueeze(1) * n).flatten()
    own_at = (cand == seeds.index_select(0, slot)).nonzero().squeeze(1)
    own = mass.new_zeros(batch * k).index_add(0, slot.index_select(0, own_at),
                                              mass.index_select(0, own_at))  # fmt: skip
    own = own.view(batch, k)
    seed_scores = torch.gather(scores, 1, slot_index)
    keep_prob = _kept_fraction(own, seed_scores, slot_mask, plan_grad_scale)

    keep = None
    if decode_iters:
        keep = _hard_decode_entries(plan, own, seed_scores, seeds, slot_mask, n, num_groups,
                                    decode_iters)  # fmt: skip

    out_boxes = torch.gather(boxes, 1, slot_index.unsqueeze(-1).expand(-1, -1, 4))  # seeds'
    if fuse_power is not None:
        factor = fusion_factor(scores.flatten(), fuse_power).to(mass.dtype).index_select(0, cand)
        weight = mass * factor
        weighted = boxes.to(mass.dtype).flatten(0, 1).index_select(0, cand) * weight.unsqueeze(1)
        fused = mass.new_zeros(batch * k, 4).index_add(0, slot, weighted).view(batch, k, 4)
        total = mass.new_zeros(batch * k).index_add(0, slot, weight).view(batch, k, 1)
        out_boxes = (fused + SEED_FUSE_WEIGHT * out_boxes) / (total + SEED_FUSE_WEIGHT)
    return _output(slot_index, slot_mask, keep_prob, keep, out_boxes.to(boxes.dtype), seed_scores,
                   labels, n, plan.dense(batch, n + num_groups, k + num_groups))  # fmt: skip


@torch.no_grad()
def _hard_decode_entries(
    plan: PlanEntries,
    own: Tensor,
    seed_scores: Tensor,
    seeds: Tensor,
    slot_mask: Tensor,
    n: int,
    num_groups: int,
    decode_iters: int,
) -> Tensor:
    """:func:`greedy_fixed_point` on the seeds' rows of a plan given by its entries.

    Args:
        own (Tensor[B, K]): ``P[seed(j), j]``; seed_scores (Tensor[B, K]); seeds
            (Tensor[B * K] int64): ``b * N + i`` of each slot's seed; n: candidates per image.

    Returns:
        keep (Tensor[B, K] bool).
    """
    batch, k = own.shape
    dev = own.device
    slot_of = torch.full((batch * n,), -1, dtype=torch.long, device=dev)
    slot_of[seeds] = torch.arange(batch * k, device=dev)
    rows = plan.image * n + plan.row.clamp_max(n - 1)
    seed_at = ((plan.row < n) & (slot_of.index_select(0, rows) >= 0)).nonzero().squeeze(1)
    width = k + num_groups
    flat = slot_of.index_select(0, rows.index_select(0, seed_at)) * width
    flat += plan.col.index_select(0, seed_at)
    seed_rows = own.new_zeros(batch * k * width).index_put_(
        (flat,), plan.value.detach().index_select(0, seed_at)
    )
    alive = slot_mask & (seed_scores > 0)
    return greedy_fixed_point(seed_rows.view(batch, k, width), own.detach(), alive, decode_iters)


def _kept_fraction(
    seed_mass: Tensor, seed_scores: Tensor, slot_mask: Tensor, plan_grad_scale: float
) -> Tensor:
    """Each slot's keep probability: the mass its seed keeps over the seed's score.

    ``seed_mass, seed_scores (Tensor[B, K])``; ``slot_mask (Tensor[B, K] bool)``. With
    ``plan_grad_scale`` 0 the plan is a constant, and so is this fraction of it (its score
    denominator would otherwise still differentiate).
    """
    if plan_grad_scale == 0.0:
        seed_scores = seed_scores.detach()
    return seed_mass / seed_scores.clamp_min(1e-12) * slot_mask


def _output(
    slot_index: Tensor,
    slot_mask: Tensor,
    keep_prob: Tensor,
    keep: Tensor | None,
    boxes: Tensor,
    seed_scores: Tensor,
    labels: Tensor,
    n: int,
    plan: Tensor,
) -> SinkhornNMSOutput:
    """The output tuple; per-candidate survival is its slot's keep probability."""
    survival = keep_prob.new_zeros(keep_prob.shape[0], n).scatter(1, slot_index, keep_prob)
    return SinkhornNMSOutput(
        slot_index=slot_index, slot_mask=slot_mask, keep_prob=keep_prob, keep=keep, boxes=boxes,
        scores=seed_scores, labels=torch.gather(labels, 1, slot_index), survival=survival,
        plan=plan,
    )  # fmt: skip
