r"""SinkhornNMS on a sparse edge list: the fast eval path of ``batched_nms(method="sinkhorn")``.

By default it runs as one compiled CPU kernel (:mod:`fabricdet.ops.sinkhorn_nms_kernel`,
tested to give the same kept sets), also for CUDA inputs of up to :data:`HOST_KERNEL_MAX`
candidates; the tensor-op version below serves larger CUDA inputs and ``backend="torch"``.

It solves the problem of :class:`fabricdet.ops.sinkhorn_nms.SinkhornNMS` (one problem per
class, every candidate its own slot; same costs, supplies, capacities, dustbins, iteration
count and hard decode: read that module's docstring) but only on the candidate-slot pairs that
can carry plan mass, instead of on every same-class pair.

Which pairs
-----------
A pair is worth matching only if its cost is below the dustbin cost ``delta``. A pair with
``sigma_ij < m`` has a spatial term of at least ``w_sp (theta - m) / theta``, its quality prior
is at least ``-w_q r`` and its appearance term is non-negative; choosing
``m = theta (1 - (delta + w_q r + 20 eps) / w_sp)`` (0.25 with the defaults) makes every such
pair cost at least ``delta + 20 eps``. So the edges are the same-class pairs with
``sigma_ij >= m``, plus each candidate's self pair. They are found without forming all pairs:

- ``NWD_ij >= m`` means ``W2 <= s ln(1/m) max(S_i, S_j)`` (``s`` = ``nwd_scale``, ``S`` the
  size ``sqrt(w h)``), and ``W2 >= |c_i - c_j|``: the centres are within
  ``reach * max(S_i, S_j)`` on each axis, ``reach = s ln(1/m)`` (0.28 with the defaults).
  ``IoU_ij > 0`` means the boxes intersect. Hence, giving box ``i`` the x interval
  ``cx_i +- max(w_i / 2, reach S_i)``, every pair with ``sigma >= m`` has intersecting intervals.
- Classes are moved apart on x (torchvision's offset trick) and the intervals sorted by their
  left end (one sort of N keys). The partners after sorted position ``p`` are then the
  positions before ``hi_p``, the ``searchsorted`` of its right end among the left ends.
- The candidate pairs ``p < q`` (``q`` in ``p + 1 .. hi_p - 1``, built with one
  ``repeat_interleave``) are scored with the similarity of :mod:`fabricdet.ops.boxes` (per-box
  terms gathered once per pair end) and those with ``sigma < m`` dropped. ``sigma`` is exactly
  symmetric, so the kept pairs give a symmetric pattern: each row holds its partners before
  it, itself, its partners after it, its dustbin. The mirrored pairs are ranked within their
  rows without a sort, by counting in the band ``lo_q .. q - 1`` (``lo`` from ``searchsorted``
  in the running max of ``hi``), which holds every partner before ``q``.

For ``"iou"`` and ``"diou"`` the reach is 0. When no ``m > 0`` exists
(``w_sp <= delta + w_q r + 20 eps``, or an unbounded prior) every same-class pair is kept: the
dense problem.

Why the dropped pairs do not matter: at the fixed point ``P = diag(u) K diag(v)`` a pair's mass
relative to its row's dustbin entry is ``P_ij / P_iD = exp(-(C_ij - delta) / eps) v_j / v_D``,
and the dustbin row (cost 0 to every column) gives ``v_j / v_D = P_Rj / P_RD <= c_j / M``, with
``M = P_RD`` the class's matched mass. Hence ``P_ij <= exp(-20) (c_j / M) P_iD``: ``2e-9 c_j /
M`` of the row's unmatched mass, under float32 resolution unless almost nothing in the class is
matched (each kept seed matches itself). The dense solver holds these entries at ``< exp(-20)``
of its row's dustbin entry too.

Solver
------
The augmented problem is one CSR matrix: rows are the candidates (in sweep order) then one
dustbin row per class; columns the slots then one dustbin column per class. Candidate row ``p``
holds its edges and its class's dustbin column; dustbin row ``c`` holds the slots of class
``c`` and the corner. The pattern is symmetric, and the cost is the symmetric spatial and
appearance terms plus the quality prior of the column, so ``K^T`` is computed on the same
pattern directly. The kernel is row-stabilised as in ``_iterate_hybrid``
(``exp(log_k - max_row log_k)``), and each of the fixed number of iterations is
``u = a / (K v)``, ``v = b / (K^T u)``: two sparse matrix-vector products, no host sync. This is
the dense path's plan rescaling with the scalings kept apart (``P = diag(u) K diag(v)``), the
same iterates up to rounding. Capacities are the dense ones: the class mass without
embeddings; with embeddings ``c_j = sum_{i ~ j} a_i exp(-(1 - cos(f_i, f_j)) / tau)`` over the
candidates that reach ``j``, which are ``j``'s edges.

Decode, as in the dense path: greedy NMS over the claims "slot ``q`` holds at least as much of
seed ``p``'s mass as ``p``'s own slot" (``q`` better-ranked), seeds that lose to their dustbin
dropped, solved by the same capped fixed-point iteration (it stops early once a pass changes
nothing); fused boxes are plan-weighted. Sizes are read on the host a
few times (edge counts, the decode's passes): the result has a variable length anyway. (Counting
rather than sorting the edges matters: an argsort of ~10^4 keys takes ~0.4 ms on a 2-core
CPU, more than torchvision's whole NMS at N = 1000.)
"""

