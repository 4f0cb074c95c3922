r"""Balanced Sinkhorn on an edge list, with a hand-written reverse pass.

The kernel is given on ``E`` entries ``(rows[e], cols[e])`` of an ``R x C`` matrix (every other
entry is 0). From ``v_0 = 1``, ``T`` iterations of::

    q_t = K v_{t-1} + tiny,   u_t = a / q_t,   s_t = K^T u_t + tiny,   v_t = b / s_t

and the plan's entries ``P_e = u_T[r_e] K_e v_T[c_e]``: the row-then-column rescalings of the
dense hybrid solver (:func:`fabricdet.ops.sinkhorn.sinkhorn`) with the scalings kept apart.
Gradients are those of the unrolled iterations (what autograd would give), but computed by one
reverse sweep over the stored scalings instead of by autograd over ~25 tensor ops per iteration
(on CPU the dispatch of those small ops, not their arithmetic, was the cost). Reverse sweep,
from ``gu_T, gv_T`` of the output::

    gb += gv_t / s_t,   gs_t = -gv_t v_t / s_t,   gK_e += gs_t[c] u_t[r],   gu_t[r] += gs_t[c] K_e
    ga += gu_t / q_t,   gq_t = -gu_t u_t / q_t,   gK_e += gq_t[r] v_{t-1}[c],
    gv_{t-1}[c] = sum_e gq_t[r] K_e

On CPU both sweeps are compiled loops (numba, cached on disk); elsewhere they are tensor ops.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit
from torch import Tensor


@njit(cache=True)
def _forward_loops(
    kernel: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    iters: int,
    tiny: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The plan's entries (``[E]``) and the scalings ``u_t, q_t`` (``[T, R]``) and ``v_t, s_t``
    (``[T + 1, C]``, ``v_0 = 1``)."""
    num_rows, num_cols = len(a), len(b)
    u = np.zeros((iters, num_rows))
    q = np.zeros((iters, num_rows))
    v = np.ones((iters + 1, num_cols))
    s = np.zeros((iters + 1, num_cols))
    for t in range(iters):
        for e in range(len(kernel)):
            q[t, rows[e]] += kernel[e] * v[t, cols[e]]
        for r in range(num_rows):
            q[t, r] += tiny
            u[t, r] = a[r] / q[t, r]
        for e in range(len(kernel)):
            s[t + 1, cols[e]] += kernel[e] * u[t, rows[e]]
        for c in range(num_cols):
            s[t + 1, c] += tiny
            v[t + 1, c] = b[c] / s[t + 1, c]
    entries = np.empty(len(kernel))
    for e in range(len(kernel)):
        entries[e] = u[iters - 1, rows[e]] * kernel[e] * v[iters, cols[e]]
    return entries, u, q, v, s


