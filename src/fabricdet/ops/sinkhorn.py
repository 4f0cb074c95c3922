"""Entropy-regularised optimal transport solved with Sinkhorn-Knopp in the log domain.

Balanced problem (:func:`sinkhorn`), for cost ``C`` and marginals ``a``, ``b``::

    P* = argmin_{P >= 0, P 1 = a, P^T 1 = b}  <C, P> - eps * H(P),   H(P) = -sum P (log P - 1)

whose solution is ``P = diag(u) exp(-C / eps) diag(v)``. The scalings are kept as
log-potentials (``log u``, ``log v``), so nothing under- or overflows for small ``eps`` or large
costs, and every update is a ``logsumexp``.

Unbalanced problem (:func:`sinkhorn_unbalanced`), POT's convention (``reg_type="kl"``)::

    P* = argmin_{P >= 0} <C, P> + eps * KL(P | a b^T) + tau_a * KL(P 1 | a) + tau_b * KL(P^T 1 | b)

with ``KL(x | y) = sum x log(x / y) - x + y``; ``tau = inf`` makes that marginal exact.

Dustbin augmentation (:func:`add_dustbin`) appends one row and one column (SuperGlue): mass a
row cannot place in a real column goes to the dustbin column at its cost, and the spare
capacity of the columns is filled from the dustbin row. The augmented problem is balanced.

Every function is batched over leading dimensions (``cost`` is ``[..., N, M]``), accepts
validity masks for padded rows/columns, and supports two stopping rules:

- ``tol=None``: exactly ``max_iter`` iterations, no host synchronisation; the form to use under
  ``torch.compile``, CUDA graphs and ONNX export;
- ``tol=float``: stop when the L1 error of the row marginals falls below ``tol`` (checked every
  ``check_every`` iterations, which costs one host synchronisation each time).

Gradients: ``grad="unrolled"`` backpropagates through the iterations (exact for the computed
plan, memory grows with ``max_iter``); ``grad="implicit"`` differentiates the optimality
conditions at the returned plan (exact at convergence, constant memory, one ``[M, M]`` linear
solve in the backward pass).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

# Log-value standing for "no mass". Finite so that gradients through masked entries are 0, not
# NaN; far below any log-kernel value a real problem produces (|C| / eps <= ~1e7).
_NEG = -1e9
# Hybrid solver: kernel entries this far (in nats) below their row's best are set to 0.
HYBRID_CUTOFF = -60.0

GradMode = Literal["unrolled", "implicit"]
SolverMode = Literal["log", "hybrid"]


def _prepare(
    cost: Tensor,
    a: Tensor,
    b: Tensor,
    row_mask: Tensor | None,
    col_mask: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, torch.dtype]:
    """Cast to float32 or float64 and build boolean masks of valid rows and columns.

    Returns:
        cost (Tensor[..., N, M]), a (Tensor[..., N]), b (Tensor[..., M]),
        row_mask (Tensor[..., N] bool), col_mask (Tensor[..., M] bool), the input dtype.
    """
    if cost.dim() < 2:
        raise ValueError(f"cost must have shape [..., N, M], got {tuple(cost.shape)}")
    in_dtype = cost.dtype
    # Half precision cannot hold the potentials: the solver always runs in fp32 or fp64.
    work = torch.float64 if in_dtype == torch.float64 else torch.float32
    cost = cost.to(work)
    a = a.to(work).expand(cost.shape[:-1])
    b = b.to(work).expand(cost.shape[:-2] + cost.shape[-1:])
    if row_mask is None:
        row_mask = torch.ones(a.shape, dtype=torch.bool, device=cost.device)
    if col_mask is None:
        col_mask = torch.ones(b.shape, dtype=torch.bool, device=cost.device)
    row_mask, col_mask = row_mask.expand(a.shape), col_mask.expand(b.shape)
    # Padding carries no mass, whatever values the caller left there.
    a, b = a * row_mask, b * col_mask
    return cost, a, b, row_mask, col_mask, in_dtype


def _safe_log(x: Tensor, mask: Tensor) -> Tensor:
    """log(x) where mask (x clamped away from 0), ``_NEG`` elsewhere; finite gradients."""
    tiny = torch.finfo(x.dtype).tiny
    return torch.where(mask, torch.log(x.clamp_min(tiny)), torch.full_like(x, _NEG))


def _iterate(
    log_k: Tensor,
    log_a: Tensor,
    log_b: Tensor,
    max_iter: int,
    tol: float | None,
    check_every: int,
    a: Tensor,
    fi_a: float = 1.0,
    fi_b: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """Alternate the scaling updates; ``fi < 1`` gives the unbalanced (KL-relaxed) updates.

    Args:
        log_k (Tensor[..., N, M]): log-kernel, ``-C / eps`` (plus the reference measure).
        log_a (Tensor[..., N]), log_b (Tensor[..., M]): log-marginals, ``_NEG`` where masked.
        a (Tensor[..., N]): row marginals, for the stopping test.

    Returns:
        log_u (Tensor[..., N]), log_v (Tensor[..., M]).
    """
    log_u = torch.zeros_like(log_a)
    log_v = torch.zeros_like(log_b)
    for it in range(max_iter):
        log_u = fi_a * (log_a - torch.logsumexp(log_k + log_v.unsqueeze(-2), dim=-1))
        log_v = fi_b * (log_b - torch.logsumexp(log_k + log_u.unsqueeze(-1), dim=-2))
        if tol is not None and (it + 1) % check_every == 0:
            rows = torch.exp(log_u.unsqueeze(-1) + log_k + log_v.unsqueeze(-2)).sum(-1)
            if float((rows - a).abs().sum(-1).max()) < tol:  # host sync: eager mode only
                break
    return log_u, log_v


def cut_exp(stable: Tensor) -> Tensor:
    """``exp`` of row-stabilised log-kernel entries, 0 more than ``HYBRID_CUTOFF`` nats below
    their row's best (the clamp keeps ``exp`` itself out of the denormal range; see
    :func:`_iterate_hybrid`)."""
    return torch.where(stable > HYBRID_CUTOFF, torch.exp(stable.clamp_min(HYBRID_CUTOFF)), 0.0)


def _iterate_hybrid(log_k: Tensor, a: Tensor, b: Tensor, valid: Tensor, max_iter: int) -> Tensor:
    """Sinkhorn as alternate row and column rescalings of a row-stabilised kernel.

    The kernel is ``exp(log_k - max_j log_k)``: every row's largest entry is 1, so no row
    vanishes whatever ``cost / eps``; the scalings are then absorbed into the plan, and each
    half-iteration is one sum and one multiply instead of a logsumexp (several times cheaper
    on CPU). Entries more than 60 nats below their row's best are set to 0 (less than 1e-26 of
    the row), which is harmless when ``cost / eps`` is bounded (SinkhornNMS) but not for tiny
    eps: use the log domain there. Why: left to underflow they pass through the denormal range,
    in ``exp`` and in every rescaling after it, and denormal arithmetic takes a slow path on
    x86 CPUs (the iterations over a SinkhornNMS kernel ran several times slower).

    Returns:
        plan (Tensor[..., N, M]).
    """
    log_k = log_k.masked_fill(~valid, _NEG)
    stable = log_k - log_k.amax(-1, keepdim=True).detach()
    plan = torch.where(valid, cut_exp(stable), 0.0)
    tiny = torch.finfo(plan.dtype).tiny
    for _ in range(max_iter):
        plan = plan * (a / plan.sum(-1).clamp_min(tiny)).unsqueeze(-1)
        plan = plan * (b / plan.sum(-2).clamp_min(tiny)).unsqueeze(-2)
    return plan


def _plan(log_u: Tensor, log_k: Tensor, log_v: Tensor, valid: Tensor) -> Tensor:
    log_p = log_u.unsqueeze(-1) + log_k + log_v.unsqueeze(-2)
    return torch.where(valid, torch.exp(log_p), torch.zeros_like(log_p))


class _ImplicitSinkhorn(torch.autograd.Function):
    """Balanced Sinkhorn whose backward pass solves the linearised optimality conditions.

    At the optimum ``P = exp((f + g - C) / eps)`` with ``P 1 = a`` and ``P^T 1 = b``.
    Differentiating these conditions gives, for an upstream gradient ``G = dL/dP``::

        [diag(r)  P      ] [lam]   [(G * P) 1  ]
        [P^T      diag(c)] [mu ] = [(G * P)^T 1]

        dL/dC = P * (lam_i + mu_j - G_ij) / eps,   dL/da = lam,   dL/db = mu

    with ``r, c`` the plan's marginals. The system is singular along ``(1, -1)`` on every block
    of the plan (a constant can move between the potentials of a connected set of rows and
    columns), and SinkhornNMS' plans are block-diagonal up to underflow (one block per class).
    The Schur complement on ``mu`` is symmetric positive semi-definite, and its pseudo-inverse
    picks the minimum-norm solution; ``dL/dC`` does not depend on which solution is taken.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        cost: Tensor,
        a: Tensor,
        b: Tensor,
        row_mask: Tensor,
        col_mask: Tensor,
        eps: float,
        max_iter: int,
        tol: float | None,
        check_every: int,
        mode: SolverMode,
    ) -> Tensor:
        plan = _solve(cost, a, b, row_mask, col_mask, eps, max_iter, tol, check_every, mode)
        ctx.save_for_backward(plan, row_mask, col_mask)
        ctx.eps = eps
        return plan

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad_plan: Tensor
    ) -> tuple[Tensor | None, ...]:
        plan, row_mask, col_mask = ctx.saved_tensors
        eps: float = ctx.eps
        gp = grad_plan * plan
        r_g, c_g = gp.sum(-1), gp.sum(-2)
        rows = torch.where(row_mask, plan.sum(-1), torch.ones_like(r_g))
        rows = rows.clamp_min(torch.finfo(plan.dtype).tiny)
        cols = plan.sum(-2)
        colf = col_mask.to(plan.dtype)
        p_over_r = plan / rows.unsqueeze(-1)
        schur = torch.diag_embed(cols) - plan.transpose(-1, -2) @ p_over_r
        schur = (schur + schur.transpose(-1, -2)) / 2  # symmetric up to rounding
        rhs = c_g - (p_over_r.transpose(-1, -2) @ r_g.unsqueeze(-1)).squeeze(-1)
        mu = (torch.linalg.pinv(schur, hermitian=True) @ rhs.unsqueeze(-1)).squeeze(-1) * colf
        lam = (r_g - (plan @ mu.unsqueeze(-1)).squeeze(-1)) / rows
        lam = lam * row_mask.to(plan.dtype)
        grad_cost = plan * (lam.unsqueeze(-1) + mu.unsqueeze(-2) - grad_plan) / eps
        return grad_cost, lam, mu, None, None, None, None, None, None, None