from __future__ import annotations

import math
import warnings
from typing import Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from fabricdet.ops.boxes import NWD_SCALE, OverlapKind, box_terms, terms_overlap
from fabricdet.ops.sinkhorn import cut_exp
from fabricdet.ops.sinkhorn_nms import DECODE_ITERS
from fabricdet.ops.sinkhorn_nms_kernel import OVERLAP_CODES, sinkhorn_nms_kernel
from fabricdet.ops.sinkhorn_nms_terms import (
    SEED_FUSE_WEIGHT,
    appearance_cost,
    fusion_factor,
    neighbourhood_reach,
    quality_prior,
    similarity_floor,
)

Backend = Literal["auto", "kernel", "torch"]

#: Largest CUDA input the ``"auto"`` backend sends to the CPU kernel. The tensor-op version is
#: bound by kernel launches and host syncs on a GPU, about 4.5 ms whatever the size; on an
#: H200's host the kernel, copies included, took 0.5 ms for 100 candidates, 1.8 ms for 1000 and
#: 8.0 ms for 5000 (``benchmarks/nms_speed.py --methods greedy sinkhorn sinkhorn-torch``,
#: README): the two cross near 2700.
HOST_KERNEL_MAX = 2500


def uses_kernel(backend: Backend, device: torch.device, n: int) -> bool:
    """Whether ``n`` candidates on ``device`` are solved by the compiled CPU kernel."""
    if backend not in ("auto", "kernel", "torch"):
        raise ValueError(f"unknown backend {backend!r}; use 'auto', 'kernel' or 'torch'")
    if backend == "auto":
        return device.type == "cpu" or n <= HOST_KERNEL_MAX
    return backend == "kernel"


class Neighbourhoods(NamedTuple):
    """The edges and the CSR pattern of the augmented problem (module docstring).

    Attributes:
        order (Tensor[N] int64): candidate at each sorted position; cls (Tensor[N] int64): its
            dense class id (non-decreasing).
        row, col (Tensor[E] int64): entries of the candidate rows by row then column: the edges
            (self pairs included) and each row's dustbin (``col = N + class``, last).
        own (Tensor[N] int64): entry of each self pair.
        sigma (Tensor[E]): similarity of each entry (1 on self pairs, 0 on dustbins).
        crow (Tensor[N+G+1] int64), columns (Tensor[E+N+G] int64): the CSR pattern; dustbin
            rows follow the candidate rows, slot ``q`` of class ``c`` at ``E + q + c``.
        class_start, class_size (Tensor[G] int64).
    """

    order: Tensor
    cls: Tensor
    row: Tensor
    col: Tensor
    own: Tensor
    sigma: Tensor
    crow: Tensor
    columns: Tensor
    class_start: Tensor
    class_size: Tensor


