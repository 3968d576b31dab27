"""Sharded output: users hashed to shards, each shard's files written by one worker.

Events travel in batches (one Beam element per input chunk and shard, not per event) and
are grouped per shard; a worker then builds every user of its shard (sorted by raw user id,
so any runner writes the same bytes) and writes the shard's files itself through Beam's
`FileSystems` (gzip TFRecords), in one of two formats:

- "store" (default): `timelines-S-of-N` (each user's positives once) and
  `{split}-S-of-N.targets.tfrecord.gz` (light target records), see `seminar_tf.data.store`;
- "examples": `{split}-S-of-N.tfrecord.gz`, one self-contained Example per target.

Both formats come from the same `UserPlan`s in the same order, so `make_dataset` yields the
same batches from either. Statistics leave the worker as per-shard counts.
"""
from __future__ import annotations

import collections
import pickle
import struct
import zlib
from typing import Dict, Iterable, List, Optional, Tuple

import apache_beam as beam
import google_crc32c
import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from beam_pipelines import fileio
from beam_pipelines import records as R
from beam_pipelines.ranks import bucket_of, merged, requests_by_bucket
from beam_pipelines.sequences import (BuildOptions, Sampler, UserPlan, plan_examples,
                                      plan_user, train_time_events, unique_events)
from beam_pipelines.vocab import IdRows, KeyIds
from seminar_tf import features as F
from seminar_tf.data import store

FORMATS = ("store", "examples")
SPILL_DIR = "events.parts"
OUTPUT_SPLITS = ("train", "valid", "test", "candidates", "candidate_lists")


def shard_of(user: str, shards: int) -> int:
    """The shard of a raw user id (stable across processes and runners)."""
    return zlib.crc32(user.encode("utf-8")) % shards


def batch_by_shard(events: Iterable[R.Event], shards: int
                   ) -> List[Tuple[int, Tuple[int, bytes]]]:
    """Events of one input chunk -> [(shard, (count, packed events))]: one pickled list of
    plain tuples per shard, so that Beam encodes one bytes value, not one object per event."""
    out: Dict[int, list] = collections.defaultdict(list)
    shard_cache: Dict[str, int] = {}
    for e in events:
        shard = shard_cache.get(e[0])
        if shard is None:
            shard = shard_cache[e[0]] = shard_of(e[0], shards)
        out[shard].append(tuple(e))
    return [(k, (len(v), pickle.dumps(v, protocol=pickle.HIGHEST_PROTOCOL)))
            for k, v in sorted(out.items())]


def users_of(blobs: Iterable[bytes], events: bool = True) -> List[Tuple[str, list]]:
    """A shard's packed event batches -> [(user, events)] sorted by raw user id (`events`
    False: plain field tuples, cheaper where only field indices are used)."""
    users: Dict[str, list] = collections.defaultdict(list)
    make = R.Event._make
    for packed in blobs:
        for t in pickle.loads(packed):
            users[t[0]].append(make(t) if events else t)
    return sorted(users.items())


def counts_by_bucket(counts: Dict[Tuple[str, str], int], buckets: int
                     ) -> List[Tuple[int, bytes]]:
    """{(kind, key): count} -> [(bucket, packed {(kind, key): count})]: one element per
    bucket rather than one per key (`sum_bucket_counts` adds them up per key)."""
    out: Dict[int, dict] = collections.defaultdict(dict)
    for (kind, key), n in counts.items():
        out[bucket_of(kind, key, buckets)][(kind, key)] = n
    return [(b, pickle.dumps(c, protocol=pickle.HIGHEST_PROTOCOL))
            for b, c in sorted(out.items())]


def sum_bucket_counts(bucket_blobs) -> List[Tuple[Tuple[str, str], int]]:
    """(bucket, [packed counts]) -> ((kind, key), total count) of the bucket's keys."""
    total: collections.Counter = collections.Counter()
    for blob in bucket_blobs[1]:
        total.update(pickle.loads(blob))
    return list(total.items())


def spill_path(output: str, shard: int) -> str:
    """Where `scan_shard` leaves a shard's events for `WriteShard` (deleted after the job)."""
    return FileSystems.join(output, SPILL_DIR, f"{shard:05d}.pkl")


