"""The sparse SinkhornNMS eval decode as one compiled CPU kernel (numba).

The same problem, solver and decode as :func:`fabricdet.ops.sparse_sinkhorn_nms.sparse_sinkhorn_nms`
(read its module docstring): edges are the same-class pairs with similarity at or above the
floor, found by a sweep along x; each class has a dustbin row and column; a fixed number of
row-stabilised Sinkhorn iterations; the greedy decode over plan claims; plan-weighted fusion.
Why a second implementation: at N = 1000 the PyTorch version is about a hundred small tensor
ops (gathers over ~10^4 edges, 20 sparse matrix-vector products, the fixed-point passes),
whose dispatch costs far more than their arithmetic; here each step is one loop. The decode is
the exact greedy pass in rank order (the PyTorch version iterates to the same fixed point,
capped at ``decode_iters`` passes). Everything runs in float64.

Compiled on first use (cached on disk by numba); CPU only: the PyTorch version serves CUDA.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# Overlap kinds, as integers for the kernel.
OVERLAP_CODES = {"iou": 0, "diou": 1, "nwd": 2, "iou+nwd": 3}
_EPS = 1e-9  # as fabricdet.ops.boxes
_MIN_LOG_NWD = -80.0
_TINY_FUSE = 1e-6  # weight of the seed box in its fused box, as the PyTorch paths


@njit(cache=True, inline="always")
def _similarity(b: np.ndarray, p: int, q: int, kind: int, scale: float) -> float:
    """``fabricdet.ops.boxes`` similarity of boxes ``p`` and ``q`` (rows of ``b``, xyxy)."""
    ax1, ay1, ax2, ay2 = b[p, 0], b[p, 1], b[p, 2], b[p, 3]
    bx1, by1, bx2, by2 = b[q, 0], b[q, 1], b[q, 2], b[q, 3]
    aw, ah = max(ax2 - ax1, 0.0), max(ay2 - ay1, 0.0)
    bw, bh = max(bx2 - bx1, 0.0), max(by2 - by1, 0.0)
    iw = max(min(ax2, bx2) - max(ax1, bx1), 0.0)
    ih = max(min(ay2, by2) - max(ay1, by1), 0.0)
    inter = iw * ih
    iou = inter / max(aw * ah + bw * bh - inter, _EPS)
    dx = (ax1 + ax2) / 2 - (bx1 + bx2) / 2
    dy = (ay1 + ay2) / 2 - (by1 + by2) / 2
    if kind == 0:
        return iou
    if kind == 1:
        ew = max(ax2, bx2) - min(ax1, bx1)
        eh = max(ay2, by2) - min(ay1, by1)
        return iou - (dx * dx + dy * dy) / max(ew * ew + eh * eh, _EPS)
    w2sq = dx * dx + dy * dy + ((aw - bw) ** 2 + (ah - bh) ** 2) / 4
    w2 = math.sqrt(w2sq + _EPS) - math.sqrt(_EPS)
    size = max(math.sqrt(aw * ah + _EPS), math.sqrt(bw * bh + _EPS))
    nwd = math.exp(max(-w2 / max(scale * size, _EPS), _MIN_LOG_NWD))
    return nwd if kind == 2 else max(iou, nwd)


@njit(cache=True)
def _edges(
    boxes: np.ndarray, cls: np.ndarray, reach: float, floor: float, kind: int, scale: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs ``p < q`` of one class with similarity >= ``floor`` (``reach``: interval
    half-width per unit of size; inf: every pair of the class). Returns first, second, sigma."""
    n = len(boxes)
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    w = np.maximum(boxes[:, 2] - boxes[:, 0], 0.0)
    h = np.maximum(boxes[:, 3] - boxes[:, 1], 0.0)
    half = np.full(n, np.inf)  # infinite reach: every pair of the class
    if math.isfinite(reach):
        half = np.maximum(w / 2, reach * np.sqrt(w * h))
    left = cx - half
    if math.isfinite(reach):  # classes moved apart along x (torchvision's offset trick)
        stride = 2.0 * (boxes[:, 2].max() - boxes[:, 0].min() + 2.0 * half.max()) + 1.0
        key = left + cls * stride
    else:
        key = cls.astype(np.float64)
    order = np.argsort(key, kind="mergesort")  # by class, then left end
    cap = 8 * n + 16
    first = np.empty(cap, np.int64)
    second = np.empty(cap, np.int64)
    sigma = np.empty(cap, np.float64)
    m = 0
    for a in range(n):
        p = order[a]
        right = cx[p] + half[p]
        for c in range(a + 1, n):
            q = order[c]
            if cls[q] != cls[p] or left[q] > right:
                break
            s = _similarity(boxes, p, q, kind, scale)
            if s >= floor:
                if m == cap:
                    cap *= 2
                    first, second = _grow(first, cap), _grow(second, cap)
                    sigma = _grow(sigma, cap)
                first[m], second[m], sigma[m] = min(p, q), max(p, q), s
                m += 1
    return first[:m], second[:m], sigma[:m]


