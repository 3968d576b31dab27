"""Vocabulary ids by a sorted, sharded rank, and joins by key in bounded buckets: the Beam
job's alternatives to whole-table side inputs.

Ids (`AssignIds`; the scheme of `beam_pipelines.vocab`): keys ordered by
(-count, fingerprint(key), key) get ids 2, 3, ... per kind (0 padding, 1 OOV). The job never
holds a whole vocabulary in one place:

1. counts per key (summed by key on the workers);
2. a histogram: how many keys have each count (one number per distinct count, a bounded
   summary: at most sqrt(2 * events) distinct counts);
3. the keys of count c (n_c of them) are split into ceil(n_c / bucket_size) contiguous
   fingerprint ranges, the *groups* (kind, count, range); the groups' sizes are a second
   bounded summary, from which each group's first id is the number of keys in the groups
   before it (by -count, then range);
4. each group (at most ~bucket_size keys) is sorted by (fingerprint, key) on one worker and
   numbered from its first id; it also writes its slice of the vocabulary file.

Joins (`lookup`): records that need the ids or attributes of their keys (a shard's events,
a bucket of item records) send the set of keys they need, bucketed by a hash of the key, to
the bucket that holds those keys' entries; each bucket answers from its own entries (1/B of
the table), and the answers are grouped back by requester with `CoGroupByKey`.
"""
from __future__ import annotations

import collections
import pickle
import zlib
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np

from beam_pipelines import fileio
from beam_pipelines.vocab import fingerprint
from seminar_tf import features as F

KINDS = ("items", "query_tokens", "attrs", "users")


def bucket_of(kind: str, key: str, buckets: int) -> int:
    """The join bucket of a (kind, key): crc32 of "kind<TAB>key" (stable across processes)."""
    return zlib.crc32(key.encode("utf-8"), _salt(kind)) % buckets


def _salt(kind: str) -> int:
    """crc32 of "kind<TAB>": continuing it over the key gives crc32 of the whole string."""
    salt = _SALTS.get(kind)
    if salt is None:
        salt = _SALTS[kind] = zlib.crc32(f"{kind}\t".encode("utf-8"))
    return salt


_SALTS: Dict[str, int] = {}