def scan_shard(shard_batches, options: BuildOptions, buckets: int, output: str):
    """One pass over a shard's events: the counts of the training-time events per
    (kind, key) (`train_time_events`; kind "items", "query_tokens" or "users": vocabularies
    and popularity sum them by key), packed per bucket (`counts_by_bucket`); as tagged
    output "requests", the keys the shard will look up
    (`beam_pipelines.ranks.requests_by_bucket`): its items' info, query tokens and users.

    The shard's packed events are written once to `spill_path` (any Beam filesystem), and
    tagged output "spilled" says (shard, events): `WriteShard` reads them from there, so the
    events cross the shuffle once rather than twice (count, then join with the ids), and
    nobody holds them in memory between the two passes. Rewriting the file on a retry gives
    the same bytes.
    """
    shard, batches = shard_batches[0], list(shard_batches[1])
    blobs = [packed for _, packed in batches]
    fileio.write_bytes(spill_path(output, shard),
                       pickle.dumps(blobs, protocol=pickle.HIGHEST_PROTOCOL))
    yield beam.pvalue.TaggedOutput("spilled", (shard, sum(n for n, _ in batches)))
    counts: collections.Counter = collections.Counter()
    users, items, tokens = [], set(), set()
    for user, events in users_of(blobs, events=False):
        users.append(user)
        items.update(e[2] for e in events if e[2])
        tokens.update(tok for e in events for tok in e[3])
        train = train_time_events(unique_events(events), options)
        if train:
            counts[("users", user)] += len(train)
        counts.update(("items", e[2]) for e in train)
        counts.update(("query_tokens", tok) for e in train for tok in e[3])
    yield from counts_by_bucket(counts, buckets)
    wanted = {"users": users, "item_info": items, "query_tokens": tokens}
    for request in requests_by_bucket(shard, wanted, buckets):
        yield beam.pvalue.TaggedOutput("requests", request)


class ShardLookups:
    """What a shard's users need by key, from the join's answers: item ids, attributes and
    titles, query token ids and user ids, plus the sampler's items' attributes."""

    def __init__(self, answers, sampler_attrs: Optional[IdRows], num_attrs: int):
        found = merged(answers)
        keys, cols = found.get("item_info", ([], {"id": np.zeros(0, np.int64),
                                                 "attrs": np.zeros((0, num_attrs), np.int64),
                                                 "title": []}))
        tokens = {}
        if "query_tokens" in found:
            t_keys, t_cols = found["query_tokens"]
            tokens = dict(zip(t_keys, t_cols["id"].tolist()))
        self.titles = {}
        for key, pairs in zip(keys, cols["title"]):
            if pairs:
                self.titles[key] = tuple(t for t, _ in pairs)
                tokens.update(pairs)
        u_keys, u_cols = found.get("users", ([], {"id": np.zeros(0, np.int64)}))
        self.users = dict(zip(u_keys, u_cols["id"].tolist()))
        self.items = KeyIds(dict(zip(keys, cols["id"].tolist())))
        self.tokens = KeyIds(tokens)
        self.attrs = IdRows(cols["id"], cols["attrs"].reshape(-1, num_attrs),
                                        fallback=sampler_attrs)

    def user(self, key: str) -> int:
        return self.users.get(key, F.OOV_ID)


# ------------------------------------------------------------------------ record files
class RecordFile:
    """A gzip TFRecord file written through `FileSystems` (any Beam filesystem).

    Compressed here at zlib level 4 rather than by Beam's gzip stream (level 6): on the
    store's records 1.7% more bytes for ~35% less compression time.
    """

    LEVEL = 4

    def __init__(self, path: str):
        self.f = FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED)
        self.z = zlib.compressobj(self.LEVEL, zlib.DEFLATED, 31)  # 31: a gzip stream
        self.n = 0

    @staticmethod
    def _masked(data: bytes) -> int:
        crc = google_crc32c.value(data)
        return (((crc >> 15) | (crc << 17)) + 0xa282ead8) & 0xffffffff

    def write(self, record: bytes) -> None:
        length = struct.pack("<Q", len(record))
        self.f.write(self.z.compress(b"".join((
            length, struct.pack("<I", self._masked(length)), record,
            struct.pack("<I", self._masked(record))))))
        self.n += 1

    def close(self) -> None:
        self.f.write(self.z.flush())
        self.f.close()


def store_records(user_id: int, plan: UserPlan, tl_row: int
                  ) -> Tuple[bytes, Dict[str, bytes], Dict[str, List[int]]]:
    """One user's timeline record, target blocks per split and history lengths per split."""
    p = plan.pos
    by_split: Dict[str, list] = collections.defaultdict(list)
    for t in plan.targets:
        by_split[t.split].append(t)
    # the attributes of every item the records name, in one lookup
    t_items = {split: [t.item for t in ts] for split, ts in by_split.items()}
    listed = [i for t in by_split.get("candidate_lists", ()) for i, _ in t.listed]
    wanted = [plan.items[p]] + [np.asarray(t_items[s], np.int64) for s in by_split] + [
        np.asarray(listed, np.int64)]
    attrs = np.split(plan.attrs_of(np.concatenate(wanted)),
                     np.cumsum([len(w) for w in wanted])[:-1])
    timeline = store.timeline_record(user_id, plan.items[p], plan.queries[p], attrs[0],
                                     plan.sources[p], plan.times[p])
    blocks, lengths = {}, {}
    for (split, ts), t_attrs in zip(by_split.items(), attrs[1:]):
        k = np.array([t.k for t in ts])
        cols = {"t_time_ms": plan.times[k], "t_item": t_items[split],
                "t_query": plan.queries[k], "t_attrs": t_attrs,
                "t_source": plan.sources[k], "t_label": [t.label for t in ts],
                "t_group": [t.group for t in ts], "t_hist_end": [t.hi for t in ts]}
        lists = None
        if split == "candidate_lists":
            lists = {"c_count": [len(t.listed) for t in ts], "c_items": listed,
                     "c_attrs": attrs[-1], "c_labels": [lb for t in ts for _, lb in t.listed]}
        blocks[split] = store.target_block(tl_row, user_id, cols, lists)
        lengths[split] = [t.hi - t.lo for t in ts]
    return timeline, blocks, lengths


