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
import zlib
from typing import Dict, Iterable, List, Tuple

import apache_beam as beam

from beam_pipelines import fileio
from beam_pipelines.vocab import fingerprint
from seminar_tf import features as F

KINDS = ("items", "query_tokens", "attrs", "users")


def bucket_of(kind: str, key: str, buckets: int) -> int:
    """The join bucket of a (kind, key) (stable across processes)."""
    return zlib.crc32(f"{kind}\t{key}".encode("utf-8")) % buckets


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
        fileio.delete(parts)


# --------------------------------------------------------------------------------- joins
def entries_by_bucket(kind: str, pairs: Iterable[Tuple[str, object]], buckets: int
                      ) -> List[Tuple[int, List[Tuple[str, str, object]]]]:
    """(key, value) pairs of one kind -> [(bucket, [(kind, key, value)])], one element per
    bucket touched."""
    out: Dict[int, list] = collections.defaultdict(list)
    for key, value in pairs:
        out[bucket_of(kind, key, buckets)].append((kind, key, value))
    return sorted(out.items())


def requests_by_bucket(requester, wanted: Iterable[Tuple[str, str]], buckets: int
                       ) -> List[Tuple[int, Tuple[object, List[Tuple[str, str]]]]]:
    """The (kind, key)s a requester needs -> [(bucket, (requester, [(kind, key)]))]."""
    out: Dict[int, list] = collections.defaultdict(list)
    for kind, key in set(wanted):
        out[bucket_of(kind, key, buckets)].append((kind, key))
    return [(b, (requester, keys)) for b, keys in sorted(out.items())]


def _answer(bucket_joined):
    _, joined = bucket_joined
    table = {(kind, key): value for batch in joined["entries"] for kind, key, value in batch}
    for requester, keys in joined["requests"]:
        found = [(kind, key, table[(kind, key)]) for kind, key in keys if (kind, key) in table]
        if found:
            yield requester, found


def lookup(requests, entries, label: str):
    """Answers requests (`requests_by_bucket`) from entries (`entries_by_bucket`), bucket by
    bucket: -> (requester, [(kind, key, value)]) for the keys that have an entry."""
    return ({"requests": requests, "entries": entries}
            | f"{label}Join" >> beam.CoGroupByKey()
            | f"{label}Answer" >> beam.FlatMap(_answer))
