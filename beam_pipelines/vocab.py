"""Vocabularies (deterministic ids by count), per-shard key lookups and the negative sampler
over item ids.

Id scheme (the in-process `Vocab.from_counts` and the Beam job's sharded rank,
`beam_pipelines.ranks.AssignIds`, give the same ids): 0 padding, 1 OOV, then keys ordered by
(-count, fingerprint(key), key), where `fingerprint` is a 64-bit hash of the key. The
fingerprint spreads the keys of one count evenly over the hash range, so a count's keys can
be split into contiguous fingerprint ranges of bounded size and numbered in parallel.
"""
from __future__ import annotations

import hashlib
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from seminar_tf import features as F


def fingerprint(key: str) -> int:
    """A 64-bit hash of a key (stable across processes, runners and Python versions)."""
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "big")


def rank_order(key: str, count: int) -> Tuple[int, int, str]:
    """The sort key of the id scheme: (-count, fingerprint, key)."""
    return -count, fingerprint(key), key


class KeyIds:
    """Key -> id lookups over a mapping (0 for "", 1 OOV for an unknown key)."""

    def __init__(self, index: Mapping[str, int]):
        self.index = index

    def id(self, key: str) -> int:
        if key == "":
            return F.PAD_ID
        return self.index.get(key, F.OOV_ID)

    def ids(self, keys: Iterable[str]) -> List[int]:
        return [self.id(k) for k in keys]


class Vocab(KeyIds):
    """A whole vocabulary in memory (tests, tools): keys in id order from id 2."""

    def __init__(self, keys: Sequence[str], counts: Optional[Sequence[int]] = None):
        self.keys = list(keys)
        self.counts = list(counts) if counts is not None else None
        super().__init__({k: i + F.FIRST_ID for i, k in enumerate(self.keys)})

    @classmethod
    def from_counts(cls, counts: Iterable[Tuple[str, int]], min_count: int = 1) -> "Vocab":
        kept = [(k, c) for k, c in counts if c >= min_count and k != ""]
        kept.sort(key=lambda kc: rank_order(*kc))
        return cls([k for k, _ in kept], [c for _, c in kept])

    def __len__(self) -> int:
        """Vocabulary size including padding and OOV."""
        return len(self.keys) + F.FIRST_ID

    def lines(self) -> str:
        return "".join(f"{k}\n" for k in self.keys)


class IdRows:
    """Rows (e.g. attribute ids) of a subset of item ids; unknown ids give zero rows.

    Args:
        ids: (n,) item ids; rows: (n, width) their rows.
        fallback: rows for the ids that `ids` lacks (folded in here, so that a lookup is
            one search).
    """

    def __init__(self, ids: np.ndarray, rows: np.ndarray,
                 fallback: Optional["IdRows"] = None):
        ids, rows = np.asarray(ids, np.int64), np.asarray(rows, np.int64)
        if fallback is not None and len(fallback.ids):
            extra = ~np.isin(fallback.ids, ids)
            ids = np.concatenate([ids, fallback.ids[extra]])
            rows = np.concatenate([rows, fallback.rows[:-1][extra]])
        order = np.argsort(ids, kind="stable")
        self.ids, table = ids[order], rows[order]
        # one extra zero row for unknown ids
        self.rows = np.concatenate([table, np.zeros((1, table.shape[1]), np.int64)])

    def of(self, items: Sequence[int]) -> np.ndarray:
        """(n, width) rows of item ids."""
        items = np.asarray(items, np.int64).reshape(-1)
        n = len(self.ids)
        if not n:
            return self.rows[np.zeros(len(items), np.int64)]
        j = np.minimum(np.searchsorted(self.ids, items), n - 1)
        return self.rows[np.where(self.ids[j] == items, j, n)]


# ---------------------------------------------------------------------------- the sampler
def tail_rate(tail_size: int, tail_sample: int) -> float:
    """The share of tail items kept in the sampler's uniform sample of the tail."""
    return 1.0 if tail_size <= tail_sample else tail_sample / tail_size


def in_tail_sample(item_id: int, rate: float) -> bool:
    """Whether a tail item id is in the sampler's tail sample (by a hash of the id)."""
    return rate >= 1.0 or fingerprint(f"tail:{item_id}") < rate * 2.0**64


