"""The sequence store: each user's timeline stored once, plus light target records.

A preprocessed dataset in the store format (the default of `seminar preprocess`,
docs/design.md §3) holds, per shard `SSSSS-of-NNNNN` (users are assigned to shards by a hash
of their id):

    timelines-SSSSS-of-NNNNN.tfrecord.gz           one Example per user: the positives
    {split}-SSSSS-of-NNNNN.targets.tfrecord.gz     one Example per (user, split): its targets

Timeline record (n = the user's positive events, sorted by time; history is cut from it):
    user_id [1], tl_items [n], tl_query [n*Q], tl_attrs [n*A], tl_sources [n],
    tl_time_ms [n] (unix milliseconds)
Target block (m = the user's targets of one split, in output order):
    tl_row [1]          the row of the user's timeline in the shard's timeline file
    user_id [1], t_time_ms [m], t_item [m], t_query [m*Q], t_attrs [m*A], t_source [m],
    t_label [m] float, t_group [m] (candidate group id, 0 outside evaluation),
    t_hist_end [m]      the number of timeline events strictly before the target
    candidate_lists only: c_count [m], c_items [sum c_count], c_attrs [sum c_count * A],
    c_labels [sum c_count] float

`shard_targets` (via `expand`) turns targets into the feature contract with the same history definition
as self-contained Examples: the timeline rows `[max(end - L, 0), end)`, left-padded to L,
time gaps `(t_time_ms - tl_time_ms) / 1000` seconds, timestamp `t_time_ms // 1000`. Output
bytes are O(events) whatever L is; L is a reading choice (the contract's `max_seq_len`).
"""
from __future__ import annotations

import re
from typing import Dict, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf

from seminar_tf import features as F

TARGETS_SUFFIX = ".targets.tfrecord.gz"
_SHARD = re.compile(r"^(?P<split>.+)-(?P<shard>\d{5}-of-\d{5})\.targets\.tfrecord\.gz$")


def shard_name(prefix: str, shard: int, shards: int, store: bool) -> str:
    """`{prefix}-SSSSS-of-NNNNN` + `.targets.tfrecord.gz` (store targets) or `.tfrecord.gz`."""
    return f"{prefix}-{shard:05d}-of-{shards:05d}" + (TARGETS_SUFFIX if store
                                                       else ".tfrecord.gz")


def is_store(files: Sequence[str]) -> bool:
    """True when the files are target files of the store, False for self-contained Examples.

    Raises:
        ValueError: a mix of both formats.
    """
    kinds = {f.endswith(TARGETS_SUFFIX) for f in files}
    if len(kinds) > 1:
        raise ValueError(f"a mix of sequence-store target files and Example files: {files!r}")
    return kinds == {True}


def prefetched(ds: tf.data.Dataset) -> tf.data.Dataset:
    """The input pipelines' last step: prefetch, with tf.data's autotuning model off.

    With the model on (TF 2.21), deleting an iterator, as `fit` does at every epoch's end,
    waits for the model thread's current sleep (`RootDataset::Iterator::~Iterator` on
    `Model::OptimizeLoop`, gdb), up to 60 s: 55 s at the end of the demo's pretraining.
    Off, AUTOTUNE parallelism stays at the core count, which measured faster on 2 cores
    (demo-shape pretraining 1,015 / 936 vs 809 / 837 examples/s).
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.prefetch(tf.data.AUTOTUNE).with_options(options)


def timeline_file(target_file: str) -> str:
    """The timeline shard that a target shard's `tl_row`s index."""
    head, name = target_file.rsplit("/", 1) if "/" in target_file else ("", target_file)
    m = _SHARD.match(name)
    if not m:
        raise ValueError(f"not a sequence-store target file name: {target_file!r}")
    return (head + "/" if head else "") + f"timelines-{m['shard']}.tfrecord.gz"


# ----------------------------------------------------------------------------- encoding
def _int(ex: tf.train.Example, key: str, values) -> None:
    ex.features.feature[key].int64_list.value.extend(np.asarray(values, np.int64).ravel()
                                                      .tolist())


