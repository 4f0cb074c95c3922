"""Length of a thin shape along its skeleton: the longest path through the skeleton.

The skeleton is skimage's, with Lee's method: Zhang's (skimage's default) eats 2-px-thick
diagonal bands from their ends (a 3-px-wide line at 45° keeps half of its skeleton), which
would halve the measured length of such threads.

The skeleton pixels form a graph whose edges join 8-neighbours; an edge costs the physical
length of its step, ``hypot(dx * pitch_x, dy * pitch_y)``: one pitch axially, ``sqrt(2)``
pixels diagonally (or the pitch-weighted diagonal for a line-scan camera's unequal pitches).
The longest path is the graph's geodesic diameter: shortest-path distances (Dijkstra),
maximised over pairs. On tree-like skeletons (threads) the double sweep "farthest node from
anywhere, then farthest node from that one" finds it; loops (a skeleton around a hole) make
it a lower bound, which a third sweep tightens.

That path's length is then measured by chords (:func:`chord_length`), not by its step
costs: counting steps as 1 and sqrt(2) overstates straight lines by up to 8 %.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import connected_components, dijkstra
from skimage.morphology import skeletonize

# Half of the 8 neighbour offsets (row, col): the other half are the same edges reversed.
_FORWARD_STEPS = np.array([(0, 1), (1, -1), (1, 0), (1, 1)], dtype=np.intp)

# Sweeps of the diameter search: two are exact on trees, the third helps skeletons with loops.
_SWEEPS = 3

#: Pixels between chord ends when measuring a path (see :func:`chord_length`).
CHORD_PX = 8


def skeleton_of(mask: np.ndarray) -> np.ndarray:
    """One-pixel-wide skeleton (Lee's method, 8-connected) of a binary mask.

    Args:
        mask (ndarray[H, W]): nonzero = inside.

    Returns:
        ndarray[H, W] of bool.
    """
    return skeletonize(np.asarray(mask, dtype=bool), method="lee").astype(bool, copy=False)


@dataclass(frozen=True)
class SkeletonTrace:
    """The longest geodesic paths through the pieces of a skeleton.

    Attributes:
        step_lengths (ndarray[K] of float): each 8-connected piece's longest path between
            pixel centres, in step costs (1 and sqrt(2) pixels at unit pitch), longest first;
            0 for a lone pixel, K = 0 for an empty skeleton.
        longest (ndarray[P, 2] of int): (row, col) of consecutive pixels along the longest
            of them, end to end; P = 0 for an empty skeleton.
    """

    step_lengths: np.ndarray
    longest: np.ndarray


def trace_skeleton(
    skeleton: np.ndarray, pitch_x: float = 1.0, pitch_y: float = 1.0
) -> SkeletonTrace:
    """The longest geodesic path of each 8-connected piece of a skeleton.

    Args:
        skeleton (ndarray[H, W]): nonzero = skeleton pixel; one pixel wide.
        pitch_x, pitch_y: length of one column / row step (e.g. mm per pixel).
    """
    rows, cols = np.nonzero(skeleton)
    n = rows.size
    if n == 0:
        return SkeletonTrace(np.zeros(0, dtype=np.float64), np.zeros((0, 2), dtype=np.intp))
    graph = _step_graph(rows, cols, skeleton.shape, pitch_x, pitch_y)
    n_pieces, piece = connected_components(graph, directed=False)
    # Sweep from one node per piece at once: pieces are disjoint, so the distance to the
    # nearest source is the distance to the source of the node's own piece.
    sources = _first_per_piece(piece, n_pieces)
    best = np.full(n_pieces, -1.0)
    best_from = sources
    best_to = sources
    for _ in range(_SWEEPS):
        dist = dijkstra(graph, directed=False, indices=sources, min_only=True)
        targets = _argmax_per_piece(dist, piece, n_pieces)
        better = dist[targets] > best
        best = np.where(better, dist[targets], best)
        best_from = np.where(better, sources, best_from)
        best_to = np.where(better, targets, best_to)
        sources = targets
    # Walk back only the longest path: the others are needed as lengths alone.
    top = int(np.argmax(best))
    _, predecessors = dijkstra(
        graph, directed=False, indices=int(best_from[top]), return_predecessors=True
    )
    nodes = _walk_back(predecessors, int(best_to[top]))
    longest = np.stack([rows[nodes], cols[nodes]], axis=1)
    return SkeletonTrace(np.sort(best)[::-1], longest)


def chord_length(
    path: np.ndarray, pitch_x: float = 1.0, pitch_y: float = 1.0, chord_px: int = CHORD_PX
) -> float:
    """Length of a pixel path measured by chords through every ``chord_px``-th pixel.

    Counting 8-neighbour steps as 1 and sqrt(2) overstates a digital straight line by up to
    8 % (at 22.5°: the staircase is longer than the line it follows); chords spanning several
    steps ride over the staircase, leaving an error below 1 % for straight lines, and cut
    curves of radius R by about ``chord_px**2 / (24 R**2)``.

    Args:
        path (ndarray[P, 2] of int): (row, col) of consecutive 8-connected pixels.
        pitch_x, pitch_y: length of one column / row step.

    Returns:
        The polyline length between the first and last pixel centres (0 for P <= 1).
    """
    if len(path) < 2:
        return 0.0
    keep = np.arange(0, len(path), chord_px)
    if keep[-1] != len(path) - 1:
        keep = np.append(keep, len(path) - 1)
    points = path[keep].astype(np.float64) * np.array([pitch_y, pitch_x])
    return float(np.hypot(*np.diff(points, axis=0).T).sum())


def _step_graph(
    rows: np.ndarray, cols: np.ndarray, shape: tuple[int, ...], pitch_x: float, pitch_y: float
) -> csr_matrix:
    """Sparse [N, N] graph of 8-neighbour steps between the pixels, weighted by step length."""
    n = rows.size
    height, width = shape
    # Node index per pixel, padded by one so that neighbour look-ups never leave the array.
    index = np.full((height + 2, width + 2), -1, dtype=np.intp)
    index[rows + 1, cols + 1] = np.arange(n)
    src_parts, dst_parts, cost_parts = [], [], []
    for d_row, d_col in _FORWARD_STEPS:
        neighbour = index[rows + 1 + d_row, cols + 1 + d_col]
        linked = neighbour >= 0
        src_parts.append(np.nonzero(linked)[0])
        dst_parts.append(neighbour[linked])
        step = float(np.hypot(d_col * pitch_x, d_row * pitch_y))
        cost_parts.append(np.full(int(linked.sum()), step))
    src = np.concatenate(src_parts)
    dst = np.concatenate(dst_parts)
    cost = np.concatenate(cost_parts)
    return coo_matrix((cost, (src, dst)), shape=(n, n)).tocsr()


def _walk_back(predecessors: np.ndarray, end: int) -> np.ndarray:
    """Nodes from the Dijkstra source to ``end``, following the predecessor links."""
    nodes = [end]
    # A path visits each node once, so this loop is linear in the path's pixels.
    while predecessors[nodes[-1]] >= 0:
        nodes.append(int(predecessors[nodes[-1]]))
    return np.array(nodes[::-1], dtype=np.intp)


def _first_per_piece(piece: np.ndarray, n_pieces: int) -> np.ndarray:
    """Index of the first node of each piece: ndarray[K] of int."""
    first = np.full(n_pieces, piece.size, dtype=np.intp)
    np.minimum.at(first, piece, np.arange(piece.size))
    return first


def _argmax_per_piece(value: np.ndarray, piece: np.ndarray, n_pieces: int) -> np.ndarray:
    """Index of the node with the largest value in each piece: ndarray[K] of int."""
    # Sort by (piece, value); the last node of each piece's run holds its maximum.
    order = np.lexsort((value, piece))
    last_of_run = np.searchsorted(piece[order], np.arange(n_pieces), side="right") - 1
    return order[last_of_run]