def _solve(
    cost: Tensor,
    a: Tensor,
    b: Tensor,
    row_mask: Tensor,
    col_mask: Tensor,
    eps: float,
    max_iter: int,
    tol: float | None,
    check_every: int,
    mode: SolverMode,
) -> Tensor:
    valid = row_mask.unsqueeze(-1) & col_mask.unsqueeze(-2)
    log_k = -cost / eps
    if mode == "hybrid":
        return _iterate_hybrid(log_k, a, b, valid, max_iter)
    log_a, log_b = _safe_log(a, row_mask), _safe_log(b, col_mask)
    log_u, log_v = _iterate(log_k, log_a, log_b, max_iter, tol, check_every, a)
    return _plan(log_u, log_k, log_v, valid)


def sinkhorn(
    cost: Tensor,
    a: Tensor,
    b: Tensor,
    eps: float,
    *,
    max_iter: int = 100,
    tol: float | None = None,
    row_mask: Tensor | None = None,
    col_mask: Tensor | None = None,
    grad: GradMode = "unrolled",
    mode: SolverMode = "log",
    check_every: int = 10,
) -> Tensor:
    """Balanced entropic optimal transport plan (see the module docstring for the objective).

    Args:
        cost (Tensor[..., N, M]): transport cost; finite (use a large finite value, not inf,
            to forbid a pair).
        a (Tensor[..., N]): row marginals, non-negative.
        b (Tensor[..., M]): column marginals, non-negative, ``b.sum(-1) == a.sum(-1)``.
        eps: entropic regularisation, > 0, in the units of ``cost``.
        max_iter: iteration count (exact when ``tol`` is None).
        tol: L1 row-marginal error for early exit; ``None`` = fixed iterations, no host sync.
        row_mask (Tensor[..., N] bool), col_mask (Tensor[..., M] bool): ``False`` marks padding;
            padded rows and columns get zero mass.
        grad: ``"unrolled"`` or ``"implicit"`` (see module docstring).
        mode: ``"log"`` (every iteration in the log domain) or ``"hybrid"`` (the first one in
            the log domain, the rest as plan rescalings: faster, for bounded ``cost / eps``;
            ignores ``tol``).
        check_every: iterations between two checks of ``tol``.

    Returns:
        plan (Tensor[..., N, M]) in the dtype of ``cost``: ``diag(u) exp(-C/eps) diag(v)``.
    """
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    cost, a, b, row_mask, col_mask, in_dtype = _prepare(cost, a, b, row_mask, col_mask)
    if cost.shape[-1] == 0 or cost.shape[-2] == 0:
        return cost.new_zeros(cost.shape).to(in_dtype)
    if grad not in ("unrolled", "implicit") or mode not in ("log", "hybrid"):
        raise ValueError(
            f"grad must be 'unrolled' or 'implicit' and mode 'log' or 'hybrid', "
            f"got {grad!r} and {mode!r}"
        )
    args = (cost, a, b, row_mask, col_mask, eps, max_iter, tol, check_every, mode)
    with torch.autocast(cost.device.type, enabled=False):
        plan = _ImplicitSinkhorn.apply(*args) if grad == "implicit" else _solve(*args)
    return plan.to(in_dtype)