def _float(ex: tf.train.Example, key: str, values) -> None:
    ex.features.feature[key].float_list.value.extend(np.asarray(values, np.float32).ravel()
                                                      .tolist())


def timeline_record(user_id: int, items, query, attrs, sources, time_ms) -> bytes:
    """One user's timeline (positives, sorted by time) as a serialized Example."""
    ex = tf.train.Example()
    _int(ex, "user_id", [user_id])
    for key, v in (("tl_items", items), ("tl_query", query), ("tl_attrs", attrs),
                   ("tl_sources", sources), ("tl_time_ms", time_ms)):
        _int(ex, key, v)
    return ex.SerializeToString(deterministic=True)


def target_block(tl_row: int, user_id: int, cols: Mapping[str, Sequence],
                 lists: Optional[Mapping[str, Sequence]] = None) -> bytes:
    """One (user, split) block of targets as a serialized Example.

    Args:
        tl_row: the user's row in the shard's timeline file.
        user_id: the user's vocabulary id.
        cols: t_time_ms, t_item, t_query (m, Q), t_attrs (m, A), t_source, t_label, t_group,
            t_hist_end.
        lists: for candidate_lists: c_count (m,), c_items, c_attrs (sum, A), c_labels.
    """
    ex = tf.train.Example()
    _int(ex, "tl_row", [tl_row])
    _int(ex, "user_id", [user_id])
    for key, v in cols.items():
        (_float if key == "t_label" else _int)(ex, key, v)
    for key, v in (lists or {}).items():
        (_float if key == "c_labels" else _int)(ex, key, v)
    return ex.SerializeToString(deterministic=True)


# ------------------------------------------------------------------------------ reading
_TIMELINE_KEYS = ("tl_items", "tl_query", "tl_attrs", "tl_sources", "tl_time_ms")
_TARGET_INT = ("t_time_ms", "t_item", "t_query", "t_attrs", "t_source", "t_group",
               "t_hist_end")
_LIST_KEYS = ("c_count", "c_items", "c_attrs", "c_labels")


def load_timelines(path: tf.Tensor, contract: F.FeatureContract) -> Dict[str, tf.Tensor]:
    """A timeline shard in memory: flat per-event columns, the row starts (`base`) and
    `pad`, the index of one all-zero event appended to every column: padding positions
    gather it (one gather per column, no mask applied afterwards)."""
    Q, A = contract.max_query_tokens, contract.num_attrs
    records = tf.data.TFRecordDataset(path, compression_type="GZIP").batch(1 << 30)
    # an empty shard still yields one (empty) batch
    records = records.concatenate(tf.data.Dataset.from_tensors(
        tf.constant([], tf.string))).take(1).get_single_element()
    raw = tf.io.parse_example(records, {k: tf.io.RaggedFeature(
        tf.int64, row_splits_dtype=tf.int64) for k in _TIMELINE_KEYS})
    items = raw["tl_items"]
    cols = {"items": items.values, "query": tf.reshape(raw["tl_query"].values, [-1, Q]),
            "attrs": tf.reshape(raw["tl_attrs"].values, [-1, A]),
            "sources": raw["tl_sources"].values, "time_ms": raw["tl_time_ms"].values}
    cols = {k: tf.concat([v, tf.zeros(tf.concat([[1], tf.shape(v)[1:]], 0), v.dtype)], 0)
            for k, v in cols.items()}
    return {"base": items.row_splits, "pad": tf.size(items.values, out_type=tf.int64),
            **cols}