def neighbourhoods(
    boxes: Tensor, idxs: Tensor, overlap: OverlapKind, nwd_scale: float, floor: float | None
) -> Neighbourhoods:
    """Edges (same class, ``sigma >= floor`` or self) by sort-and-sweep (module docstring).

    Args:
        boxes (Tensor[N, 4]): xyxy boxes, in the dtype the similarity is computed in.
        idxs (Tensor[N] int64): classes.
        overlap, nwd_scale: the similarity; floor: from :func:`similarity_floor`.
    """
    n, dev = len(boxes), boxes.device
    order, cls, hi = _sweep(boxes, idxs, neighbourhood_reach(overlap, nwd_scale, floor))
    # Pairs p < q with intersecting intervals: q in p + 1 .. hi[p] - 1 (sorted positions).
    positions = torch.arange(n, device=dev)
    span = hi - positions - 1
    # The band p in lo[q] .. q - 1 (lo from the running max of hi) holds every q's partners
    # before it; it ranks the mirrored pairs within their rows below, without a sort.
    lo = torch.searchsorted(torch.cummax(hi, 0).values, positions, right=True)
    band = positions - lo
    sizes = torch.stack([span.sum(), band.sum()]).tolist()  # host sync: data-dependent sizes
    first = torch.repeat_interleave(positions, span, output_size=sizes[0])
    second = torch.arange(sizes[0], device=dev)
    second += (positions + 1 - (torch.cumsum(span, 0) - span)).index_select(0, first)
    terms = box_terms(boxes.index_select(0, order))  # [10, N]
    sigma = terms_overlap(terms.index_select(1, first), terms.index_select(1, second), overlap,
                          nwd_scale)  # fmt: skip
    if floor is not None:
        kept = (sigma >= floor).nonzero().squeeze(1)
        first, second = first.index_select(0, kept), second.index_select(0, kept)
        sigma = sigma.index_select(0, kept)

    # Row p: the edges to partners before it, itself, the edges after it, its dustbin.
    ahead, behind = torch.bincount(first, minlength=n), torch.bincount(second, minlength=n)
    row_len = behind + ahead + 2
    start = torch.cumsum(row_len, 0) - row_len
    num_edges = 2 * len(first) + 2 * n
    pairs = torch.arange(len(first), device=dev)
    # (p, q) is in p's row after behind[p] + 1 entries and p's earlier forward edges.
    ahead_at = (start + behind + 1 - (torch.cumsum(ahead, 0) - ahead)).index_select(0, first)
    ahead_at += pairs
    # (q, p): its rank among the kept pairs of q's band, counted in band order.
    in_band = (torch.cumsum(band, 0) - band - lo).index_select(0, second) + first
    mark = torch.zeros(sizes[1], dtype=torch.long, device=dev).index_fill_(0, in_band, 1)
    behind_at = torch.cumsum(mark, 0).index_select(0, in_band) - 1
    behind_at += (start - (torch.cumsum(behind, 0) - behind)).index_select(0, second)
    own, dust_at = start + behind, start + row_len - 1

    class_size = torch.bincount(cls)
    g = len(class_size)
    class_start = torch.cumsum(class_size, 0) - class_size
    classes = torch.arange(g, device=dev)
    columns = torch.empty(num_edges + n + g, dtype=torch.long, device=dev)
    sigma_at = sigma.new_empty(num_edges)
    # A seed always overlaps itself fully, zero-area boxes (IoU 0/0) included.
    for at, column, value in (
        (ahead_at, second, sigma),
        (behind_at, first, sigma),
        (own, positions, sigma.new_ones(n)),
        (dust_at, n + cls, sigma.new_zeros(n)),
    ):
        columns.index_copy_(0, at, column)
        sigma_at.index_copy_(0, at, value)
    # Dustbin rows: the slots of the class, then the corner.
    columns.index_copy_(0, num_edges + positions + cls, positions)
    columns.index_copy_(0, num_edges + class_start + class_size + classes, n + classes)
    row = torch.repeat_interleave(positions, row_len, output_size=num_edges)
    crow = torch.cat([row_len.new_zeros(1), torch.cumsum(torch.cat([row_len, class_size + 1]), 0)])
    return Neighbourhoods(order, cls, row, columns[:num_edges], own, sigma_at, crow, columns,
                          class_start, class_size)  # fmt: skip


