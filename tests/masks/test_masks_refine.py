"""The entropy-constrained refinement: constraint, sharpening, gradients, vectorisation."""

from __future__ import annotations

import math

import pytest
import torch

import fabricdet.masks.refine as refine_module
from fabricdet.masks import (
    binary_entropy,
    inverse_binary_entropy,
    neighbour_affinity,
    pool_evidence,
    refine_masks,
)

W3 = torch.tensor([1.0, 1.0, 0.5])


def _case(n: int = 4, size: int = 12, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    evidence = torch.randn(n, 3, size, size, generator=g) * 3
    affinity = neighbour_affinity(torch.randn(n, 3, size, size, generator=g), 1)
    return evidence, affinity


def test_inverse_binary_entropy_inverts_and_has_the_implicit_gradient():
    h = torch.linspace(0.01, 0.68, 20, dtype=torch.float64)
    p = inverse_binary_entropy(h)
    assert torch.allclose(binary_entropy(p), h, atol=1e-9)
    assert ((p >= 0) & (p <= 0.5)).all()
    x = torch.tensor([0.1, 0.3, 0.6], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(inverse_binary_entropy, (x,))


def test_refined_masks_satisfy_the_entropy_floor_everywhere():
    evidence, affinity = _case()
    r = refine_masks(evidence, affinity, W3, num_iters=8)
    assert (binary_entropy(r.probs) >= r.floor - 1e-5).all()
    assert r.floor.max() > 0.1  # the constraint is active somewhere: the test has teeth
    assert torch.allclose(r.uncertainty, binary_entropy(r.probs) / math.log(2))


def test_agreement_sharpens_and_disagreement_keeps_uncertainty():
    n, s = 1, 8
    agree = torch.full((n, 3, s, s), 1.0)  # all sources mildly say foreground
    flat = neighbour_affinity(torch.zeros(n, 3, s, s), 1)  # 1 to every neighbour in the grid
    r = refine_masks(agree, flat, W3, temperature=0.3)
    assert r.probs.min() > 0.95  # sharper than any source (sigmoid(1) = 0.73)
    assert r.uncertainty.max() < 0.3
    conflict = torch.stack(
        [torch.full((n, s, s), 4.0), torch.full((n, s, s), 4.0), torch.full((n, s, s), -8.0)], 1
    )
    r = refine_masks(conflict, flat, W3, temperature=0.3)
    _, js = pool_evidence(conflict, W3)
    assert js.min() > 0.2
    assert r.uncertainty.min() > 0.5  # kept uncertain where the sources contradict


def test_refinement_is_differentiable_gradcheck():
    evidence, affinity = _case(n=1, size=3, seed=3)
    evidence = evidence.double().requires_grad_(True)
    affinity = affinity.double().requires_grad_(True)

    def fn(e, a):
        return refine_masks(e, a, W3.double(), num_iters=2).probs

    assert torch.autograd.gradcheck(fn, (evidence, affinity), atol=1e-6, rtol=1e-4)


def test_batched_equals_one_at_a_time():
    evidence, affinity = _case(n=5)
    batched = refine_masks(evidence, affinity, W3).probs
    single = torch.cat(
        [refine_masks(evidence[i : i + 1], affinity[i : i + 1], W3).probs for i in range(5)]
    )
    assert torch.allclose(batched, single, atol=1e-6)


@pytest.mark.parametrize("n", [1, 40])
def test_no_loop_over_instances_or_pixels(monkeypatch, n):
    """The solver runs a fixed number of batched neighbour passes, whatever N and H x W."""
    calls = []
    original = refine_module.neighbours

    def counting(x, dilation=1):
        calls.append(x.shape)
        return original(x, dilation)

    monkeypatch.setattr(refine_module, "neighbours", counting)
    evidence, affinity = _case(n=n, size=16)
    refine_masks(evidence, affinity, W3, num_iters=5)
    assert len(calls) == 5 and all(c[0] == n for c in calls)
