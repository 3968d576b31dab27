"""Vocabularies (deterministic ids by count) and the negative sampler over item ids."""
from __future__ import annotations

from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np

from seminar_tf import features as F


class Vocab:
    """Deterministic id assignment: 0 padding, 1 OOV, then by (-count, key)."""

    def __init__(self, keys: Sequence[str], counts: Optional[Sequence[int]] = None):
        self.keys = list(keys)
        self.counts = list(counts) if counts is not None else None
        self.index = {k: i + F.FIRST_ID for i, k in enumerate(self.keys)}

    @classmethod
    def from_counts(cls, counts: Iterable[Tuple[str, int]], min_count: int = 1) -> "Vocab":
        kept = [(k, c) for k, c in counts if c >= min_count and k != ""]
        kept.sort(key=lambda kc: (-kc[1], kc[0]))
        return cls([k for k, _ in kept], [c for _, c in kept])

    def __len__(self) -> int:
        """Vocabulary size including padding and OOV."""
        return len(self.keys) + F.FIRST_ID

    def id(self, key: str) -> int:
        if key == "":
            return F.PAD_ID
        return self.index.get(key, F.OOV_ID)

    def ids(self, keys: Iterable[str]) -> List[int]:
        return [self.id(k) for k in keys]

    def lines(self) -> str:
        return "".join(f"{k}\n" for k in self.keys)


class Sampler:
    """Draws negative items (vocabulary ids) uniformly or by popularity.

    Built from a bounded summary (`summary`): explicit ids and counts for the most popular
    items and, optionally, a tail of contiguous ids drawn uniformly with their total count
    (item ids are assigned by descending count, so the tail is the id range after the head).
    What each worker holds is then O(top), not O(catalogue).
    """

    def __init__(self, item_ids: Sequence[int], counts: Sequence[float],
                 tail: Optional[Tuple[int, int, float]] = None, *, mode: str = "popularity"):
        if mode not in ("uniform", "popularity"):
            raise ValueError(f"sampling must be 'uniform' or 'popularity', got {mode!r}")
        self.items = np.asarray(item_ids, np.int64)
        weights = np.ones(len(self.items)) if mode == "uniform" else np.asarray(counts, float)
        self.cum = np.cumsum(weights) / np.sum(weights)
        # the tail: ids [lo, hi), drawn uniformly with total weight `mass` (`summary`)
        self.tail = tail if tail and tail[1] > tail[0] else None
        self.head_share = 1.0
        if self.tail:
            lo, hi, mass = self.tail
            mass = float(hi - lo) if mode == "uniform" else float(mass)
            self.head_share = float(np.sum(weights)) / (float(np.sum(weights)) + mass)

    @staticmethod
    def summary(vocab: "Vocab", top: int = 1_000_000):
        """A bounded sampler summary of an item vocabulary (ids by descending count): the
        top `top` ids with their counts, and the rest as one uniform tail (lo, hi, total
        count). Arguments for `Sampler(*summary, mode=...)`; exact when V <= top."""
        counts = vocab.counts or [1] * len(vocab.keys)
        n = min(top, len(vocab.keys))
        head = list(range(F.FIRST_ID, F.FIRST_ID + n))
        return head, counts[:n], (F.FIRST_ID + n, F.FIRST_ID + len(vocab.keys),
                                  float(sum(counts[n:])))

    def _sample(self, u: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        idx = np.searchsorted(self.cum, np.minimum(u / self.head_share, 1.0))
        head = self.items[np.minimum(idx, len(self.items) - 1)]
        if self.tail is None:
            return head
        lo, hi, _ = self.tail
        return np.where(u < self.head_share, head, rng.integers(lo, hi, size=u.shape))

    def pool(self, rng: np.random.Generator, rows: int, width: int) -> List[List[int]]:
        """`rows` x `width` weighted draws at once (with repeats; `pick` filters them)."""
        return self._sample(rng.random((rows, width)), rng).tolist()

    @staticmethod
    def pick(draws: Sequence[int], n: int, exclude: set) -> List[int]:
        """The first `n` distinct draws not in `exclude`."""
        out: List[int] = []
        for i in draws:
            if i not in exclude and i not in out:
                out.append(i)
                if len(out) == n:
                    break
        return out

    def draw(self, rng: np.random.Generator, n: int, exclude: set) -> List[int]:
        """Up to `n` distinct items not in `exclude`, by the sampling weights.

        When weighted draws keep hitting excluded or repeated items (a small catalogue, a
        heavy user), the remaining allowed items fill the list in a seeded random order, so
        fewer than `n` come back only when fewer than `n` items are allowed at all; callers
        report such short lists (`build_user_examples` yields "short_groups").
        """
        out: List[int] = []
        chosen: set = set()
        attempts = 0
        while len(out) < n and attempts < 20:
            for i in self._sample(rng.random(max(n - len(out), 1) * 2), rng):
                i = int(i)
                if i not in exclude and i not in chosen:
                    out.append(i)
                    chosen.add(i)
                    if len(out) == n:
                        break
            attempts += 1
        if len(out) < n:
            everything = self.items if self.tail is None else np.concatenate(
                [self.items, np.arange(self.tail[0], self.tail[1])])
            rest = [int(i) for i in rng.permutation(everything)
                    if int(i) not in exclude and int(i) not in chosen]
            out.extend(rest[:n - len(out)])
        return out