def sinkhorn_unbalanced(
    cost: Tensor,
    a: Tensor,
    b: Tensor,
    eps: float,
    tau_a: float,
    tau_b: float | None = None,
    *,
    max_iter: int = 100,
    tol: float | None = None,
    row_mask: Tensor | None = None,
    col_mask: Tensor | None = None,
    check_every: int = 10,
) -> Tensor:
    """Unbalanced entropic transport plan with KL-relaxed marginals (POT's ``reg_type="kl"``).

    Objective (module docstring): ``<C, P> + eps KL(P | a b^T) + tau_a KL(P1 | a)
    + tau_b KL(P^T 1 | b)``; equals ``ot.unbalanced.sinkhorn_unbalanced(a, b, C, eps,
    (tau_a, tau_b))``. ``tau = math.inf`` enforces that marginal exactly. Gradients are unrolled.

    Args:
        cost (Tensor[..., N, M]), a (Tensor[..., N]), b (Tensor[..., M]): as in :func:`sinkhorn`;
            the masses need not be equal.
        eps: entropic regularisation, > 0.
        tau_a, tau_b: marginal relaxation strengths, > 0 (``tau_b`` defaults to ``tau_a``).

    Returns:
        plan (Tensor[..., N, M]).
    """
    tau_b = tau_a if tau_b is None else tau_b
    if not eps > 0 or not tau_a > 0 or not tau_b > 0:
        raise ValueError(f"eps, tau_a and tau_b must be > 0, got {eps}, {tau_a}, {tau_b}")
    cost, a, b, row_mask, col_mask, in_dtype = _prepare(cost, a, b, row_mask, col_mask)
    if cost.shape[-1] == 0 or cost.shape[-2] == 0:
        return cost.new_zeros(cost.shape).to(in_dtype)
    with torch.autocast(cost.device.type, enabled=False):
        log_a, log_b = _safe_log(a, row_mask), _safe_log(b, col_mask)
        # The reference measure a b^T is folded into the kernel.
        log_k = -cost / eps + log_a.unsqueeze(-1) + log_b.unsqueeze(-2)
        fi_a = 1.0 if math.isinf(tau_a) else tau_a / (tau_a + eps)
        fi_b = 1.0 if math.isinf(tau_b) else tau_b / (tau_b + eps)
        valid = row_mask.unsqueeze(-1) & col_mask.unsqueeze(-2)
        log_u, log_v = _iterate(log_k, log_a, log_b, max_iter, tol, check_every, a, fi_a, fi_b)
        plan = _plan(log_u, log_k, log_v, valid)
    return plan.to(in_dtype)


