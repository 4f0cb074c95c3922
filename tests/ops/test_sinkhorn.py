"""The Sinkhorn solver: agreement with POT, masks, batching, gradients, stability."""

from __future__ import annotations

import math

import numpy as np
import ot
import pytest
import torch

from fabricdet.ops.sinkhorn import add_dustbin, sinkhorn, sinkhorn_unbalanced


def _problem(n: int, m: int, seed: int, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    cost = torch.rand(n, m, generator=g, dtype=dtype)
    a = torch.rand(n, generator=g, dtype=dtype) + 0.1
    b = torch.rand(m, generator=g, dtype=dtype) + 0.1
    return cost, a / a.sum(), b / b.sum()


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("eps", [0.05, 0.5])
def test_balanced_matches_pot(seed: int, eps: float) -> None:
    cost, a, b = _problem(6 + seed, 9 - seed, seed)
    plan = sinkhorn(cost, a, b, eps, max_iter=10000, tol=1e-12)
    ref = ot.sinkhorn(
        a.numpy(), b.numpy(), cost.numpy(), eps, method="sinkhorn_log",
        numItermax=10000, stopThr=1e-12,
    )  # fmt: skip
    np.testing.assert_allclose(plan.numpy(), ref, atol=1e-5)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("tau", [(0.5, 0.5), (1.0, 3.0), (math.inf, 1.0)])
def test_unbalanced_matches_pot(seed: int, tau: tuple[float, float]) -> None:
    cost, a, b = _problem(5, 7, seed)
    b = 2 * b  # different total masses
    plan = sinkhorn_unbalanced(cost, a, b, 0.1, tau[0], tau[1], max_iter=20000, tol=1e-13)
    ref = ot.unbalanced.sinkhorn_unbalanced(
        a.numpy(), b.numpy(), cost.numpy(), 0.1, tau, numItermax=20000, stopThr=1e-13
    )
    np.testing.assert_allclose(plan.numpy(), ref, atol=1e-5)


def test_marginals_and_batched_equals_looped() -> None:
    problems = [_problem(4, 5, s) for s in range(3)]
    cost = torch.stack([p[0] for p in problems])
    a = torch.stack([p[1] for p in problems])
    b = torch.stack([p[2] for p in problems])
    plan = sinkhorn(cost, a, b, 0.1, max_iter=500)
    torch.testing.assert_close(plan.sum(-1), a)
    torch.testing.assert_close(plan.sum(-2), b)
    for i, (c, ai, bi) in enumerate(problems):
        torch.testing.assert_close(plan[i], sinkhorn(c, ai, bi, 0.1, max_iter=500))


def test_padding_masks_equal_unpadded_problem() -> None:
    cost, a, b = _problem(4, 5, 0)
    padded = torch.full((6, 8), 123.0, dtype=cost.dtype)
    padded[:4, :5] = cost
    pa = torch.cat([a, torch.full((2,), 0.7, dtype=a.dtype)])  # junk in padding is ignored
    pb = torch.cat([b, torch.full((3,), 0.2, dtype=b.dtype)])
    rows = torch.arange(6) < 4
    cols = torch.arange(8) < 5
    for grad in ("unrolled", "implicit"):
        plan = sinkhorn(padded, pa, pb, 0.1, max_iter=300, row_mask=rows, col_mask=cols, grad=grad)
        torch.testing.assert_close(plan[:4, :5], sinkhorn(cost, a, b, 0.1, max_iter=300))
        assert plan[4:].abs().sum() == 0 and plan[:, 5:].abs().sum() == 0


def test_fixed_iterations_differ_from_converged() -> None:
    cost, a, b = _problem(5, 5, 1)
    one = sinkhorn(cost, a, b, 0.05, max_iter=1)
    many = sinkhorn(cost, a, b, 0.05, max_iter=2000, tol=1e-12)
    assert not torch.allclose(one, many)
    torch.testing.assert_close(one.sum(-2), b)  # every iteration ends on exact columns


@pytest.mark.parametrize("grad", ["unrolled", "implicit"])
def test_gradcheck(grad: str) -> None:
    cost, _, _ = _problem(3, 4, 2)
    cost.requires_grad_(True)
    a_logits = torch.randn(3, dtype=torch.float64, requires_grad=True)
    b_logits = torch.randn(4, dtype=torch.float64, requires_grad=True)

    def f(c: torch.Tensor, al: torch.Tensor, bl: torch.Tensor) -> torch.Tensor:
        # softmax keeps the masses equal, as the balanced problem requires
        tol = 1e-13 if grad == "implicit" else None
        return sinkhorn(c, al.softmax(0), bl.softmax(0), 0.2, max_iter=300, tol=tol, grad=grad)

    assert torch.autograd.gradcheck(f, (cost, a_logits, b_logits), atol=1e-6)


def test_implicit_matches_unrolled_at_convergence() -> None:
    cost, a, b = _problem(6, 5, 3)
    weights = torch.randn(6, 5, dtype=torch.float64)
    grads = []
    for grad in ("unrolled", "implicit"):
        c = cost.clone().requires_grad_(True)
        (sinkhorn(c, a, b, 0.1, max_iter=3000, grad=grad) * weights).sum().backward()
        grads.append(c.grad)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-8, rtol=1e-6)