def _block_targets(serialized: tf.Tensor, contract: F.FeatureContract, lists: bool):
    """One target block -> a dict of per-target tensors (m, ...)."""
    Q, A = contract.max_query_tokens, contract.num_attrs
    spec = {k: tf.io.RaggedFeature(tf.int64) for k in _TARGET_INT}
    spec["t_label"] = tf.io.RaggedFeature(tf.float32)
    spec["tl_row"] = tf.io.FixedLenFeature([], tf.int64)
    spec["user_id"] = tf.io.FixedLenFeature([], tf.int64)
    if lists:
        spec.update({k: tf.io.RaggedFeature(tf.int64) for k in _LIST_KEYS[:3]})
        spec["c_labels"] = tf.io.RaggedFeature(tf.float32)
    raw = tf.io.parse_single_example(serialized, spec)
    m = tf.shape(raw["t_item"])[0]
    out = {k: raw[k] for k in _TARGET_INT + ("t_label",)}
    out["t_query"] = tf.reshape(raw["t_query"], [m, Q])
    out["t_attrs"] = tf.reshape(raw["t_attrs"], [m, A])
    out["tl_row"] = tf.fill([m], raw["tl_row"])
    out["user_id"] = tf.fill([m], raw["user_id"])
    if lists:
        count = raw["c_count"]
        rag = lambda v: tf.RaggedTensor.from_row_lengths(v, count)  # noqa: E731
        out["c_items"] = rag(raw["c_items"]).to_tensor()
        out["c_attrs"] = rag(tf.reshape(raw["c_attrs"], [-1, A])).to_tensor()
        out["c_labels"] = rag(raw["c_labels"]).to_tensor()
        out["c_mask"] = tf.sequence_mask(count, tf.shape(out["c_items"])[1])
    return out


def contract_features(t: Mapping[str, tf.Tensor], hist, valid: tf.Tensor
                      ) -> Dict[str, tf.Tensor]:
    """The one definition of a target's contract features from the store's columns (both
    the per-example and the timeline input use it).

    Args:
        t: per-target columns (n,): user_id, t_time_ms, t_item, t_query (n, Q), t_attrs
            (n, A), t_source, t_label, t_group.
        hist: timeline column name ("tl_items", "tl_query", ...) -> its values at each
            target's history positions, (n, L, ...), zero where not `valid`.
        valid: (n, L) bool, the real (not padding) history positions.

    Returns:
        Contract features before OOV mapping and masks (`FeatureContract.finish`):
        timestamp `t_time_ms // 1000`, time gaps `(t_time_ms - tl_time_ms) / 1000` s.
    """
    gaps = time_gaps(t["t_time_ms"][:, None], hist("tl_time_ms"))
    return {**target_features(t),
            F.HIST_ITEMS: hist("tl_items"), F.HIST_QUERY: hist("tl_query"),
            F.HIST_ATTRS: hist("tl_attrs"), F.HIST_SOURCES: hist("tl_sources"),
            F.HIST_TIME_GAPS: tf.where(valid, gaps, 0.0)}


def time_gaps(target_ms: tf.Tensor, behaviour_ms: tf.Tensor) -> tf.Tensor:
    """The one time-gap definition: `(target_ms - behaviour_ms) / 1000` seconds, computed in
    float64 and returned as float32 (broadcasting)."""
    return tf.cast(tf.cast(target_ms - behaviour_ms, tf.float64) / 1000.0, tf.float32)


