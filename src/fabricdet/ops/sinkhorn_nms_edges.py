r"""SinkhornNMS' transport plan solved on an edge list: the fast, differentiable training path.

:class:`fabricdet.ops.sinkhorn_nms.SinkhornNMS` forms every candidate-slot pair, ``[B, N, K]``,
although a candidate can reach only the few slots it overlaps (a pair below the similarity floor
``m`` of :func:`~fabricdet.ops.sinkhorn_nms_terms.similarity_floor` costs more than the dustbin
by ``20 eps`` and carries less than ``exp(-20)`` of its row's dustbin mass; the dense solver holds
such entries there too). With 1000 candidates, 100 slots and 20 classes, about 1% of the pairs
are edges, and forward plus backward over the dense ``[N + G, K + G]`` plan is hundreds of tensor
ops on 10^5 entries each. Here the same problem is solved on the entries that can carry mass:

- **edges**: same-image, same-class candidate-slot pairs with ``sigma >= m`` (all same-class pairs
  when there is no floor), each seed's own pair included. They are found without gradients by
  a box test that every such pair passes (centres within the summed half-extents of
  :func:`~fabricdet.ops.sinkhorn_nms_terms.neighbourhood_reach` on both axes), then their
  similarity, cost and capacity kernel are computed with gradients, on the edges only;
- **dustbins**: each candidate's entry in its class's dustbin column (cost ``delta``), the class
  dustbin row's entry in each slot of the class and in the corner (cost 0).

Marginals, costs and iterations are the dense module's: row-stabilised kernel (entries 60 nats
below their row's best set to 0), ``num_iters`` alternate row and column rescalings from
``v = 1``, written as scalings ``u = a / (K v)``, ``v = b / (K^T u)``
(:func:`fabricdet.ops.edge_sinkhorn.edge_sinkhorn`, whose reverse pass gives the unrolled
iterations' gradients). The plan comes back as its entries (:class:`PlanEntries`), which the
module decodes directly (the dense plan is built only as an output); a test checks both paths
agree in value and gradient.

Sizes (the number of edges) are read on the host: this path is for eager training. The dense
module is what ``torch.compile`` and export trace.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from numba import njit
from torch import Tensor

from fabricdet.ops.boxes import box_terms, terms_overlap
from fabricdet.ops.edge_sinkhorn import edge_sinkhorn
from fabricdet.ops.sinkhorn import cut_exp
from fabricdet.ops.sinkhorn_nms_terms import neighbourhood_reach, scale_grad

if TYPE_CHECKING:  # that module imports this one
    from fabricdet.ops.sinkhorn_nms import SinkhornNMS


class PlanEntries(NamedTuple):
    """A plan ``[B, N + G, K + G]`` given by the entries that can be nonzero.

    Attributes:
        value (Tensor[E]): plan mass; image, row, col (Tensor[E] int64): its coordinates.
    """

    value: Tensor
    image: Tensor
    row: Tensor
    col: Tensor

    def dense(self, batch: int, rows: int, cols: int) -> Tensor:
        """The plan as ``Tensor[batch, rows, cols]``."""
        plan = self.value.new_zeros(batch, rows, cols)
        return plan.index_put((self.image, self.row, self.col), self.value)


def _edges(
    boxes: Tensor,
    groups: Tensor,
    num_groups: int,
    mask: Tensor,
    seeds: Tensor,
    slot_mask: Tensor,
    reach: float,
) -> tuple[Tensor, Tensor]:
    """Candidate-slot pairs that may have ``sigma >= m`` (a superset; no gradients).

    Pairs of one (image, class) group whose centres lie within the summed half-extents on both
    axes: NWD >= m puts the centres within ``reach * max(S_i, S_j) <= reach (S_i + S_j)`` on
    each axis, IoU > 0 within ``(w_i + w_j) / 2`` on x and ``(h_i + h_j) / 2`` on y. On CPU one
    compiled loop (:func:`_edges_loops`); elsewhere tensor ops.

    Args:
        boxes (Tensor[B, N, 4]); groups (Tensor[B, N] int64): ``b * G + class`` of each
            candidate, below ``num_groups`` (``B * G``); mask (Tensor[B, N] bool); seeds
            (Tensor[B * K] int64): ``b * N + i`` of each slot's seed; slot_mask (Tensor[B, K]
            bool); reach: from :func:`neighbourhood_reach`.

    Returns:
        candidate ``b * N + i`` and slot ``b * K + j`` of each pair (Tensor[E] int64 each).
    """
    with torch.no_grad():
        centre, half = _extents(boxes, reach)
        if boxes.device.type != "cpu":
            return _edges_ops(groups, num_groups, mask, seeds, slot_mask, centre, half)
        found = _edges_loops(
            groups.flatten().numpy(), mask.flatten().numpy(), seeds.numpy(),
            slot_mask.flatten().numpy(), centre.double().numpy(), half.double().numpy(),
            num_groups,
        )  # fmt: skip
        return torch.from_numpy(found[0]), torch.from_numpy(found[1])


def _extents(boxes: Tensor, reach: float) -> tuple[Tensor, Tensor]:
    """Centres and half-extents of the box test, ``Tensor[B * N, 2]`` each."""
    flat = boxes.reshape(-1, 4)
    wh = (flat[:, 2:] - flat[:, :2]).clamp_min(0)
    centre = (flat[:, :2] + flat[:, 2:]) / 2
    if reach == float("inf"):
        return centre, torch.full_like(centre, float("inf"))
    return centre, torch.maximum(wh / 2, reach * wh.prod(1, keepdim=True).sqrt())


def _edges_ops(
    groups: Tensor,
    num_groups: int,
    mask: Tensor,
    seeds: Tensor,
    slot_mask: Tensor,
    centre: Tensor,
    half: Tensor,
) -> tuple[Tensor, Tensor]:
    """:func:`_edges` in tensor ops (any device), from the boxes' centres and half-extents
    (``Tensor[B * N, 2]`` each)."""
    with torch.no_grad():
        # The same-group pairs, by a sort of the candidates by group rather than a [B, N, K]
        # comparison (a few % of all pairs when there are many classes).
        key = groups.flatten().masked_fill(~mask.flatten(), num_groups)  # padding last
        key, order = torch.sort(key, stable=True)
        count = torch.bincount(key, minlength=num_groups + 1)
        start = torch.cumsum(count, 0) - count
        slot_group = groups.flatten().index_select(0, seeds)
        size = torch.where(slot_mask.flatten(), count.index_select(0, slot_group), 0)
        slot = torch.repeat_interleave(torch.arange(len(seeds), device=groups.device), size)
        rank = torch.arange(len(slot), device=groups.device) - (torch.cumsum(size, 0) - size)[slot]
        cand = order.index_select(0, start.index_select(0, slot_group.index_select(0, slot)) + rank)
        other = seeds.index_select(0, slot)
        gap = (centre.index_select(0, cand) - centre.index_select(0, other)).abs()
        near = (gap <= half.index_select(0, cand) + half.index_select(0, other)).all(1)
        kept = near.nonzero().squeeze(1)
        return cand.index_select(0, kept), slot.index_select(0, kept)


@njit(cache=True)
def _edges_loops(
    groups: np.ndarray,
    mask: np.ndarray,
    seeds: np.ndarray,
    slot_valid: np.ndarray,
    centre: np.ndarray,
    half: np.ndarray,
    num_groups: int,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_edges` as loops: candidates bucketed by group, each valid slot paired with its
    seed's bucket, the box test applied; pairs by slot, then by candidate index."""
    count = np.zeros(num_groups + 1, np.int64)
    for i in range(len(groups)):
        if mask[i]:
            count[groups[i] + 1] += 1
    start = np.cumsum(count)
    order = np.empty(start[-1], np.int64)
    fill = start[:-1].copy()
    for i in range(len(groups)):
        if mask[i]:
            order[fill[groups[i]]] = i
            fill[groups[i]] += 1
    total = 0
    for s in range(len(seeds)):
        if slot_valid[s]:
            g = groups[seeds[s]]
            total += start[g + 1] - start[g]
    cand = np.empty(total, np.int64)
    slot = np.empty(total, np.int64)
    m = 0
    for s in range(len(seeds)):
        if not slot_valid[s]:
            continue
        j = seeds[s]
        g = groups[j]
        for p in range(start[g], start[g + 1]):
            i = order[p]
            if (abs(centre[i, 0] - centre[j, 0]) <= half[i, 0] + half[j, 0]
                    and abs(centre[i, 1] - centre[j, 1]) <= half[i, 1] + half[j, 1]):  # fmt: skip
                cand[m], slot[m] = i, s
                m += 1
    return cand[:m], slot[:m]