def test_implicit_on_a_block_diagonal_plan() -> None:
    """Two blocks that exchange no mass (SinkhornNMS' classes): the linearised system is
    singular on each block, and the implicit gradient must still be the converged one."""
    cost, a, b = _problem(6, 6, 4)
    cost[:3, 3:] = cost[3:, :3] = 1e4
    a, b = a / a[:3].sum() / 2, b / b[:3].sum() / 2  # each block balanced on its own
    a[3:] = a[3:] / a[3:].sum() / 2
    b[3:] = b[3:] / b[3:].sum() / 2
    weights = torch.randn(6, 6, dtype=torch.float64)
    grads = []
    for grad in ("unrolled", "implicit"):
        c = cost.clone().requires_grad_(True)
        (sinkhorn(c, a, b, 0.1, max_iter=3000, grad=grad) * weights).sum().backward()
        grads.append(c.grad)
    assert torch.isfinite(grads[1]).all()
    torch.testing.assert_close(grads[0], grads[1], atol=1e-8, rtol=1e-6)


@pytest.mark.parametrize("scale", [1.0, 1e2, 1e4])
@pytest.mark.parametrize("grad", ["unrolled", "implicit"])
def test_stable_for_small_eps_and_large_costs(scale: float, grad: str) -> None:
    g = torch.Generator().manual_seed(0)
    cost = (torch.rand(2, 30, 40, generator=g) * scale).requires_grad_(True)
    a = torch.full((2, 30), 1 / 30)
    b = torch.full((2, 40), 1 / 40)
    plan = sinkhorn(cost, a, b, 1e-3 * scale, max_iter=200, grad=grad)
    assert torch.isfinite(plan).all()
    torch.testing.assert_close(plan.sum(-2), b, atol=1e-5, rtol=1e-4)
    plan.sum().backward()
    assert torch.isfinite(cost.grad).all()


def test_runs_in_fp32_under_autocast() -> None:
    cost = torch.rand(20, 25) * 100
    a, b = torch.full((20,), 1 / 20), torch.full((25,), 1 / 25)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plan = sinkhorn(cost.bfloat16(), a.bfloat16(), b.bfloat16(), 0.1, max_iter=100)
    assert plan.dtype == torch.bfloat16
    assert torch.isfinite(plan.float()).all()
    assert (plan.float().sum(-2) - b).abs().max() < 1e-2


def test_empty_and_single() -> None:
    empty = sinkhorn(torch.zeros(0, 3), torch.zeros(0), torch.zeros(3), 0.1)
    assert empty.shape == (0, 3)
    assert sinkhorn(torch.zeros(2, 0, 0), torch.zeros(2, 0), torch.zeros(2, 0), 0.1).shape == (
        2, 0, 0,
    )  # fmt: skip
    one = sinkhorn(torch.tensor([[5.0]]), torch.tensor([0.3]), torch.tensor([0.3]), 0.01)
    torch.testing.assert_close(one, torch.tensor([[0.3]]))
    with pytest.raises(ValueError, match="eps"):
        sinkhorn(torch.zeros(1, 1), torch.ones(1), torch.ones(1), 0.0)


def test_hybrid_mode_matches_log_domain() -> None:
    cost, a, b = _problem(8, 6, 4, dtype=torch.float32)
    log = sinkhorn(cost, a, b, 0.05, max_iter=50)
    hybrid = sinkhorn(cost, a, b, 0.05, max_iter=50, mode="hybrid")
    torch.testing.assert_close(hybrid, log, atol=1e-6, rtol=1e-4)


def test_dustbin_objective() -> None:
    # Row 0 matches column 0 cheaply; row 1 is far from everything and goes to the dustbin.
    cost = torch.tensor([[0.1, 5.0], [5.0, 5.0]], dtype=torch.float64)
    a = torch.ones(2, dtype=torch.float64)
    b = torch.ones(2, dtype=torch.float64)
    aug, a2, b2, rm, cm = add_dustbin(cost, a, b, 1.0, 0.5)
    assert aug.shape == (3, 3) and float(a2[-1]) == 2.0 and float(b2[-1]) == 2.0
    assert rm.all() and cm.all()
    plan = sinkhorn(aug, a2, b2, 0.01, max_iter=2000, tol=1e-10)
    assert plan[0, 0] > 0.99  # 0.1 < 1.0 + 0.5: worth matching
    assert plan[1, 2] > 0.99  # 5.0 > 1.0 + 0.5: unmatched
    assert plan[2, 1] > 0.99  # column 1 stays empty