def target_features(t: Mapping[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """The target's own contract features of `contract_features` (no history)."""
    return {F.USER_ID: t["user_id"], F.TIMESTAMP: tf.math.floordiv(t["t_time_ms"], 1000),
            F.TARGET_ITEM: t["t_item"], F.TARGET_QUERY: t["t_query"],
            F.TARGET_ATTRS: t["t_attrs"], F.TARGET_SOURCE: t["t_source"],
            F.LABEL: t["t_label"], F.GROUP_ID: t["t_group"]}


def masked(valid: tf.Tensor, got: tf.Tensor) -> tf.Tensor:
    """`got` (n, L, ...) with zeros where `valid` (n, L) is False."""
    keep = tf.reshape(valid, tf.concat([tf.shape(valid), tf.ones([tf.rank(got) - 2],
                                                                   tf.int32)], 0))
    return tf.where(keep, got, tf.zeros([], got.dtype))


def expand(t: Mapping[str, tf.Tensor], tl: Mapping[str, tf.Tensor], L: int
           ) -> Dict[str, tf.Tensor]:
    """Targets (b,) + their shard's timelines -> dense, left-padded contract features
    (before OOV mapping and masks: `FeatureContract.finish`)."""
    end = t["t_hist_end"]
    start = tf.maximum(end - L, 0)
    pos = end[:, None] - L + tf.range(L, dtype=end.dtype)[None]  # (b, L), last = end - 1
    valid = pos >= start[:, None]
    idx = tf.where(valid, tf.gather(tl["base"], t["tl_row"])[:, None] + pos, tl["pad"])
    out = contract_features(t, lambda k: tf.gather(tl[k[3:]], idx), valid)
    for k in ("c_items", "c_attrs", "c_labels", "c_mask"):
        if k in t:
            out[k] = t[k]
    return out


def shard_targets(target_file: tf.Tensor, timelines: tf.Tensor, contract: F.FeatureContract,
                  lists: bool, shuffle_buffer: int = 0, seed: int = 0,
                  deterministic: bool = True) -> tf.data.Dataset:
    """The expanded targets of one shard, one element per target."""
    tl = load_timelines(timelines, contract)
    ds = tf.data.TFRecordDataset(target_file, compression_type="GZIP")
    ds = ds.map(lambda s: _block_targets(s, contract, lists))
    if lists:  # candidate lists differ in length between blocks: one group at a time
        ds = ds.unbatch().map(lambda t: {k: v[None] for k, v in t.items()})
    else:
        ds = ds.unbatch()
        if shuffle_buffer:
            ds = ds.shuffle(shuffle_buffer, seed=seed)
        ds = ds.batch(64)
    ds = ds.map(lambda t: expand(t, tl, contract.max_seq_len),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic or None)
    return ds.unbatch()


def finish_lists(contract: F.FeatureContract, batch: Mapping[str, tf.Tensor]):
    """A padded batch of candidate-list targets -> (context, candidates) as
    `FeatureContract.parse_ranking_records` returns them."""
    mask = batch["c_mask"]
    dense = {k: v for k, v in batch.items() if not k.startswith("c_")}
    context = {k: v for k, v in contract.finish(dense).items()
               if k not in F.CANDIDATE_FEATURES}
    n = tf.shape(mask)[1]
    group = tf.where(mask, tf.repeat(batch[F.GROUP_ID][:, None], n, axis=1),
                     tf.zeros([], tf.int64))
    cands = {F.TARGET_ITEM: contract._oov(batch["c_items"], contract.item_vocab_size),
             F.TARGET_ATTRS: contract._oov(batch["c_attrs"], contract.attr_vocab_size),
             F.LABEL: batch["c_labels"], F.GROUP_ID: group, F.CANDIDATE_MASK: mask}
    return context, cands


def to_example(contract: F.FeatureContract, t: Mapping[str, np.ndarray]) -> bytes:
    """One expanded target (numpy, unbatched, from `shard_targets`) as a self-contained
    serialized Example (a ranking record when it carries a candidate list)."""
    keep = t[F.HIST_ITEMS] != F.PAD_ID  # real items have ids >= 1; padding is 0
    ex = contract.make_example_arrays(
        user_id=int(t[F.USER_ID]), timestamp=int(t[F.TIMESTAMP]),
        target_item=int(t[F.TARGET_ITEM]), target_query=t[F.TARGET_QUERY],
        target_attrs=t[F.TARGET_ATTRS], target_source=int(t[F.TARGET_SOURCE]),
        label=float(t[F.LABEL]), hist_items=t[F.HIST_ITEMS][keep],
        hist_query=t[F.HIST_QUERY][keep], hist_attrs=t[F.HIST_ATTRS][keep],
        hist_sources=t[F.HIST_SOURCES][keep], hist_time_gaps=t[F.HIST_TIME_GAPS][keep],
        group_id=int(t[F.GROUP_ID])).SerializeToString(deterministic=True)
    if "c_items" not in t:
        return ex
    group, m = int(t[F.GROUP_ID]), t["c_mask"]
    return contract.make_ranking_record(ex, [
        contract.make_candidate(int(i), a, float(label), group)
        for i, a, label in zip(t["c_items"][m], t["c_attrs"][m], t["c_labels"][m])])
