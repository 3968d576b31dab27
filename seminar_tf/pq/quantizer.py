"""Codebook quantizers of the GSU keys, trained with FAISS, all in the served layer's layout.

A *part* is one additive component of the GSU key (docs/design.md §6): `k = sum_m k_m` (one
part per modality, or one summed part with `combine_parts`), so `<u, k>` is a sum of scores
of parts. Every method here gives codebooks `(P', S', C, w)` and uint8 codes `(N, P', S')`
that `PQLookupAttention` scores as `sum_{p', s'} <u_s', C[p', s', code]>` in the original key
space, with stock TF ops and no change to the served graph:

- `pq`  product quantization: per part, S sub-spaces of d/S dims, k-means each (FAISS
  `ProductQuantizer`); layout (P, S, C, d/S).
- `opq` PQ after a learned rotation (FAISS `OPQMatrix`); the codewords are rotated back, so
  each sub-space codeword becomes a full-d vector: layout (P*S, 1, C, d).
- `rq`  residual quantization, S stages of full-d codewords per part (FAISS
  `ResidualQuantizer`, k-means per stage on the residuals, beam `RQ_BEAM`); layout
  (P*S, 1, C, d).

`whiten=True` (score-aware, any method) quantizes `k Σ^{1/2}` where Σ = E[u u^T] over query
vectors u of training targets, so that the quantization error is measured as the score
error `E_u <u, k - k^>^2`; codewords are mapped back by Σ^{-1/2}, so the served graph
still scores `<u, C>` (no matmul on u is needed). Bytes per behaviour: P * S for every
method (one uint8 code per codebook).

Determinism: FAISS runs on `threads` OpenMP threads (pinned, default 1) with a fixed seed,
and encoding reads only the quantizer's saved state (`state()` / `from_state`), so the
in-process builder and the Beam job (`beam_pipelines.codebooks`) give identical codes.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Dict, Optional, Tuple

import numpy as np

# rq's beam (FAISS `max_beam_size`) and training: greedy encoding and plain k-means per
# stage measured the same recall as beam 8 / progressive-dimension training on trained keys
# (L=10,000, 16 and 8 bytes, whitened) at a fifth to a seventh of the build time
RQ_BEAM = 1


def _faiss(threads: int):
    import faiss
    faiss.omp_set_num_threads(threads)
    return faiss


def whitening(queries: np.ndarray, floor: float = 1e-6):
    """(Σ^{1/2}, Σ^{-1/2}) of the second moment Σ = E[u u^T] of query vectors (n, d),
    eigenvalues floored at `floor` times the largest (float64)."""
    u = np.asarray(queries, np.float64)
    sigma = u.T @ u / max(len(u), 1)
    w, q = np.linalg.eigh(sigma)
    w = np.maximum(w, max(w.max(), 1e-30) * floor)
    return (q * np.sqrt(w)) @ q.T, (q / np.sqrt(w)) @ q.T


def _clustering(cp, iters: int, seed: int) -> None:
    """FAISS k-means parameters: iterations, seed; small training sets are fine."""
    cp.niter, cp.seed, cp.min_points_per_centroid = max(iters, 1), seed, 1


class Quantizer(ABC):
    """Base of the FAISS-trained quantizers (`QUANTIZERS`: name -> class).

    Args:
        num_codebooks: S: sub-spaces (pq, opq) or stages (rq) per part.
        num_codewords: C, a power of two <= 256 (uint8 codes).
        iters: k-means iterations. seed: training seed. threads: FAISS threads (pinned).
        beam: rq's beam size when encoding.

    After `fit`: `codebooks` (P', S', C, w) float32 in the original key space.
    """
    name = ""

    def __init__(self, num_codebooks: int, num_codewords: int = 256, iters: int = 25,
                 seed: int = 0, threads: int = 1, beam: int = RQ_BEAM):
        if num_codewords < 2 or num_codewords > 256 or num_codewords & (num_codewords - 1):
            raise ValueError(f"num_codewords ({num_codewords}) must be a power of two in "
                             f"[2, 256] (uint8 codes)")
        self.S, self.C, self.iters, self.seed = num_codebooks, num_codewords, iters, seed
        self.threads, self.beam = threads, beam
        self.nbits = int(np.log2(num_codewords))
        self.transform: Optional[np.ndarray] = None  # keys are quantized as k @ transform
        self.inverse: Optional[np.ndarray] = None
        self.indexes = []  # one FAISS index per part
        self.codebooks: Optional[np.ndarray] = None

    # ------------------------------------------------------------------ per method
    @abstractmethod
    def _index(self, faiss, d: int, few: bool):
        """A FAISS index of this method; `few`: the training set is C copied points."""

    def _train_index(self, faiss, index, x: np.ndarray, few: bool) -> None:
        index.train(x)

    @abstractmethod
    def _books(self, faiss, index, d: int) -> np.ndarray:
        """(S, C, w) codewords of one part, in the quantized (transformed) space."""

    def _rotation(self, faiss, index) -> Optional[np.ndarray]:
        """A (d, d) matrix the index applies before quantizing (x @ R), or None."""
        return None

    # ------------------------------------------------------------------ shared
    def fit(self, parts: np.ndarray, queries: Optional[np.ndarray] = None) -> "Quantizer":
        """Trains on key parts (N, P, d); `queries` (n, d) whitens (score-aware)."""
        faiss = _faiss(self.threads)
        parts = np.asarray(parts, np.float32)
        _, P, d = parts.shape
        if queries is not None:
            self.transform, self.inverse = whitening(queries)
        self.indexes, books = [], []
        for p in range(P):
            x = self._into(parts[:, p])
            distinct = np.unique(x, axis=0)
            few = len(distinct) <= self.C
            if few:  # exactly C points: FAISS copies them as the codewords (lossless)
                x = distinct[np.arange(self.C) % len(distinct)]
            index = self._index(faiss, d, few)
            self._train_index(faiss, index, x, few)
            self.indexes.append(index)
            books.append(self._served(faiss, index, d))
        self.codebooks = np.stack(books).reshape((-1,) + books[0].shape[1:]).astype(np.float32)
        return self

    def _into(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        return np.ascontiguousarray(
            (x @ self.transform if self.transform is not None else x), np.float32)

    def _served(self, faiss, index, d: int) -> np.ndarray:
        """One part's codebooks in the served layout, in the original key space."""
        books = self._books(faiss, index, d).astype(np.float64)  # (S, C, w)
        rot = self._rotation(faiss, index)
        if rot is None and self.transform is None and books.shape[-1] * self.S == d \
                and self.name == "pq":
            return books[None]  # (1, S, C, d/S)
        S, C, w = books.shape
        full = books if w == d else np.zeros((S, C, d))  # rq: full-d stages already
        for s in range(S if w != d else 0):  # each sub-space codeword as a full-d vector
            full[s, :, s * w:(s + 1) * w] = books[s]
        if rot is not None:
            full = full @ rot.T  # undo x @ rot (orthogonal)
        if self.inverse is not None:
            full = full @ self.inverse
        return full[:, None]  # (S, 1, C, d): one part per codebook

    def encode(self, parts: np.ndarray) -> np.ndarray:
        """Codes (N, P', S') uint8 of key parts (N, P, d)."""
        _faiss(self.threads)
        parts = np.asarray(parts, np.float32)
        out = []
        for p, index in enumerate(self.indexes):
            packed = index.sa_encode(self._into(parts[:, p]))
            out.append(self._unpack(packed))
        codes = np.stack(out, 1)  # (N, P, S)
        return codes.reshape(len(parts), *self.codebooks.shape[:2]).astype(np.uint8)

    def _unpack(self, packed: np.ndarray) -> np.ndarray:
        """(N, S) codes of FAISS' packed codes (LSB-first bit strings of nbits each)."""
        bits = np.unpackbits(packed, axis=1, bitorder="little")[:, :self.S * self.nbits]
        weights = 1 << np.arange(self.nbits)
        return (bits.reshape(len(packed), self.S, self.nbits) * weights).sum(-1)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Reconstructed parts (N, P, d) float32 (the served layout summed per part)."""
        P2, S2, C, w = self.codebooks.shape
        vec = self.codebooks[np.arange(P2)[None, :, None], np.arange(S2)[None, None, :],
                             codes.astype(np.int64)]  # (N, P', S', w)
        n, P = len(codes), len(self.indexes)
        if S2 > 1:  # compact PQ layout: sub-spaces concatenate
            return vec.reshape(n, P, S2 * w)
        return vec.reshape(n, P, -1, w).sum(2)  # full-d codewords: summed per part

    def quantization_error(self, parts: np.ndarray) -> float:
        """Mean squared reconstruction error per part vector."""
        rec = self.decode(self.encode(parts))
        return float(np.mean(np.sum((np.asarray(parts, np.float64) - rec) ** 2, -1)))

    # ------------------------------------------------------------------ state
    def state(self) -> Dict[str, np.ndarray]:
        """Arrays that restore the trained quantizer (`from_state`): FAISS indexes
        serialized, the whitening transform, the served codebooks."""
        faiss = _faiss(self.threads)
        out = {"method": np.array(self.name), "codebooks": self.codebooks,
               "params": np.array([self.S, self.C, self.iters, self.seed, self.threads,
                                   self.beam], np.int64)}
        for p, index in enumerate(self.indexes):
            out[f"index_{p}"] = faiss.serialize_index(index)
        if self.transform is not None:
            out["transform"], out["inverse"] = self.transform, self.inverse
        return out

    @staticmethod
    def from_state(state: Dict[str, np.ndarray]) -> "Quantizer":
        S, C, iters, seed, threads, beam = (int(x) for x in state["params"])
        q = QUANTIZERS[str(state["method"])](S, C, iters, seed, threads, beam)
        faiss = _faiss(threads)
        q.indexes = [faiss.deserialize_index(np.asarray(state[f"index_{p}"], np.uint8))
                     for p in range(sum(k.startswith("index_") for k in state))]
        q.codebooks = np.asarray(state["codebooks"], np.float32)
        if "transform" in state:
            q.transform, q.inverse = state["transform"], state["inverse"]
        return q



class PQ(Quantizer):
    name = "pq"

    def _index(self, faiss, d, few):
        if d % self.S:
            raise ValueError(f"num_subspaces ({self.S}) must divide the key width ({d})")
        index = faiss.IndexPQ(d, self.S, self.nbits)
        _clustering(index.pq.cp, self.iters, self.seed)
        return index

    def _books(self, faiss, index, d):
        return faiss.vector_to_array(index.pq.centroids).reshape(self.S, self.C, d // self.S)


class OPQ(PQ):
    name = "opq"

    def _index(self, faiss, d, few):
        pq = PQ._index(self, faiss, d, few)
        opq = faiss.OPQMatrix(d, self.S)
        opq.niter = self.iters
        inner = faiss.ProductQuantizer(d, self.S, self.nbits)  # the rotation's own PQ
        _clustering(inner.cp, self.iters, self.seed)
        opq.pq = inner
        self._keep = getattr(self, "_keep", []) + [(opq, pq, inner)]  # owned by Python
        return faiss.IndexPreTransform(opq, pq)

    def _books(self, faiss, index, d):
        pq = faiss.downcast_index(index.index).pq
        return faiss.vector_to_array(pq.centroids).reshape(self.S, self.C, d // self.S)

    def _rotation(self, faiss, index):
        vt = faiss.downcast_VectorTransform(index.chain.at(0))
        return faiss.vector_to_array(vt.A).reshape(vt.d_out, vt.d_in).T  # x @ A^T


class RQ(Quantizer):
    name = "rq"

    def _index(self, faiss, d, few):
        index = faiss.IndexResidualQuantizer(d, self.S, self.nbits)
        index.rq.max_beam_size = self.beam
        index.rq.train_type = faiss.ResidualQuantizer.Train_default
        _clustering(index.rq.cp, self.iters, self.seed)
        return index

    def _train_index(self, faiss, index, x, few):
        index.train(x)
        if few:  # the C points as the first stage, zero later stages: lossless
            books = np.zeros((self.S, self.C, x.shape[1]), np.float32)
            books[0] = x
            faiss.copy_array_to_vector(books.ravel(), index.rq.codebooks)
            if hasattr(index.rq, "compute_codebook_tables"):
                index.rq.compute_codebook_tables()

    def _books(self, faiss, index, d):
        return faiss.vector_to_array(index.rq.codebooks).reshape(self.S, self.C, d)


QUANTIZERS = {"pq": PQ, "opq": OPQ, "rq": RQ}

METHODS = tuple(QUANTIZERS)


def codebook_layout(pq_cfg, num_modalities: int) -> Tuple[int, int]:
    """(P', S') of the served codebooks (P', S', C, w) for a `pq` config section: parts =
    1 with `combine_parts`, else one per modality; `pq` without whitening keeps S sub-spaces
    of d/S dims per part, every other method one full-d codebook per (part, stage)."""
    parts = 1 if pq_cfg.combine_parts else num_modalities
    if pq_cfg.method == "pq" and not pq_cfg.whiten:
        return parts, pq_cfg.num_subspaces
    return parts * pq_cfg.num_subspaces, 1


def make_quantizer(pq_cfg, threads: int = 1) -> Quantizer:
    """The untrained quantizer a `pq` config section names (`pq.method`)."""
    if pq_cfg.method not in QUANTIZERS:
        raise ValueError(f"pq.method must be one of {sorted(QUANTIZERS)}, not "
                         f"{pq_cfg.method!r}")
    return QUANTIZERS[pq_cfg.method](pq_cfg.num_subspaces, pq_cfg.num_codewords,
                                     pq_cfg.kmeans_iters, pq_cfg.seed, threads)
