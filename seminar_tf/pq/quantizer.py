"""Product quantization: k-means codebooks per (part, sub-space), encode / decode (numpy).

A *part* is one additive component of the GSU key (docs/design.md §6): the key of a
behaviour is `k_l = sum_m k_{l,m}` (one part per modality), so the GSU score `<u, k_l>` is a
sum over parts and sub-spaces of `<u_s, k_{l,m,s}>`. Each part m and sub-space s gets its own
codebook `C[m, s]` of `C` codewords; an item stores `codes[item, m, s]` (uint8 for C <= 256).

With `combine_parts=True` the parts are summed before quantizing (one codebook per sub-space):
`S` lookups per behaviour instead of `M * S`, at the cost of per-modality codebooks.
"""
from __future__ import annotations

import dataclasses
from typing import List, Optional, Tuple

import numpy as np


def _sq_dists(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances (n, k) computed in float64 blocks."""
    x = x.astype(np.float64, copy=False)
    c = c.astype(np.float64, copy=False)
    d = (np.sum(x * x, 1)[:, None] - 2.0 * x @ c.T + np.sum(c * c, 1)[None, :])
    return np.maximum(d, 0.0)


def kmeans_pp_init(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding. With fewer distinct points than k, every distinct point becomes a
    centroid and the rest repeat points (their clusters stay empty)."""
    n = len(x)
    distinct = np.unique(x, axis=0)
    if len(distinct) <= k:
        extra = distinct[rng.integers(0, len(distinct), size=k - len(distinct))]
        return np.concatenate([distinct, extra]).astype(np.float64)
    centroids = np.empty((k, x.shape[1]))
    centroids[0] = x[rng.integers(n)]
    closest = _sq_dists(x, centroids[:1])[:, 0]
    for j in range(1, k):
        total = closest.sum()
        if total <= 0:
            centroids[j:] = x[rng.integers(0, n, size=k - j)]
            break
        centroids[j] = x[np.searchsorted(np.cumsum(closest), rng.random() * total)]
        closest = np.minimum(closest, _sq_dists(x, centroids[j:j + 1])[:, 0])
    return centroids


def kmeans(x: np.ndarray, k: int, iters: int = 25, seed: int = 0,
           tol: float = 0.0) -> Tuple[np.ndarray, List[float]]:
    """Lloyd's k-means with k-means++ seeding; empty clusters are re-seeded at the points
    farthest from their centroids.

    Args:
        x: (n, dim) points. k: clusters. iters: maximum Lloyd iterations. seed: RNG seed.
        tol: stop when the relative decrease of the objective falls below `tol`.

    Returns:
        (centroids (k, dim) float64, objective after each iteration: mean squared distance).
    """
    rng = np.random.default_rng(seed)
    x = np.asarray(x, np.float64)
    c = kmeans_pp_init(x, k, rng)
    history: List[float] = []
    few = len(np.unique(x, axis=0)) <= k
    for _ in range(max(iters, 1)):
        d = _sq_dists(x, c)
        assign = np.argmin(d, 1)
        best = d[np.arange(len(x)), assign]
        history.append(float(best.mean()))
        counts = np.bincount(assign, minlength=k)
        sums = np.zeros_like(c)
        np.add.at(sums, assign, x)
        nonempty = counts > 0
        c[nonempty] = sums[nonempty] / counts[nonempty, None]
        empty = np.flatnonzero(~nonempty)
        if len(empty) and not few:
            far = np.argsort(-best)[:len(empty)]
            c[empty] = x[far]
        if len(history) > 1 and history[-2] - history[-1] <= tol * max(history[-2], 1e-30):
            break
    d = _sq_dists(x, c)
    history.append(float(d.min(1).mean()))
    return c, history


@dataclasses.dataclass
class ProductQuantizer:
    """Per-part, per-sub-space codebooks.

    Attributes:
        num_subspaces: S; must divide the part width.
        num_codewords: C (<= 256 for uint8 codes).
        iters: Lloyd iterations. seed: seed.
        codebooks: (P, S, C, dim / S) float32 after `fit` (P parts).
    """
    num_subspaces: int
    num_codewords: int = 256
    iters: int = 25
    seed: int = 0
    codebooks: Optional[np.ndarray] = None

    def _split(self, parts: np.ndarray) -> np.ndarray:
        n, p, dim = parts.shape
        if dim % self.num_subspaces:
            raise ValueError(f"num_subspaces ({self.num_subspaces}) must divide the key width "
                             f"({dim})")
        return parts.reshape(n, p, self.num_subspaces, dim // self.num_subspaces)

    def fit(self, parts: np.ndarray) -> "ProductQuantizer":
        """Trains codebooks on key parts (N, P, dim)."""
        if not 2 <= self.num_codewords <= 256:
            raise ValueError(f"num_codewords ({self.num_codewords}) must be in [2, 256]")
        sub = self._split(np.asarray(parts, np.float64))
        _, P, S, w = sub.shape
        books = np.zeros((P, S, self.num_codewords, w), np.float32)
        for p in range(P):
            for s in range(S):
                c, _ = kmeans(sub[:, p, s], self.num_codewords, self.iters,
                              seed=self.seed + 1000 * p + s)
                books[p, s] = c
        self.codebooks = books
        return self

    def encode(self, parts: np.ndarray) -> np.ndarray:
        """Nearest codeword per (part, sub-space): codes (N, P, S) uint8."""
        return encode_with(self.codebooks, self._split(np.asarray(parts, np.float64)))

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Reconstructed parts (N, P, dim) float32."""
        P, S = self.codebooks.shape[:2]
        rec = self.codebooks[np.arange(P)[None, :, None], np.arange(S)[None, None, :],
                             codes.astype(np.int64)]
        return rec.reshape(codes.shape[0], P, -1)

    def quantization_error(self, parts: np.ndarray) -> float:
        """Mean squared reconstruction error per part vector."""
        rec = self.decode(self.encode(parts))
        return float(np.mean(np.sum((np.asarray(parts, np.float64) - rec) ** 2, -1)))


def encode_with(codebooks: np.ndarray, sub: np.ndarray) -> np.ndarray:
    """Codes (N, P, S) uint8 of sub-vectors (N, P, S, w) against codebooks (P, S, C, w).

    The one encoding routine: the in-process builder and the Beam job both call it, so they
    produce identical codes for the same codebooks.
    """
    n, P, S, _ = sub.shape
    codes = np.zeros((n, P, S), np.uint8)
    block = 65536  # bounded memory: distances of one block at a time
    for p in range(P):
        for s in range(S):
            for start in range(0, n, block):
                codes[start:start + block, p, s] = np.argmin(
                    _sq_dists(sub[start:start + block, p, s], codebooks[p, s]), 1)
    return codes
