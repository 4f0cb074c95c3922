r"""Uncertainty-aware, entropy-constrained mask refinement.

The authors' module maximises :math:`\sum_i p_i q_i` subject to :math:`H(p) \ge h` with ``p``
a distribution over the pixels of the whole mask; its solution is ``softmax(q / lambda*)``:
one temperature for the whole mask, chosen so that a fixed global entropy is met. It cannot
be sure of one part of a mask and unsure of another, and a distribution over pixels is not a
per-pixel foreground probability.

Here, for every instance, the refined mask is a field of independent Bernoulli probabilities
:math:`m \in [0, 1]^P` on the instance's grid, and the entropy constraint is per pixel, with a
floor set by how much the sources of evidence disagree there:

.. math::

    \min_m\; F(m) = -\sum_i a_i m_i
        - \frac{\lambda}{2} \sum_i \sum_{j \in N(i)} w_{ij} (2 m_i - 1)(2 m_j - 1)
        - T \sum_i H(m_i)
    \quad \text{s.t.}\quad H(m_i) \ge h_i = \min(\gamma\, \mathrm{JS}_i,\ 0.99 \ln 2)\ \ \forall i

- :math:`a_i`: the fused evidence logit, the weighted mean of the sources' logits (a
  log-opinion pool: agreeing sources add up, conflicting ones cancel);
- :math:`\mathrm{JS}_i = H(\sum_k \pi_k p_{ki}) - \sum_k \pi_k H(p_{ki})`: the generalised
  Jensen-Shannon divergence of the sources' probabilities at pixel i (0 when they agree,
  up to ``ln 2`` when they contradict each other with certainty);
- :math:`w_{ij}`: neighbour affinities on the texture-suppressed image, normalised per pixel
  (each pixel hears the affinity-weighted mean vote of its neighbours), coupling pixels of
  similar appearance;
- :math:`T < 1` sharpens: where the constraint is inactive (the sources agree) the solution
  is pushed towards 0 or 1; where it binds (they disagree) the pixel keeps entropy
  :math:`h_i`, on the side its evidence points to.

The solver is mean field: given its neighbours, each pixel's problem is convex in
:math:`m_i` and solved in closed form by its KKT conditions,
:math:`m_i = \tfrac12 + \operatorname{clip}(\sigma(f_i / T) - \tfrac12, -\delta_i, \delta_i)`
with :math:`f_i = a_i + \lambda \sum_j w_{ij}(2 m_j - 1)` and
:math:`\delta_i = \tfrac12 - H^{-1}(h_i)` (the distance from 1/2 at which the binary entropy
equals the floor). A fixed number of damped parallel updates is run over all pixels of all
instances at once (the feasible set is an interval per pixel, so a damped step stays
feasible): every operation is a tensor op, and gradients flow to the evidence, the
affinities and the floors by autograd through the unrolled iterations. The per-pixel
uncertainty map is :math:`H(m_i) / \ln 2` in [0, 1].
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from fabricdet.masks.texture import neighbours

LN2 = math.log(2.0)
#: Floors are capped below ln 2: at exactly ln 2 the inverse entropy has an infinite slope.
MAX_FLOOR = 0.99 * LN2


class Refined(NamedTuple):
    """Output of :func:`refine_masks`.

    Attributes:
        probs (Tensor[N, H, W]): refined foreground probabilities.
        uncertainty (Tensor[N, H, W]): ``H(probs) / ln 2`` in [0, 1].
        floor (Tensor[N, H, W]): the entropy floor ``h_i`` in nats (the constraint).
        fused (Tensor[N, H, W]): the fused evidence logit ``a_i``.
    """

    probs: Tensor
    uncertainty: Tensor
    floor: Tensor
    fused: Tensor


def binary_entropy(p: Tensor) -> Tensor:
    """``-p log p - (1 - p) log(1 - p)`` in nats, 0 at 0 and 1."""
    return -(torch.xlogy(p, p) + torch.xlogy(1 - p, 1 - p))


def inverse_binary_entropy(h: Tensor, num_iters: int = 40) -> Tensor:
    """The ``p`` in [0, 1/2] with ``binary_entropy(p) = h`` (``h`` clamped to [0, 0.99 ln 2]).

    Bisection (fixed iterations, no gradient), then one Newton step from the detached root so
    that autograd sees the implicit derivative ``dp/dh = 1 / H'(p)``.

    Args:
        h (Tensor[...]): entropies in nats.

    Returns:
        Tensor[...] of the same shape.
    """
    h = h.clamp(0.0, MAX_FLOOR)
    with torch.no_grad():
        lo, hi = torch.zeros_like(h), torch.full_like(h, 0.5)
        for _ in range(num_iters):
            mid = (lo + hi) / 2
            below = binary_entropy(mid) < h
            lo = torch.where(below, mid, lo)
            hi = torch.where(below, hi, mid)
        root = ((lo + hi) / 2).clamp(1e-12, 0.5)
    slope = torch.log((1 - root) / root).clamp_min(1e-6)  # H'(p) > 0 on (0, 1/2)
    return root - (binary_entropy(root) - h) / slope


def project_entropy(q: Tensor, delta: Tensor) -> Tensor:
    """The closest probability to ``q`` whose entropy is at least the floor: ``q`` clipped
    to ``[1/2 - delta, 1/2 + delta]`` (``delta = 1/2 - H^{-1}(floor)``)."""
    d = q - 0.5
    return 0.5 + torch.minimum(torch.maximum(d, -delta), delta)


def pool_evidence(evidence: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
    """Fuse the sources' logits and measure their disagreement.

    Args:
        evidence (Tensor[N, S, H, W]): S sources' foreground logits.
        weights (Tensor[S]): non-negative source weights (normalised here).

    Returns:
        fused (Tensor[N, H, W]): weighted mean logit; js (Tensor[N, H, W]): generalised
        Jensen-Shannon divergence of the sources' probabilities, in nats, in [0, ln 2].
    """
    pi = (weights / weights.sum().clamp_min(1e-12)).view(1, -1, 1, 1).to(evidence)
    p = evidence.sigmoid()
    fused = (pi * evidence).sum(1)
    js = binary_entropy((pi * p).sum(1)) - (pi * binary_entropy(p)).sum(1)
    return fused, js.clamp_min(0.0)


def refine_masks(
    evidence: Tensor,
    affinity: Tensor,
    weights: Tensor,
    *,
    temperature: float = 0.5,
    pair_weight: float = 2.0,
    floor_gain: float = 1.5,
    num_iters: int = 6,
    damping: float = 0.5,
    dilation: int = 1,
) -> Refined:
    """Solve the entropy-constrained refinement (see the module docstring) for a batch.

    Args:
        evidence (Tensor[N, S, H, W]): the sources' logits.
        affinity (Tensor[N, 8, H, W]): neighbour affinities at ``dilation`` (0 = no edge).
        weights (Tensor[S]): source weights in the pool.
        temperature: ``T`` (< 1 sharpens where the constraint is inactive).
        pair_weight: ``lambda``, the weight of the neighbours' mean vote, in logit units.
        floor_gain: ``gamma``, entropy floor per nat of disagreement.
        num_iters: damped mean-field updates.
        damping: step size of each update in (0, 1].

    Returns:
        :class:`Refined`; ``probs`` satisfies ``H(probs) >= floor`` at every pixel.
    """
    fused, js = pool_evidence(evidence, weights)
    floor = (floor_gain * js).clamp(max=MAX_FLOOR)
    delta = 0.5 - inverse_binary_entropy(floor)
    w = affinity / affinity.sum(1, keepdim=True).clamp_min(1e-6)  # [N, 8, H, W]
    m = project_entropy(torch.sigmoid(fused / temperature), delta)
    for _ in range(num_iters):  # fixed count over the whole batch: no data-dependent branch
        vote = (w * (2 * neighbours(m.unsqueeze(1), dilation)[:, 0] - 1)).sum(1)
        target = project_entropy(torch.sigmoid((fused + pair_weight * vote) / temperature), delta)
        m = (1 - damping) * m + damping * target
    return Refined(m, binary_entropy(m) / LN2, floor, fused)