@njit(cache=True)
def _backward_loops(
    grad: np.ndarray,
    kernel: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    u: np.ndarray,
    q: np.ndarray,
    v: np.ndarray,
    s: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of the kernel entries, ``a`` and ``b`` (module docstring)."""
    iters, num_rows = u.shape
    num_cols = v.shape[1]
    g_k = np.zeros(len(kernel))
    g_a = np.zeros(num_rows)
    g_b = np.zeros(num_cols)
    g_u = np.zeros(num_rows)
    g_v = np.zeros(num_cols)
    for e in range(len(kernel)):
        r, c = rows[e], cols[e]
        g_k[e] = grad[e] * u[iters - 1, r] * v[iters, c]
        g_u[r] += grad[e] * kernel[e] * v[iters, c]
        g_v[c] += grad[e] * u[iters - 1, r] * kernel[e]
    for t in range(iters - 1, -1, -1):
        g_s = np.empty(num_cols)
        for c in range(num_cols):
            g_b[c] += g_v[c] / s[t + 1, c]
            g_s[c] = -g_v[c] * v[t + 1, c] / s[t + 1, c]
        for e in range(len(kernel)):
            r, c = rows[e], cols[e]
            g_k[e] += g_s[c] * u[t, r]
            g_u[r] += g_s[c] * kernel[e]
        g_q = np.empty(num_rows)
        for r in range(num_rows):
            g_a[r] += g_u[r] / q[t, r]
            g_q[r] = -g_u[r] * u[t, r] / q[t, r]
            g_u[r] = 0.0
        g_v[:] = 0.0
        for e in range(len(kernel)):
            r, c = rows[e], cols[e]
            g_k[e] += g_q[r] * v[t, c]
            g_v[c] += g_q[r] * kernel[e]
    return g_k, g_a, g_b


def _forward_ops(
    kernel: Tensor, a: Tensor, b: Tensor, rows: Tensor, cols: Tensor, iters: int, tiny: float
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """:func:`_forward_loops` in tensor ops (any device)."""
    us, qs, vs, ss = [], [], [torch.ones_like(b)], [torch.zeros_like(b)]
    for _ in range(iters):
        q = torch.zeros_like(a).index_add_(0, rows, kernel * vs[-1].index_select(0, cols)) + tiny
        us.append(a / q)
        qs.append(q)
        s = torch.zeros_like(b).index_add_(0, cols, kernel * us[-1].index_select(0, rows)) + tiny
        vs.append(b / s)
        ss.append(s)
    return torch.stack(us), torch.stack(qs), torch.stack(vs), torch.stack(ss)


def _backward_ops(
    grad: Tensor,
    kernel: Tensor,
    rows: Tensor,
    cols: Tensor,
    u: Tensor,
    q: Tensor,
    v: Tensor,
    s: Tensor,
) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`_backward_loops` in tensor ops (any device)."""
    iters = len(u)
    u_r = u[-1].index_select(0, rows)
    v_c = v[-1].index_select(0, cols)
    g_k = grad * u_r * v_c
    g_u = torch.zeros_like(u[0]).index_add_(0, rows, grad * kernel * v_c)
    g_v = torch.zeros_like(v[0]).index_add_(0, cols, grad * u_r * kernel)
    g_a, g_b = torch.zeros_like(u[0]), torch.zeros_like(v[0])
    for t in range(iters - 1, -1, -1):
        g_b += g_v / s[t + 1]
        g_s = (-g_v * v[t + 1] / s[t + 1]).index_select(0, cols)
        g_k += g_s * u[t].index_select(0, rows)
        g_u = g_u.index_add_(0, rows, g_s * kernel)
        g_a += g_u / q[t]
        g_q = (-g_u * u[t] / q[t]).index_select(0, rows)
        g_k += g_q * v[t].index_select(0, cols)
        g_v = torch.zeros_like(g_v).index_add_(0, cols, g_q * kernel)
        g_u = torch.zeros_like(g_u)
    return g_k, g_a, g_b


class _EdgeSinkhorn(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        kernel: Tensor,
        a: Tensor,
        b: Tensor,
        rows: Tensor,
        cols: Tensor,
        iters: int,
    ) -> Tensor:
        tiny = float(torch.finfo(kernel.dtype).tiny)
        if kernel.device.type == "cpu":
            found = _forward_loops(
                *(x.detach().double().numpy() for x in (kernel, a, b)), rows.numpy(),
                cols.numpy(), iters, tiny,
            )  # fmt: skip
            entries, u, q, v, s = (torch.from_numpy(x) for x in found)
        else:
            u, q, v, s = _forward_ops(kernel, a, b, rows, cols, iters, tiny)
            entries = u[-1].index_select(0, rows) * kernel * v[-1].index_select(0, cols)
        ctx.save_for_backward(kernel, rows, cols, u, q, v, s)
        return entries.to(kernel.dtype)

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad: Tensor
    ) -> tuple[Tensor | None, ...]:
        kernel, rows, cols, u, q, v, s = ctx.saved_tensors
        if kernel.device.type == "cpu":
            found = _backward_loops(
                grad.detach().double().numpy(), kernel.detach().double().numpy(),
                rows.numpy(), cols.numpy(),
                u.numpy(), q.numpy(), v.numpy(), s.numpy(),
            )  # fmt: skip
            g_k, g_a, g_b = (torch.from_numpy(x).to(kernel.dtype) for x in found)
        else:
            g_k, g_a, g_b = _backward_ops(grad, kernel, rows, cols, u, q, v, s)
        return g_k, g_a, g_b, None, None, None


def edge_sinkhorn(
    kernel: Tensor, a: Tensor, b: Tensor, rows: Tensor, cols: Tensor, iters: int
) -> Tensor:
    """The plan's entries after ``iters`` rescalings (module docstring); differentiable in
    ``kernel``, ``a`` and ``b``.

    Args:
        kernel (Tensor[E]): kernel entries (row-stabilised by the caller), float32 or float64.
        a (Tensor[R]), b (Tensor[C]): row and column marginals.
        rows (Tensor[E] int64), cols (Tensor[E] int64): each entry's row and column.

    Returns:
        Tensor[E]: ``u[rows] * kernel * v[cols]`` (on CPU computed in float64).
    """
    return _EdgeSinkhorn.apply(kernel, a, b, rows, cols, iters)