def _sweep(boxes: Tensor, idxs: Tensor, reach: float) -> tuple[Tensor, Tensor, Tensor]:
    """Sort-and-sweep along x.

    Returns:
        order (Tensor[N]): candidate at each sorted position; cls (Tensor[N]): dense class id
        (non-decreasing); hi (Tensor[N]): the boxes after position p whose intervals meet its
        interval are at positions ``p + 1 .. hi[p] - 1``.
    """
    # Float64: the class offsets make coordinates large, and the sweep must not round.
    x1, y1, x2, y2 = boxes.detach().to(torch.float64).unbind(1)
    centre = (x1 + x2) / 2
    if math.isinf(reach):
        half = (x2.max() - x1.min()).expand(x1.shape)  # each interval covers its whole class
    else:
        w, h = (x2 - x1).clamp_min(0), (y2 - y1).clamp_min(0)
        half = torch.maximum(w / 2, reach * (w * h).sqrt())
    half = half.clamp_min(0)
    stride = 2.0 * (x2.max() - x1.min() + 2.0 * half.max()) + 1.0
    left = centre - half + (idxs - idxs.min()).to(torch.float64) * stride
    order = torch.argsort(left)
    left = left.index_select(0, order)
    hi = torch.searchsorted(left, left + 2.0 * half.index_select(0, order), right=True)
    labels = idxs.index_select(0, order)
    cls = torch.cumsum(torch.cat([labels.new_zeros(1), (labels[1:] != labels[:-1]).long()]), 0)
    return order, cls, hi


_csr_built = False


def _csr(crow: Tensor, columns: Tensor, values: Tensor) -> Tensor:
    global _csr_built
    size = len(crow) - 1
    if _csr_built:  # catch_warnings costs tens of microseconds: only the first build needs it
        return torch.sparse_csr_tensor(crow, columns, values, (size, size), check_invariants=False)
    with warnings.catch_warnings():  # PyTorch warns once that sparse CSR is "in beta": not news
        warnings.simplefilter("ignore", UserWarning)
        out = torch.sparse_csr_tensor(crow, columns, values, (size, size), check_invariants=False)
    _csr_built = True
    return out


def _appearance(
    embeddings: Tensor, supply: Tensor, nb: Neighbourhoods, tau: float | None, margin: float
) -> tuple[Tensor, Tensor | None]:
    """Appearance cost on the entries and the capacities ``sum_{i ~ j} a_i k_ij`` (``tau``
    None: no capacities, the caller's are the class mass).

    The pattern is symmetric, so row ``j``'s edges are exactly the candidates that reach slot
    ``j``: the capacity is a sum over its row.

    Args:
        embeddings (Tensor[N, D]) and supply (Tensor[N]) in sorted order.

    Returns:
        appearance cost ``relu(d - mu) / (1 - mu)`` (Tensor[E]) (0 on dustbin entries),
        capacity (Tensor[N], or None without ``tau``).
    """
    n = len(supply)
    dust = nb.col >= n
    col = torch.where(dust, nb.row, nb.col)  # the row itself on dustbin entries: dissim 0
    emb = F.normalize(embeddings.to(supply.dtype), dim=-1)
    dissim = 1.0 - (emb.index_select(0, nb.row) * emb.index_select(0, col)).sum(-1)
    look = appearance_cost(dissim, margin)
    if tau is None:
        return look, None
    mass = (supply.index_select(0, col) * torch.exp(-look / tau)).masked_fill_(dust, 0.0)
    return look, torch.zeros_like(supply).index_add_(0, nb.row, mass)


def _survivors(value: Tensor, nb: Neighbourhoods, supply: Tensor, max_passes: int) -> Tensor:
    """:func:`~fabricdet.ops.sinkhorn_nms.greedy_fixed_point` on the edges (``Tensor[N]`` bool,
    sorted order), stopping early once a pass changes nothing. ``value`` holds the seed rows'
    plan entries up to a per-row factor (``Tensor[E]``)."""
    n = len(supply)
    row, col = nb.row, nb.col
    own = value.index_select(0, nb.own).index_select(0, row)
    dust = col >= n
    dropped = torch.zeros(n, dtype=torch.bool, device=value.device)
    dropped[row[dust & (value > own)]] = True
    # Better-ranked: higher score, or the same score and a lower input index.
    col_c = col.clamp_max(n - 1)
    s_row, s_col = supply.index_select(0, row), supply.index_select(0, col_c)
    better = (s_col > s_row) | ((s_col == s_row) & (nb.order[col_c] < nb.order[row]))
    edge = (value >= own) & better & ~dust & (col != row)
    by, on = row[edge], col[edge]  # seed `on`'s slot claims seed `by`
    alive = (supply > 0) & ~dropped
    keep = alive
    for _ in range(max_passes):
        claimed = torch.zeros_like(keep).index_fill_(0, by[keep.index_select(0, on)], True)
        new = alive & ~claimed
        if torch.equal(new, keep):  # host sync; the result has a variable length anyway
            break
        keep = new
    return keep


