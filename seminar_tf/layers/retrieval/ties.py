"""The GSU tie rule's float64 reference, and which selections float noise cannot change.

`masked_top_k` ranks positions by `selection_keys` (scores on a per-row power-of-two grid)
and gives ties to the later (more recent) position. Two formulations of the same scores (the
per-candidate and the shared-history paths, XLA and not, two machines' kernels) differ by
float noise, so their selections can differ where a score sits within that noise of a grid
edge. `determined_rows` says where they cannot: the export's output check and the equality
tests compare to 1e-5 there and within a stated bound elsewhere (docs/design.md, "GSU tie
rule").
"""
from __future__ import annotations

from typing import List, Set

import numpy as np

# Grid resolution of `base.selection_keys`: steps per power-of-two row scale.
TIE_BITS = 10
# Relative noise between two formulations of GSU scores: measured <= 4e-6 of the row's largest
# |score| (u.k vs PQ's decoded keys; tests/models/test_rank.py checks the bound).
GSU_NOISE = 3e-5
# A flipped selection swaps near-tied behaviours among the K the ESU reads; the score of such
# a row may move by this much (observed <= 1e-3 on the suite's tiny models).
UNDETERMINED_BOUND = 0.05


def _bits(bits):
    return TIE_BITS if bits is None else bits


def _grid(s, m, bits, nudge=0.0):
    """Per-row grid step of `selection_keys` (a power of two), with the row's largest
    |score| scaled by (1 + nudge)."""
    top = np.max(np.where(m, np.abs(s), 0.0), -1, keepdims=True) * (1.0 + nudge)
    exponent = np.ceil(np.log2(np.maximum(top, np.finfo(np.float32).tiny)))
    return np.exp2(exponent - bits)


def _select(q, m, k) -> List[Set[int]]:
    out = []
    for qr, mr in zip(q.reshape(-1, q.shape[-1]), m.reshape(-1, q.shape[-1])):
        idx = np.flatnonzero(mr)
        order = np.lexsort((idx, qr[idx]))[::-1]  # key desc, later position first
        out.append(set(idx[order[:k]].tolist()))
    return out


def reference_select(scores, mask, k: int, bits: int = None) -> List[Set[int]]:
    """float64 reference of `masked_top_k`'s selection.

    Args:
        scores: (R, L) float. mask: (R, L) bool (eligible positions). k: K.

    Returns:
        per row, the set of the k eligible positions with the largest (grid value,
        position) keys.
    """
    s = np.asarray(scores, np.float64)
    m = np.broadcast_to(np.asarray(mask, bool), s.shape)
    return _select(np.round(s / _grid(s, m, _bits(bits))), m, k)


def determined_rows(scores, mask, k: int, delta: float = GSU_NOISE,
                    bits: int = None) -> np.ndarray:
    """Rows whose selection no float noise can change: moving every score by at most
    `delta` x the row's largest |score| leaves the selected set unchanged, with the grid
    taken from either end of that range (it steps by 2 where the largest |score| crosses a
    power of two).

    Args:
        scores: (R, L) float scores of one path. mask: (R, L) bool. k: K.

    Returns:
        (R,) bool.
    """
    bits = _bits(bits)
    s = np.asarray(scores, np.float64)
    m = np.broadcast_to(np.asarray(mask, bool), s.shape)
    eps = delta * np.max(np.where(m, np.abs(s), 0.0), -1, keepdims=True)
    reference = reference_select(s, m, k, bits)
    out = np.ones(len(s), bool)
    L = s.shape[-1]
    for nudge in (-delta, delta):
        step = _grid(s, m, bits, nudge)
        lo, hi = np.round((s - eps) / step), np.round((s + eps) / step)
        for r, (sel, mr) in enumerate(zip(reference, m)):
            rest = np.setdiff1d(np.flatnonzero(mr), list(sel))
            if not len(rest) or not sel:
                continue
            sel = np.fromiter(sel, int)
            worst_in = np.min(lo[r, sel] * L + sel)  # keys as (grid value, position)
            best_out = np.max(hi[r, rest] * L + rest)
            out[r] &= worst_in > best_out
    return out