def add_dustbin(
    cost: Tensor,
    a: Tensor,
    b: Tensor,
    row_cost: Tensor | float,
    col_cost: Tensor | float,
    *,
    row_mask: Tensor | None = None,
    col_mask: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Append a dustbin row and column (SuperGlue's augmented matrix).

    The augmented problem, solved with :func:`sinkhorn`, is the balanced problem on::

        C~ = [[C,        c_row],     a~ = [a, sum(b)],     b~ = [b, sum(a)]
              [c_col^T,  0    ]]

    Row ``i`` may leave mass unmatched by sending it to the dustbin column at cost ``c_row[i]``;
    column ``j`` may stay partly empty by taking mass from the dustbin row at ``c_col[j]``. So
    matching a unit of row ``i`` to column ``j`` is worth it when
    ``C_ij < c_row[i] + c_col[j]`` (in the limit eps -> 0).

    Args:
        cost (Tensor[..., N, M]), a (Tensor[..., N]), b (Tensor[..., M]).
        row_cost (Tensor[..., N] or float): cost of leaving a row's mass unmatched.
        col_cost (Tensor[..., M] or float): cost of leaving a column's capacity unused.
        row_mask (Tensor[..., N] bool), col_mask (Tensor[..., M] bool): padding masks.

    Returns:
        cost (Tensor[..., N+1, M+1]), a (Tensor[..., N+1]), b (Tensor[..., M+1]),
        row_mask (Tensor[..., N+1] bool), col_mask (Tensor[..., M+1] bool); the dustbins are last.
    """
    n, m = cost.shape[-2], cost.shape[-1]
    batch = cost.shape[:-2]
    if row_mask is None:
        row_mask = torch.ones((*batch, n), dtype=torch.bool, device=cost.device)
    if col_mask is None:
        col_mask = torch.ones((*batch, m), dtype=torch.bool, device=cost.device)
    a = a.expand((*batch, n)) * row_mask
    b = b.expand((*batch, m)) * col_mask
    row_cost = torch.as_tensor(row_cost, dtype=cost.dtype, device=cost.device)
    col_cost = torch.as_tensor(col_cost, dtype=cost.dtype, device=cost.device)
    last_col = row_cost.expand((*batch, n)).unsqueeze(-1)
    last_row = torch.cat([col_cost.expand((*batch, m)), cost.new_zeros((*batch, 1))], dim=-1)
    aug = torch.cat([torch.cat([cost, last_col], dim=-1), last_row.unsqueeze(-2)], dim=-2)
    a_aug = torch.cat([a, b.sum(-1, keepdim=True)], dim=-1)
    b_aug = torch.cat([b, a.sum(-1, keepdim=True)], dim=-1)
    ones = torch.ones((*batch, 1), dtype=torch.bool, device=cost.device)
    return aug, a_aug, b_aug, torch.cat([row_mask, ones], -1), torch.cat([col_mask, ones], -1)