def sparse_sinkhorn_nms(
    boxes: Tensor,
    scores: Tensor,
    idxs: Tensor,
    iou_threshold: float = 0.5,
    *,
    embeddings: Tensor | None = None,
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
    decode_iters: int = DECODE_ITERS,
    fuse_boxes: bool = True,
    fuse_power: float = 0.0,
    backend: Backend = "auto",
) -> tuple[Tensor, Tensor, Tensor]:
    """Class-wise SinkhornNMS hard decode on neighbourhood edges (module docstring).

    Options mean what they mean for :class:`fabricdet.ops.sinkhorn_nms.SinkhornNMS`.
    ``backend``: ``"kernel"`` (the compiled CPU kernel of
    :mod:`fabricdet.ops.sinkhorn_nms_kernel`, float64), ``"torch"`` (tensor ops, any device,
    the input's precision) or ``"auto"`` (the kernel on CPU, and elsewhere for up to
    :data:`HOST_KERNEL_MAX` candidates; tensor ops above).

    Args:
        boxes (Tensor[N, 4]): xyxy boxes, finite; N >= 1.
        scores (Tensor[N]): confidences in [0, 1].
        idxs (Tensor[N] int64): class (or image-and-class) of each box.
        embeddings (Tensor[N, D], optional): appearance embeddings.

    Returns:
        keep (Tensor[K] int64): kept indices by decreasing score (ties: lower index first).
        scores (Tensor[K]): their scores.
        boxes (Tensor[K, 4]): their plan-weighted fused boxes (``fuse_boxes=False``: their own;
            ``fuse_power``: :func:`~fabricdet.ops.sinkhorn_nms_terms.fusion_factor`).
    """
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    if not eps > 0 or num_iters < 1:
        raise ValueError(f"need eps > 0 and num_iters >= 1, got {eps}, {num_iters}")
    floor = similarity_floor(
        iou_threshold, eps, spatial_weight, dustbin_cost, quality_weight * quality_range
    )
    if uses_kernel(backend, boxes.device, len(scores)):
        # One copy to the host, so one sync on a GPU: boxes, score, class (exact in float64)
        # and embeddings as the columns of one block; the class numbering happens there too.
        columns = [boxes.detach(), scores.detach()[:, None], idxs[:, None]]
        if embeddings is not None:
            columns.append(F.normalize(embeddings.detach().double(), dim=-1))
        block = torch.cat([c.double() for c in columns], 1).cpu().numpy()
        host_scores = block[:, 4].copy()
        keep_mask, fused_np = sinkhorn_nms_kernel(
            np.ascontiguousarray(block[:, :4]),
            host_scores,
            np.unique(block[:, 5], return_inverse=True)[1].astype(np.int64),
            np.ascontiguousarray(block[:, 6:]),  # [N, 0] without embeddings
            iou_threshold, eps, num_iters, spatial_weight, feature_weight, feature_margin,
            quality_weight, quality_range, dustbin_cost, capacity_temperature,
            appearance_capacity, OVERLAP_CODES[overlap], nwd_scale,
            -math.inf if floor is None else floor, neighbourhood_reach(overlap, nwd_scale, floor),
            fuse_boxes, fuse_power,
        )  # fmt: skip
        kept = np.flatnonzero(keep_mask)
        kept = kept[np.argsort(-host_scores[kept], kind="stable")]  # ties: lower index first
        keep = torch.from_numpy(kept).to(boxes.device)
        out = torch.from_numpy(fused_np[kept]).to(device=boxes.device, dtype=boxes.dtype)
        return keep, scores.index_select(0, keep), out
    n = len(scores)
    work = torch.promote_types(boxes.dtype, scores.dtype)
    work = torch.float64 if work == torch.float64 else torch.float32
    nb = neighbourhoods(boxes.to(work), idxs, overlap, nwd_scale, floor)
    cls, row, col = nb.cls, nb.row, nb.col
    dust = col >= n
    g, dev = len(nb.class_size), boxes.device

    supply = scores.to(work).index_select(0, nb.order)
    class_mass = torch.zeros(g, dtype=work, device=dev).index_add_(0, cls, supply)
    # Symmetric part of the cost; on dustbin entries, the dustbin cost.
    cost = spatial_weight / iou_threshold * torch.relu(iou_threshold - nb.sigma)
    capacity = None
    if embeddings is not None:
        tau = capacity_temperature if appearance_capacity else None
        look, capacity = _appearance(
            embeddings.index_select(0, nb.order), supply, nb, tau, feature_margin
        )
        cost = cost + feature_weight * look
    if capacity is None:
        capacity = class_mass.index_select(0, cls)
    cost = cost.masked_fill(dust, dustbin_cost)
    # Quality prior of candidate -> slot edges (none on dustbins). It is odd in the log-ratio,
    # so K^T's entry (p, q), which is K's (q, p), carries its negative.
    log_s = torch.log(supply.clamp_min(1e-6))
    log_ratio = log_s.index_select(0, row) - torch.cat([log_s, log_s.new_zeros(g)]).index_select(
        0, col
    )
    prior = quality_prior(log_ratio, quality_weight, quality_range).masked_fill_(dust, 0.0)
    log_k = (cost + prior) * (-1.0 / eps)
    log_kt = (cost - prior) * (-1.0 / eps)
    # Row-stabilised kernel (every row's largest entry is 1), as in the dense hybrid solver.
    row_max = torch.segment_reduce(log_k, "max", offsets=nb.crow[: n + 1])
    row_max_ext = torch.cat([row_max, row_max.new_zeros(g)])
    stable = log_k - row_max.index_select(0, row)
    kernel = cut_exp(stable)  # as the dense solver
    # K^T: row p holds column p of K: K[q, p] on edges, 1 (the dustbin row) on its dustbin.
    stable_t = (log_kt - row_max_ext.index_select(0, col)).masked_fill_(dust, 0.0)
    kernel_t = cut_exp(stable_t)
    # Dustbin rows: K's are all 1; K^T's hold K's dustbin column, exp(-delta/eps - row max).
    dust_rows = torch.ones(n + g, dtype=work, device=dev)
    dust_rows_t = dust_rows.index_copy(
        0, nb.cls + torch.arange(n, device=dev), kernel.index_select(0, nb.crow[1 : n + 1] - 1)
    )
    # int32 indices: the sparse kernels use them natively (int64 is converted on every call).
    crow, columns = nb.crow.int(), nb.columns.int()
    k_mat = _csr(crow, columns, torch.cat([kernel, dust_rows]))
    kt_mat = _csr(crow, columns, torch.cat([kernel_t, dust_rows_t]))

    a = torch.cat([supply, torch.zeros_like(class_mass).index_add_(0, cls, capacity)])
    b = torch.cat([capacity, class_mass])
    tiny = torch.full_like(a, torch.finfo(work).tiny)  # as the dense path's clamp_min(tiny)
    v = torch.ones_like(a)
    for _ in range(num_iters):
        u = a / torch.addmv(tiny, k_mat, v)
        v = b / torch.addmv(tiny, kt_mat, u)

    # Decode. The seed's row is u_p * kernel * v, u_p common to the row: compare kernel * v.
    value = kernel * v.index_select(0, col)
    keep_sorted = _survivors(value, nb, supply, decode_iters)

    box = boxes.to(work).index_select(0, nb.order)
    if fuse_boxes:  # plan-weighted (dustbin row excluded), the seed weighted tiny as dense
        sharp = u[:n] * fusion_factor(supply, fuse_power)
        weights = torch.cat([box, torch.ones_like(supply).unsqueeze(1)], 1) * sharp.unsqueeze(1)
        fused = (kt_mat @ torch.cat([weights, weights.new_zeros(g, 5)]))[:n] * v[:n].unsqueeze(1)
        box = (fused[:, :4] + SEED_FUSE_WEIGHT * box) / (fused[:, 4:] + SEED_FUSE_WEIGHT)

    # Back to input order; kept ones by decreasing score (ties: lower index first).
    keep = torch.empty_like(keep_sorted).index_copy_(0, nb.order, keep_sorted).nonzero()[:, 0]
    keep = keep[torch.argsort(scores.index_select(0, keep), descending=True, stable=True)]
    out_boxes = torch.empty_like(box).index_copy_(0, nb.order, box)
    return keep, scores.index_select(0, keep), out_boxes.index_select(0, keep).to(boxes.dtype)