@njit(cache=True)
def _grow(a: np.ndarray, cap: int) -> np.ndarray:
    out = np.empty(cap, a.dtype)
    out[: len(a)] = a
    return out


@njit(cache=True)
def sinkhorn_nms_kernel(
    boxes: np.ndarray,
    scores: np.ndarray,
    cls: np.ndarray,
    embeddings: np.ndarray,
    theta: float,
    eps: float,
    num_iters: int,
    w_sp: float,
    w_ft: float,
    margin: float,
    w_q: float,
    q_range: float,
    delta: float,
    tau: float,
    kind: int,
    scale: float,
    floor: float,
    reach: float,
    fuse: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Hard decode and output boxes.

    Args:
        boxes (float64[N, 4]), scores (float64[N]), cls (int64[N], dense 0..G-1),
        embeddings (float64[N, D], D = 0 without): L2-normalised.
        floor: similarity floor (-inf: none); reach: sweep reach (inf: whole class).
        The rest: SinkhornNMS options (``q_range`` inf: raw log-ratio prior).

    Returns:
        keep (bool[N]), boxes (float64[N, 4]): fused (or own) box of every candidate's slot.
    """
    n = len(scores)
    g = cls.max() + 1
    first, second, sigma = _edges(boxes, cls, reach, floor, kind, scale)
    # CSR rows: each candidate's partners, itself, then its class's dustbin (column n + cls).
    deg = np.ones(n, np.int64)  # self
    for e in range(len(first)):
        deg[first[e]] += 1
        deg[second[e]] += 1
    start = np.zeros(n + 1, np.int64)
    for i in range(n):
        start[i + 1] = start[i] + deg[i] + 1  # + dustbin entry
    nnz = start[n]
    col = np.empty(nnz, np.int64)
    sim = np.empty(nnz, np.float64)
    fill = start[:n].copy()
    for i in range(n):
        col[fill[i]], sim[fill[i]] = i, 1.0
        fill[i] += 1
    for e in range(len(first)):
        p, q = first[e], second[e]
        col[fill[p]], sim[fill[p]] = q, sigma[e]
        fill[p] += 1
        col[fill[q]], sim[fill[q]] = p, sigma[e]
        fill[q] += 1
    for i in range(n):
        col[fill[i]], sim[fill[i]] = n + cls[i], 0.0

    # Supplies, capacities, the class masses.
    supply = scores
    log_s = np.log(np.maximum(scores, 1e-6))
    class_mass = np.zeros(g)
    for i in range(n):
        class_mass[cls[i]] += supply[i]
    dim = embeddings.shape[1]
    dissim = np.zeros(nnz)
    capacity = np.empty(n)
    if dim == 0:
        for i in range(n):
            capacity[i] = class_mass[cls[i]]
    else:
        for i in range(n):
            total = 0.0
            for e in range(start[i], start[i + 1] - 1):
                j = col[e]
                dot = 0.0
                for t in range(dim):
                    dot += embeddings[i, t] * embeddings[j, t]
                d = 1.0 - dot
                dissim[e] = d
                total += supply[j] * math.exp(-d / tau)
            capacity[i] = total
    # Row-stabilised kernel: K[e] = exp(log_k - row max); row i's entries are (i -> col[e]).
    log_k = np.empty(nnz)
    kernel = np.empty(nnz)
    for i in range(n):
        best = -np.inf
        for e in range(start[i], start[i + 1]):
            j = col[e]
            if j >= n:
                cost = delta
            else:
                cost = w_sp / theta * max(theta - sim[e], 0.0)
                if dim:
                    d = dissim[e]
                    cost += w_ft * (max(d - margin, 0.0) / (1.0 - margin) if margin else d)
                ratio = log_s[i] - log_s[j]
                if math.isinf(q_range):
                    cost += w_q * ratio
                else:
                    cost += w_q * q_range * math.tanh(ratio / q_range)
            log_k[e] = -cost / eps
            best = max(best, log_k[e])
        for e in range(start[i], start[i + 1]):
            kernel[e] = math.exp(log_k[e] - best)
    # Marginals: rows = candidates then class dustbins; columns = slots then class dustbins.
    a_dust = np.zeros(g)
    for i in range(n):
        a_dust[cls[i]] += capacity[i]
    u = np.ones(n + g)
    v = np.ones(n + g)
    row_sum = np.empty(n + g)
    col_sum = np.empty(n + g)
    tiny = 2.2250738585072014e-308
    for _ in range(num_iters):
        # u = a / (K v): candidate rows over their entries; dustbin rows (all 1) over the
        # class's slots and the corner.
        for c in range(g):
            row_sum[n + c] = v[n + c]
        for i in range(n):
            total = 0.0
            for e in range(start[i], start[i + 1]):
                total += kernel[e] * v[col[e]]
            row_sum[i] = total
            row_sum[n + cls[i]] += v[i]
        for i in range(n):
            u[i] = supply[i] / (row_sum[i] + tiny)
        for c in range(g):
            u[n + c] = a_dust[c] / (row_sum[n + c] + tiny)
        # v = b / (K^T u): slot columns take their edges' candidates and the dustbin row;
        # dustbin columns their class's candidates and the corner.
        for j in range(n):
            col_sum[j] = u[n + cls[j]]
        for c in range(g):
            col_sum[n + c] = u[n + c]
        for i in range(n):
            for e in range(start[i], start[i + 1]):
                col_sum[col[e]] += kernel[e] * u[i]
        for j in range(n):
            v[j] = capacity[j] / (col_sum[j] + tiny)
        for c in range(g):
            v[n + c] = class_mass[c] / (col_sum[n + c] + tiny)

    # Decode: seed i's row, up to u_i: kernel * v. Claims by better-ranked slots; greedy pass.
    rank = np.empty(n, np.int64)
    by_rank = np.argsort(-scores, kind="mergesort")  # stable: ties by lower index
    for r in range(n):
        rank[by_rank[r]] = r
    keep = np.zeros(n, np.bool_)
    for r in range(n):
        i = by_rank[r]
        if supply[i] <= 0:
            continue
        own = 0.0
        for e in range(start[i], start[i + 1]):
            if col[e] == i:
                own = kernel[e] * v[i]
        alive = True
        for e in range(start[i], start[i + 1]):
            j = col[e]
            value = kernel[e] * v[j]
            if j >= n:
                if value > own:
                    alive = False
            elif j != i and rank[j] < r and keep[j] and value >= own:
                alive = False
        keep[i] = alive

    out = boxes.copy()
    if fuse:
        weight = np.zeros(n)
        acc = np.zeros((n, 4))
        for i in range(n):
            for e in range(start[i], start[i + 1]):
                j = col[e]
                if j < n:
                    p = u[i] * kernel[e] * v[j]
                    weight[j] += p
                    for t in range(4):  # scalar loops: array expressions allocate
                        acc[j, t] += p * boxes[i, t]
        for j in range(n):
            for t in range(4):
                out[j, t] = (acc[j, t] + _TINY_FUSE * boxes[j, t]) / (weight[j] + _TINY_FUSE)
    return keep, out
