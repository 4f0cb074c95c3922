"""The sparse SinkhornNMS eval decode as one compiled CPU kernel (numba).

The same problem, solver and decode as :func:`fabricdet.ops.sparse_sinkhorn_nms.sparse_sinkhorn_nms`
(read its module docstring): edges are the same-class pairs with similarity at or above the
floor, found by a sweep along one axis; each class has a dustbin row and column; a fixed
number of row-stabilised Sinkhorn iterations; the greedy decode over plan claims;
plan-weighted fusion.
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

# Imported constants are frozen into numba's disk cache, which tracks this file only: touch it
# if they change.
from fabricdet.ops.sinkhorn import HYBRID_CUTOFF
from fabricdet.ops.sinkhorn_nms_terms import SEED_FUSE_WEIGHT

# Overlap kinds, as integers for the kernel.
OVERLAP_CODES = {"iou": 0, "diou": 1, "nwd": 2, "iou+nwd": 3}
_EPS = 1e-9  # as fabricdet.ops.boxes
_SQRT_EPS = math.sqrt(_EPS)
_MIN_LOG_NWD = -80.0


@njit(cache=True, inline="always")
def _similarity(
    b: np.ndarray, root: np.ndarray, p: int, q: int, kind: int, scale: float, log_floor: float
) -> float:
    """``fabricdet.ops.boxes`` similarity of boxes ``p`` and ``q`` (rows of ``b``, xyxy;
    ``root``: each box's ``sqrt(w h + eps)``).

    For ``"iou+nwd"`` the Wasserstein term is skipped when it is shown below
    ``exp(log_floor)``: the result, IoU, is then exact or below the floor too. Most pairs the
    sweep tests are such pairs, and the test needs no square root or exp."""
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
    norm = max(scale * max(root[p], root[q]), _EPS)
    if kind == 3 and log_floor > _MIN_LOG_NWD:
        # exponent < log_floor  <=>  w2 > -log_floor * norm; in squares, with a margin of
        # 1e-9 so that rounding never rejects a pair the exact test below would keep.
        reach = (-log_floor * norm + _SQRT_EPS) * (1.0 + 1e-9)
        if w2sq + _EPS > reach * reach:
            return iou
    w2 = math.sqrt(w2sq + _EPS) - _SQRT_EPS
    exponent = max(-w2 / norm, _MIN_LOG_NWD)
    if kind == 3 and exponent < log_floor:
        return iou
    nwd = math.exp(exponent)
    return nwd if kind == 2 else max(iou, nwd)


_SWAP_XY = np.array([1, 0, 3, 2])


@njit(cache=True)
def _crowding(boxes: np.ndarray, axis: int, reach: float) -> float:
    """Sum of the sweep intervals' lengths along ``axis`` over the spread of the centres there:
    roughly how many boxes each one meets in a sweep along it."""
    lo, hi = boxes[:, axis], boxes[:, axis + 2]
    other = np.maximum(boxes[:, 3 - axis] - boxes[:, 1 - axis], 0.0)
    length = np.maximum(hi - lo, 0.0)
    centre = (lo + hi) / 2
    reaches = np.maximum(length, 2.0 * reach * np.sqrt(length * other))
    return reaches.sum() / (centre.max() - centre.min() + 1.0)


@njit(cache=True)
def _edges(
    boxes: np.ndarray, cls: np.ndarray, reach: float, floor: float, kind: int, scale: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs ``p < q`` of one class with similarity >= ``floor`` (``reach``: interval
    half-width per unit of size; inf: every pair of the class). Returns first, second, sigma.

    The sweep runs along the axis where the boxes' reach is shorter against the spread of
    their centres (every similarity is the same with x and y swapped): a wide image's thread
    candidates span much of its width, and along x every box meets most others."""
    n = len(boxes)
    if math.isfinite(reach) and _crowding(boxes, 1, reach) < _crowding(boxes, 0, reach):
        boxes = boxes[:, _SWAP_XY]
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    w = np.maximum(boxes[:, 2] - boxes[:, 0], 0.0)
    h = np.maximum(boxes[:, 3] - boxes[:, 1], 0.0)
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    root = np.sqrt(w * h + _EPS)
    half = np.full(n, np.inf)  # infinite reach: every pair of the class
    half_y = np.full(n, np.inf)
    if math.isfinite(reach):
        half = np.maximum(w / 2, reach * np.sqrt(w * h))
        half_y = np.maximum(h / 2, reach * np.sqrt(w * h))
    left = cx - half
    if math.isfinite(reach):  # classes moved apart along the sweep (torchvision's offset trick)
        stride = 2.0 * (boxes[:, 2].max() - boxes[:, 0].min() + 2.0 * half.max()) + 1.0
        key = left + cls * stride
    else:
        key = cls.astype(np.float64)
    order = np.argsort(key, kind="mergesort")  # by class, then left end
    # Every array in sweep order, so that the inner loop reads memory in sequence.
    sweep = (boxes[order], cls[order], cx[order], cy[order], left[order], half[order])
    bound = (half_y[order], root[order])
    log_floor = math.log(floor) if floor > 0 else -np.inf
    cap = 8 * n + 16
    first = np.empty(cap, np.int64)
    second = np.empty(cap, np.int64)
    sigma = np.empty(cap, np.float64)
    m = 0
    for a in range(n):
        # Grow before the row, to room for every pair it could add: arrays rebound inside the
        # sweep's inner loop cost a reference count per pair (half the sweep's time).
        if m + n - a > cap:
            cap = max(2 * cap, m + n - a)
            first, second, sigma = _grow(first, cap), _grow(second, cap), _grow(sigma, cap)
        m = _sweep_row(
            sweep, bound, order, a, kind, scale, floor, log_floor, first, second, sigma, m
        )
    return first[:m], second[:m], sigma[:m]


_Arrays = tuple[np.ndarray, ...]


@njit(cache=True)
def _sweep_row(
    sweep: _Arrays,
    bound: _Arrays,
    order: np.ndarray,
    a: int,
    kind: int,
    scale: float,
    floor: float,
    log_floor: float,
    first: np.ndarray,
    second: np.ndarray,
    sigma: np.ndarray,
    m: int,
) -> int:
    """The edges of the ``a``-th box in sweep order with the boxes after it, written from
    index ``m`` on; returns the new count. ``sweep``: boxes, classes, centres, left ends and
    half-widths, ``bound``: half-heights and square roots of the areas, all in sweep order;
    ``order``: the boxes' indices."""
    boxes, cls, cx, cy, left, half = sweep
    half_y, root = bound
    right = cx[a] + half[a]
    for c in range(a + 1, len(order)):
        if cls[c] != cls[a] or left[c] > right:
            break
        if abs(cy[a] - cy[c]) > half_y[a] + half_y[c]:  # the same bound across the sweep
            continue
        s = _similarity(boxes, root, a, c, kind, scale, log_floor)
        if s >= floor:
            p, q = order[a], order[c]
            first[m], second[m], sigma[m] = min(p, q), max(p, q), s
            m += 1
    return m


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
    appearance_capacity: bool,
    kind: int,
    scale: float,
    floor: float,
    reach: float,
    fuse: bool,
    fuse_power: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Hard decode and output boxes.

    Args:
        boxes (float64[N, 4]), scores (float64[N]), cls (int64[N], dense 0..G-1),
        embeddings (float64[N, D], D = 0 without): L2-normalised.
        floor: similarity floor (-inf: none); reach: sweep reach (inf: whole class).
        fuse_power: each candidate's mass in a fused box is times its score to this power.
        The rest: SinkhornNMS options (``q_range`` inf: raw log-ratio prior).

    Returns:
        keep (bool[N]), boxes (float64[N, 4]): fused (or own) box of every candidate's slot.
    """
    first, second, sigma = _edges(boxes, cls, reach, floor, kind, scale)
    look, self_look = _looks(first, second, embeddings, margin)
    start, col, sim, look = _rows(len(scores), cls, first, second, sigma, look, self_look)
    class_mass = np.zeros(cls.max() + 1)
    for i in range(len(scores)):
        class_mass[cls[i]] += scores[i]
    kernel, capacity = _kernel(
        start, col, sim, look, scores, cls, class_mass, embeddings.shape[1] > 0,
        appearance_capacity, theta, eps, w_sp, w_ft, margin, w_q, q_range, delta, tau,
    )  # fmt: skip
    u, v = _scalings(kernel, start, col, cls, scores, capacity, class_mass, num_iters)
    keep = _decode(kernel, v, start, col, scores)
    out = _fuse(kernel, u, v, start, col, boxes, scores, fuse_power) if fuse else boxes.copy()
    return keep, out


@njit(cache=True)
def _looks(
    first: np.ndarray, second: np.ndarray, embeddings: np.ndarray, margin: float
) -> tuple[np.ndarray, np.ndarray]:
    """Appearance distance beyond the margin, ``relu(d - mu) / (1 - mu)`` with ``d = 1 - cos``
    (``d`` itself when ``mu`` = 0), of every edge and of every candidate with itself; zeros
    without embeddings. Once per edge: the two entries of a pair share it."""
    n, dim = embeddings.shape
    look = np.zeros(len(first))
    self_look = np.zeros(n)
    if dim:
        for e in range(len(first)):
            look[e] = _look(embeddings, first[e], second[e], margin)
        for i in range(n):
            self_look[i] = _look(embeddings, i, i, margin)
    return look, self_look


@njit(cache=True, inline="always")
def _look(embeddings: np.ndarray, i: int, j: int, margin: float) -> float:
    d = 1.0
    for t in range(embeddings.shape[1]):
        d -= embeddings[i, t] * embeddings[j, t]
    return max(d - margin, 0.0) / (1.0 - margin) if margin else d


@njit(cache=True)
def _rows(
    n: int,
    cls: np.ndarray,
    first: np.ndarray,
    second: np.ndarray,
    sigma: np.ndarray,
    look: np.ndarray,
    self_look: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """CSR pattern of the candidate rows: itself first, then its partners, then its class's
    dustbin (column ``n + cls``) last. Returns row starts, columns, similarities, looks."""
    start = np.zeros(n + 1, np.int64)
    for i in range(n):
        start[i + 1] = 2  # self and dustbin
    for e in range(len(first)):
        start[first[e] + 1] += 1
        start[second[e] + 1] += 1
    start = np.cumsum(start)
    col = np.empty(start[n], np.int64)
    sim = np.empty(start[n], np.float64)
    looks = np.zeros(start[n], np.float64)
    fill = start[:n] + 1
    for i in range(n):
        col[start[i]], sim[start[i]], looks[start[i]] = i, 1.0, self_look[i]
        col[start[i + 1] - 1], sim[start[i + 1] - 1] = n + cls[i], 0.0
    for e in range(len(first)):
        p, q = first[e], second[e]
        col[fill[p]], sim[fill[p]], looks[fill[p]] = q, sigma[e], look[e]
        col[fill[q]], sim[fill[q]], looks[fill[q]] = p, sigma[e], look[e]
        fill[p] += 1
        fill[q] += 1
    return start, col, sim, looks


@njit(cache=True)
def _kernel(
    start: np.ndarray,
    col: np.ndarray,
    sim: np.ndarray,
    look: np.ndarray,
    supply: np.ndarray,
    cls: np.ndarray,
    class_mass: np.ndarray,
    has_looks: bool,
    appearance_capacity: bool,
    theta: float,
    eps: float,
    w_sp: float,
    w_ft: float,
    margin: float,
    w_q: float,
    q_range: float,
    delta: float,
    tau: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Row-stabilised kernel ``exp(-C / eps - row max)`` per entry, and slot capacities."""
    n = len(supply)
    look_capacity = has_looks and appearance_capacity
    log_s = np.log(np.maximum(supply, 1e-6))
    # tanh(log(x) / r) = (x^(2/r) - 1) / (x^(2/r) + 1): with powers of the scores computed once
    # per candidate, the prior costs no transcendental function per entry (exp and tanh per
    # entry were most of this function's time). Large exponents (tiny r) would overflow.
    rational = not math.isinf(q_range) and q_range >= 0.05
    power = np.exp(log_s * (2.0 / q_range)) if rational else log_s
    kernel = np.empty(len(col))
    capacity = np.empty(n)
    for i in range(n):
        best = -np.inf
        total = 0.0
        for e in range(start[i], start[i + 1]):
            j = col[e]
            if j >= n:
                kernel[e] = -delta / eps
            else:
                cost = w_sp / theta * max(theta - sim[e], 0.0)
                if has_looks:
                    cost += w_ft * look[e]
                if look_capacity:  # within the margin (most duplicates) the kernel is 1
                    total += supply[j] * (math.exp(-look[e] / tau) if look[e] > 0.0 else 1.0)
                if rational:
                    y = power[i] / power[j]
                    cost += w_q * q_range * (y - 1.0) / (y + 1.0)
                elif math.isinf(q_range):
                    cost += w_q * (log_s[i] - log_s[j])
                else:
                    cost += w_q * q_range * math.tanh((log_s[i] - log_s[j]) / q_range)
                kernel[e] = -cost / eps
            best = max(best, kernel[e])
        for e in range(start[i], start[i + 1]):  # as the dense solver: 0 below its cutoff
            stable = kernel[e] - best
            kernel[e] = math.exp(stable) if stable > HYBRID_CUTOFF else 0.0
        # Without appearance capacities a slot may absorb its whole class; with them, the
        # look-alike mass that reaches it (its row: the edges are symmetric).
        capacity[i] = total if look_capacity else class_mass[cls[i]]
    return kernel, capacity


@njit(cache=True)
def _scalings(
    kernel: np.ndarray,
    start: np.ndarray,
    col: np.ndarray,
    cls: np.ndarray,
    supply: np.ndarray,
    capacity: np.ndarray,
    class_mass: np.ndarray,
    num_iters: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Sinkhorn's ``u = a / (K v)``, ``v = b / (K^T u)`` on the augmented problem: rows are the
    candidates then the class dustbins (whose kernel rows are all 1: cost 0), columns the slots
    then the class dustbins; ``a = [supply, class capacity]``, ``b = [capacity, class mass]``."""
    n, g = len(supply), len(class_mass)
    a_dust = np.zeros(g)
    for i in range(n):
        a_dust[cls[i]] += capacity[i]
    u, v = np.ones(n + g), np.ones(n + g)
    row_sum, col_sum = np.empty(n + g), np.empty(n + g)
    tiny = 2.2250738585072014e-308  # as the tensor path's clamp
    for _ in range(num_iters):
        row_sum[n:] = v[n:]  # dustbin rows: the corner, then their class's slots
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
        col_sum[n:] = u[n:]  # dustbin columns: the corner, then their class's candidates
        for j in range(n):
            col_sum[j] = u[n + cls[j]]  # the dustbin row
        for i in range(n):
            for e in range(start[i], start[i + 1]):
                col_sum[col[e]] += kernel[e] * u[i]
        for j in range(n):
            v[j] = capacity[j] / (col_sum[j] + tiny)
        for c in range(g):
            v[n + c] = class_mass[c] / (col_sum[n + c] + tiny)
    return u, v


@njit(cache=True)
def _decode(
    kernel: np.ndarray, v: np.ndarray, start: np.ndarray, col: np.ndarray, scores: np.ndarray
) -> np.ndarray:
    """Greedy NMS over plan claims, exactly, in rank order (score, then lower index): seed
    ``i`` (row entries ``kernel * v``, up to ``u_i``) survives unless its dustbin entry beats
    its own slot's, or a kept better-ranked slot's entry is at least as large."""
    n = len(scores)
    keep = np.zeros(n, np.bool_)
    by_rank = np.argsort(-scores, kind="mergesort")  # stable: ties by lower index
    rank = np.empty(n, np.int64)
    rank[by_rank] = np.arange(n)
    for r in range(n):
        i = by_rank[r]
        if scores[i] <= 0:
            continue
        own = kernel[start[i]] * v[i]  # the self entry comes first
        last = start[i + 1] - 1  # the dustbin entry comes last
        alive = kernel[last] * v[col[last]] <= own
        for e in range(start[i] + 1, last):
            j = col[e]
            if alive and rank[j] < r and keep[j] and kernel[e] * v[j] >= own:
                alive = False
        keep[i] = alive
    return keep


@njit(cache=True)
def _fuse(
    kernel: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    start: np.ndarray,
    col: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray,
    power: float,
) -> np.ndarray:
    """Plan-weighted box of every slot (dustbin row excluded; the seed weighted tiny), each
    candidate's mass times its score to ``power``."""
    n = len(boxes)
    weight = np.zeros(n)
    acc = np.zeros((n, 4))
    for i in range(n):
        sharp = scores[i] ** power if power != 0.0 else 1.0
        for e in range(start[i], start[i + 1] - 1):
            j = col[e]
            p = u[i] * kernel[e] * v[j] * sharp
            weight[j] += p
            for t in range(4):  # scalar loops: array expressions allocate
                acc[j, t] += p * boxes[i, t]
    out = np.empty_like(boxes)
    seed = SEED_FUSE_WEIGHT
    for j in range(n):
        for t in range(4):
            out[j, t] = (acc[j, t] + seed * boxes[j, t]) / (weight[j] + seed)
    return out