def fingerprint_range(fp: int, n_keys: int, bucket_size: int) -> int:
    """Which of the ceil(n_keys / bucket_size) equal fingerprint ranges `fp` falls in."""
    ranges = -(-n_keys // bucket_size)
    return (fp * ranges) >> 64


def group_starts(sizes: Iterable[Tuple[Tuple[str, int, int], int]]
                 ) -> Tuple[Dict[Tuple[str, int, int], int], Dict[str, int]]:
    """Group sizes -> (first id of every group, vocabulary size per kind incl. 0 and 1)."""
    starts, totals = {}, {k: F.FIRST_ID for k in KINDS}
    for (kind, count, rng), n in sorted(sizes, key=lambda g: (g[0][0], -g[0][1], g[0][2])):
        starts[(kind, count, rng)] = totals.get(kind, F.FIRST_ID)
        totals[kind] = starts[(kind, count, rng)] + n
    return starts, totals


class AssignIds(beam.PTransform):
    """((kind, key), count) -> id groups (kind, first id, [(key, count)] in id order).

    Also writes `vocab/{kind}.parts/<first id>.txt` per group (one key per line), which
    `concat_vocab_parts` joins into `vocab/{kind}.txt`; `.sizes` (set by `expand`) is a
    singleton PCollection of {kind: vocabulary size}.

    Args:
        min_counts: kind -> the minimum count a key needs (default 1).
        bucket_size: the most keys one group holds (besides rounding).
    """

    def __init__(self, output: str, min_counts: Dict[str, int], bucket_size: int = 50_000):
        super().__init__()
        self.output, self.min_counts, self.bucket_size = output, min_counts, bucket_size
        self.sizes = None

    def expand(self, counts):
        mins, size = self.min_counts, self.bucket_size
        kept = counts | "Keep" >> beam.Filter(
            lambda kc: kc[0][1] != "" and kc[1] >= mins.get(kc[0][0], 1))
        hist = (kept | "CountKey" >> beam.Map(lambda kc: ((kc[0][0], kc[1]), 1))
                | "KeysPerCount" >> beam.CombinePerKey(sum))

        def to_group(kc, hist):
            (kind, key), c = kc
            fp = fingerprint(key)
            return (kind, c, fingerprint_range(fp, hist[(kind, c)], size)), (fp, key)

        grouped = kept | "ToGroup" >> beam.Map(to_group, beam.pvalue.AsDict(hist))
        starts = (grouped | "GroupKey" >> beam.Map(lambda g: (g[0], 1))
                  | "GroupSizes" >> beam.CombinePerKey(sum)
                  | "AllSizes" >> beam.combiners.ToList()
                  | "Starts" >> beam.Map(group_starts))
        self.sizes = starts | "Sizes" >> beam.Map(lambda st: st[1])
        out = self.output

        def number(group, starts):
            (kind, count, rng), members = group
            keys = [k for _, k in sorted(members)]
            first = starts[0][(kind, count, rng)]
            fileio.write_bytes(_part_path(out, kind, first),
                               "".join(f"{k}\n" for k in keys).encode("utf-8"))
            return kind, first, [(k, count) for k in keys]

        return (grouped | "ByGroup" >> beam.GroupByKey()
                | "Number" >> beam.Map(number, beam.pvalue.AsSingleton(starts)))


def _part_path(output: str, kind: str, first: int) -> str:
    return fileio.join(output, "vocab", f"{kind}.parts", f"{first:012d}.txt")


def concat_vocab_parts(output: str) -> None:
    """Joins each kind's parts (in id order) into `vocab/{kind}.txt`, streaming, then deletes
    the parts."""
    for kind in KINDS:
        parts = fileio.glob(fileio.join(output, "vocab", f"{kind}.parts", "*.txt"))
        with fileio.create(fileio.join(output, "vocab", f"{kind}.txt")) as f:
            for p in parts:
                with fileio.open_read(p) as src:
                    while True:
                        block = src.read(1 << 22)
                        if not block:
                            break
                        f.write(block)
        fileio.delete_tree(fileio.join(output, "vocab", f"{kind}.parts"))


# --------------------------------------------------------------------------------- joins
# Join payloads are columnar and pickled: one Beam element carries a list of batches
# (kind, keys, {column: numpy array or list}), so the per-key cost is numpy / pickle work,
# not a Beam element.
Batch = Tuple[str, List[str], Dict[str, Sequence]]


def _take(col, idx):
    return col[idx] if isinstance(col, np.ndarray) else [col[i] for i in idx]


def entries_by_bucket(kind: str, keys: Sequence[str], columns: Dict[str, Sequence],
                      buckets: int, bucket_kind: Optional[str] = None
                      ) -> List[Tuple[int, bytes]]:
    """Entries of one kind (keys and aligned columns) -> [(bucket, packed [batch])], one
    element per bucket touched; `bucket_kind` buckets by another kind's keys (default
    `kind`)."""
    if not len(keys):
        return []
    salt, crc = _salt(bucket_kind or kind), zlib.crc32
    b = np.array([crc(k.encode("utf-8"), salt) % buckets for k in keys], np.int64)
    order = np.argsort(b, kind="stable")
    bounds = np.flatnonzero(np.diff(b[order])) + 1
    out = []
    for idx in np.split(order, bounds):
        batch = (kind, [keys[i] for i in idx], {c: _take(v, idx) for c, v in columns.items()})
        out.append((int(b[idx[0]]), pickle.dumps([batch], protocol=pickle.HIGHEST_PROTOCOL)))
    return out


def requests_by_bucket(requester, wanted: Dict[str, Iterable[str]], buckets: int
                       ) -> List[Tuple[int, Tuple[object, bytes]]]:
    """The keys a requester needs ({kind: keys}) -> [(bucket, (requester, packed
    {kind: [keys]}))]."""
    out: Dict[int, Dict[str, list]] = collections.defaultdict(
        lambda: collections.defaultdict(list))
    crc = zlib.crc32
    for kind, keys in wanted.items():
        salt = _salt(kind)
        for key in set(keys):
            out[crc(key.encode("utf-8"), salt) % buckets][kind].append(key)
    return [(b, (requester, pickle.dumps(dict(w), protocol=pickle.HIGHEST_PROTOCOL)))
            for b, w in sorted(out.items())]


def merged(blobs: Iterable[bytes]) -> Dict[str, Tuple[List[str], Dict[str, Sequence]]]:
    """Packed batches -> {kind: (keys, columns)}, each kind's batches concatenated."""
    parts: Dict[str, list] = collections.defaultdict(list)
    for blob in blobs:
        for kind, keys, cols in pickle.loads(blob):
            parts[kind].append((keys, cols))
    out = {}
    for kind, batches in parts.items():
        keys = [k for ks, _ in batches for k in ks]
        cols = {}
        for c, first in batches[0][1].items():
            if isinstance(first, np.ndarray):
                cols[c] = np.concatenate([cs[c] for _, cs in batches])
            else:
                cols[c] = [x for _, cs in batches for x in cs[c]]
        out[kind] = (keys, cols)
    return out


def _answer(bucket_joined):
    _, joined = bucket_joined
    table = {kind: (dict(zip(keys, range(len(keys)))), cols)
             for kind, (keys, cols) in merged(joined["entries"]).items()}
    for requester, blob in joined["requests"]:
        found = []
        for kind, keys in pickle.loads(blob).items():
            if kind not in table:
                continue
            index, cols = table[kind]
            get = index.get
            idx = np.array([get(k, -1) for k in keys], np.int64)
            hit = np.flatnonzero(idx >= 0)
            if len(hit):
                found.append((kind, [keys[i] for i in hit],
                              {c: _take(v, idx[hit]) for c, v in cols.items()}))
        if found:
            yield requester, pickle.dumps(found, protocol=pickle.HIGHEST_PROTOCOL)


def lookup(requests, entries, label: str):
    """Answers requests (`requests_by_bucket`) from entries (`entries_by_bucket`), bucket by
    bucket: -> (requester, packed batches of the keys that have an entry; `merged`)."""
    return ({"requests": requests, "entries": entries}
            | f"{label}Join" >> beam.CoGroupByKey()
            | f"{label}Answer" >> beam.FlatMap(_answer))