class WriteShard(beam.DoFn):
    """Builds and writes one shard's users from (shard, {"spilled": [events] if the shard has
    events (they are read from `spill_path`), "lookup": the join's answers}) and the bounded
    sampler summary; yields ("rows" | "len" | "cands", key, n)."""

    def __init__(self, output: str, shards: int, fmt: str, contract: F.FeatureContract,
                 options: BuildOptions, has_negatives: bool, synth_queries: bool):
        if fmt not in FORMATS:
            raise ValueError(f"--format must be one of {FORMATS}, not {fmt!r}")
        self.output, self.shards, self.fmt = output, shards, fmt
        self.contract, self.options = contract, options
        self.has_negatives, self.synth_queries = has_negatives, synth_queries
        self._cache_key = None

    def _prepare(self, summary):
        if id(summary) != self._cache_key:
            self._sampler = self._sampler_attrs = None
            if summary is not None and summary["item_ids"]:
                self._sampler_attrs = IdRows(np.asarray(summary["item_ids"]),
                                                         summary["attrs"])
                self._sampler = Sampler(summary["item_ids"], summary["counts"],
                                        mode=self.options.sampling, head=summary["head"],
                                        tail_size=summary["tail_size"],
                                        tail_mass=summary["tail_mass"])
            self._cache_key = id(summary)

    def _open(self, prefix: str, shard: int, targets: bool) -> RecordFile:
        name = store.shard_name(prefix, shard, self.shards, targets)
        return RecordFile(FileSystems.join(self.output, name))

    def process(self, shard_joined, summary):
        from beam_pipelines.examples import synthesize_queries
        shard, joined = shard_joined
        if not list(joined["spilled"]):
            return
        blobs = pickle.loads(fileio.read_bytes(spill_path(self.output, shard)))
        self._prepare(summary)
        look = ShardLookups(joined["lookup"], self._sampler_attrs, self.options.num_attrs)
        is_store = self.fmt == "store"
        files = {s: self._open(s, shard, is_store) for s in OUTPUT_SPLITS}
        timelines = self._open("timelines", shard, False) if is_store else None
        stats: collections.Counter = collections.Counter()
        # plain field tuples unless queries are synthesised (that code reads Event fields)
        for user, events in users_of(blobs, events=self.synth_queries):
            unique = unique_events(events)  # exact duplicate rows count once
            stats[("rows", "duplicate_events")] += len(events) - len(unique)
            if self.synth_queries:
                unique = synthesize_queries(unique, look.titles)
            user_id = look.user(user)
            plan = plan_user(user_id, unique, item_vocab=look.items, token_vocab=look.tokens,
                             item_attrs=look.attrs, sampler=self._sampler,
                             options=self.options, has_negatives=self.has_negatives)
            for missing in plan.short:
                stats[("rows", "short_candidate_groups")] += 1
                stats[("rows", "missing_candidates")] += missing
            if is_store:
                timeline, blocks, lengths = store_records(user_id, plan, timelines.n)
                timelines.write(timeline)
                for split, block in blocks.items():
                    files[split].write(block)
                    self._count(stats, split, lengths[split])
            else:
                for split, serialized, hist_len in plan_examples(user_id, plan,
                                                                 self.contract):
                    if split != "short_groups":
                        files[split].write(serialized)
                        self._count(stats, split, [hist_len])
        for f in list(files.values()) + ([timelines] if timelines else []):
            f.close()
        stats[("rows", "shards_written")] += 1
        for (kind, key), n in stats.items():
            yield kind, key, n

    @staticmethod
    def _count(stats, split: str, lengths: List[int]) -> None:
        if split == "candidates":
            stats[("cands", None)] += len(lengths)
        elif split != "candidate_lists":
            for n, c in collections.Counter(lengths).items():
                stats[("len", (split, n))] += c