def edge_plan(
    nms: SinkhornNMS,
    boxes: Tensor,
    scores: Tensor,
    labels: Tensor,
    embeddings: Tensor | None,
    mask: Tensor,
    slot_index: Tensor,
    slot_mask: Tensor,
    num_groups: int,
) -> PlanEntries:
    """The plan of ``nms`` (its options, costs and iterations), solved on the edges.

    Args:
        boxes (Tensor[B, N, 4]); scores (Tensor[B, N]); labels (Tensor[B, N] int64, in
            ``0 .. num_groups - 1``); embeddings (Tensor[B, N, D], optional); mask (Tensor[B, N]
            bool); slot_index (Tensor[B, K] int64): each slot's seed; slot_mask (Tensor[B, K]
            bool).

    Returns:
        The entries of the plan ``[B, N + G, K + G]`` (G = ``num_groups``, class dustbins last,
        as :func:`~fabricdet.ops.sinkhorn.sinkhorn` returns it for the dense problem) that
        can be nonzero.
    """
    batch, n = scores.shape
    k, g = slot_index.shape[1], num_groups
    work = torch.promote_types(boxes.dtype, scores.dtype)
    work = torch.float64 if work == torch.float64 else torch.float32
    boxes, scores = boxes.to(work), scores.to(work)
    floor = nms.similarity_floor()
    given = labels[mask]
    if given.numel() and not bool(((given >= 0) & (given < g)).all()):  # loops index by group
        raise ValueError(f"labels must lie in 0 .. {g - 1} (num_classes), got {given.unique()}")
    labels = labels.masked_fill(~mask, 0)  # padding may carry any label
    image = torch.arange(batch, device=boxes.device).unsqueeze(1)
    group_of = image * g + labels  # [B, N]: (image, class) group of each candidate
    seeds = (slot_index + image * n).flatten()  # [B * K]
    cand, slot = _edges(boxes, group_of, batch * g, mask, seeds, slot_mask,
                        neighbourhood_reach(nms.overlap, nms.nwd_scale, floor))  # fmt: skip
    seed = seeds.index_select(0, slot)
    spatial = boxes if nms.spatial_grad else boxes.detach()
    terms = box_terms(spatial.reshape(-1, 4))  # [10, B * N]
    sigma = terms_overlap(terms.index_select(1, cand), terms.index_select(1, seed), nms.overlap,
                          nms.nwd_scale)  # fmt: skip
    sigma = torch.where(cand == seed, torch.ones_like(sigma), sigma)  # a seed overlaps itself
    if floor is not None:
        kept = (sigma >= floor).nonzero().squeeze(1)
        cand, slot, seed, sigma = (t.index_select(0, kept) for t in (cand, slot, seed, sigma))

    supply = (scores * mask).flatten()
    log_s = torch.log(scores.clamp_min(1e-6)).flatten()
    log_ratio = log_s.index_select(0, cand) - log_s.index_select(0, seed)
    dissim = None
    if embeddings is not None:
        emb = F.normalize(embeddings.to(work), dim=-1).flatten(0, 1)
        dissim = 1.0 - (emb.index_select(0, cand) * emb.index_select(0, seed)).sum(-1)
    cost, look = nms.pair_cost(sigma, log_ratio, dissim)
    # Capacities: without embeddings (or appearance capacities), the class mass (as the dense
    # module's unit kernel).
    group_mass = supply.new_zeros(batch * g).index_add_(0, group_of.flatten(), supply)
    slot_group = group_of.flatten().index_select(0, seeds)  # [B * K]
    if look is None or not nms.appearance_capacity:
        capacity = group_mass.index_select(0, slot_group)
    else:
        mass = supply.index_select(0, cand) * torch.exp(-look / nms.capacity_temperature)
        capacity = supply.new_zeros(batch * k).index_add(0, slot, mass)
    capacity = capacity * slot_mask.flatten()

    # The augmented problem's entries as (row, column, log-kernel) in flat indices: candidate
    # rows b * N + i, dustbin rows B * N + group; slot columns b * K + j, dustbin columns
    # B * K + group.
    real = mask.flatten().nonzero().squeeze(1)
    groups = torch.arange(batch * g, device=boxes.device)
    slots = slot_mask.flatten().nonzero().squeeze(1)
    rows = torch.cat([cand, real, batch * n + slot_group.index_select(0, slots),
                      batch * n + groups])  # fmt: skip
    cols = torch.cat([slot, batch * k + group_of.flatten().index_select(0, real), slots,
                      batch * k + groups])  # fmt: skip
    log_k = torch.cat(
        [
            cost * (-1.0 / nms.eps),
            cost.new_full((len(real),), -nms.dustbin_cost / nms.eps),
            cost.new_zeros(len(slots) + batch * g),
        ]
    )
    row_max = log_k.new_full((batch * (n + g),), -torch.inf)
    row_max = row_max.scatter_reduce(0, rows, log_k.detach(), "amax")
    stable = log_k - row_max.index_select(0, rows)
    kernel = cut_exp(stable)

    a = torch.cat([supply, group_mass.new_zeros(batch * g).index_add(0, slot_group, capacity)])
    b = torch.cat([capacity, group_mass])
    entries = edge_sinkhorn(kernel, a, b, rows, cols, nms.num_iters)
    entries = scale_grad(entries, nms.plan_grad_scale)

    # Coordinates in the dense plan: flat row r is image r // N, candidate r % N or, past
    # B * N, image (r - B N) // G, dustbin N + (r - B N) % G; columns likewise.
    is_dust_row, is_dust_col = rows >= batch * n, cols >= batch * k
    dust_r, dust_c = rows - batch * n, cols - batch * k
    return PlanEntries(
        entries,
        torch.where(is_dust_row, dust_r // g, rows // n),
        torch.where(is_dust_row, n + dust_r % g, rows % n),
        torch.where(is_dust_col, k + dust_c % g, cols % k),
    )