class SummaryRule:
    """Which item ids the sampler's bounded summary holds: ids by descending count, every
    one of the first `top`, and the hash-selected sample of the rest (`in_tail_sample`)."""

    def __init__(self, num_items: int, top: int, tail_sample: int):
        self.num_items, self.head = num_items, min(top, num_items)
        self.head_end = F.FIRST_ID + self.head
        self.rate = tail_rate(num_items - self.head, tail_sample)

    def keeps(self, item_id: int) -> bool:
        return item_id < self.head_end or in_tail_sample(item_id, self.rate)

    def summary(self, rows: Sequence[Tuple[int, float]], tail_mass: float) -> Dict:
        """(id, count) of the kept items (any order) and the tail's total count -> keyword
        arguments of `Sampler(**summary, mode=...)`."""
        rows = sorted(rows)
        return {"item_ids": [r[0] for r in rows], "counts": [r[1] for r in rows],
                "head": self.head, "tail_size": self.num_items - self.head,
                "tail_mass": float(tail_mass)}


class Sampler:
    """Draws negative items (vocabulary ids) uniformly or by popularity.

    Built from a bounded summary: every one of the `head` most popular items with its count,
    then a uniform random sample of the remaining `tail_size` items (`in_tail_sample`) that
    stands for all of them: in popularity mode the sample's counts are scaled to the tail's
    total count `tail_mass`, in uniform mode each sampled item weighs tail_size / sample
    size. What each worker holds is then O(head + tail sample), not O(catalogue); exact
    (every item, its own count) when the catalogue fits (`head` None).

    Args:
        item_ids, counts: the head items, then the tail sample.
        head: how many of `item_ids` are the head (None: all).
    """

    def __init__(self, item_ids: Sequence[int], counts: Sequence[float], *,
                 mode: str = "popularity", head: Optional[int] = None, tail_size: int = 0,
                 tail_mass: float = 0.0):
        if mode not in ("uniform", "popularity"):
            raise ValueError(f"sampling must be 'uniform' or 'popularity', got {mode!r}")
        self.items = np.asarray(item_ids, np.int64)
        counts = np.asarray(counts, float)
        head = len(self.items) if head is None else head
        weights = np.ones(len(self.items)) if mode == "uniform" else counts.copy()
        n_tail = len(self.items) - head
        if n_tail:
            if mode == "uniform":
                weights[head:] = tail_size / n_tail
            else:
                weights[head:] *= tail_mass / max(counts[head:].sum(), 1e-12)
        self.cum = np.cumsum(weights) / np.sum(weights)

    @staticmethod
    def summary(vocab: "Vocab", top: int = 1_000_000, tail_sample: int = 1_000_000) -> Dict:
        """The bounded summary of an in-memory vocabulary (ids by descending count), as the
        Beam job builds it by key (`SummaryRule`)."""
        counts = vocab.counts or [1] * len(vocab.keys)
        rule = SummaryRule(len(vocab.keys), top, tail_sample)
        ids = range(F.FIRST_ID, F.FIRST_ID + len(vocab.keys))
        return rule.summary([(i, c) for i, c in zip(ids, counts) if rule.keeps(i)],
                            float(sum(counts[rule.head:])))

    def _sample(self, u: np.ndarray) -> np.ndarray:
        idx = np.searchsorted(self.cum, u)
        return self.items[np.minimum(idx, len(self.items) - 1)]

    def pool(self, rng: np.random.Generator, rows: int, width: int) -> List[List[int]]:
        """`rows` x `width` weighted draws at once (with repeats; `pick` filters them)."""
        return self._sample(rng.random((rows, width))).tolist()

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
            for i in self._sample(rng.random(max(n - len(out), 1) * 2)):
                i = int(i)
                if i not in exclude and i not in chosen:
                    out.append(i)
                    chosen.add(i)
                    if len(out) == n:
                        break
            attempts += 1
        if len(out) < n:
            rest = [int(i) for i in rng.permutation(self.items)
                    if int(i) not in exclude and int(i) not in chosen]
            out.extend(rest[:n - len(out)])
        return out
