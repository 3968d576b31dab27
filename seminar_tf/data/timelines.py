"""Timeline batches: training input over the sequence store where behaviours are shared.

Consecutive targets of one user share almost all of their history. A timeline batch holds U
*chunks*; a chunk is up to T consecutive targets of one user (one split's target block,
`seminar_tf.data.store`) plus the window of the user's timeline they need: W = L + T
behaviours starting at `a = max(first end - L, 0)`. The model encodes the W behaviours once
per chunk and gives every target its own causal window (`LifelongRanker.call_timelines`):
the L most recent behaviours strictly before it, exactly the history of the per-example
input. Chunks are cut so that the ends of their targets span fewer than T behaviours, so
W = L + T always suffices.

Element (batched: leading U):
    tl_items (W,), tl_query (W, Q), tl_attrs (W, A), tl_sources (W,), tl_time_ms (W,)
        the window, left-aligned, 0 beyond the chunk's last end
    user_id (T,), t_time_ms (T,), t_item (T,), t_query (T, Q), t_attrs (T, A),
    t_source (T,), t_label (T,), t_group (T,)     the targets (0 for padding)
    t_start (T,), t_end (T,)    each target's history [t_start, t_end) within the window
    t_mask (T,) bool            real targets
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional

import tensorflow as tf

from seminar_tf import features as F
from seminar_tf.data import store

TIMELINE_KEYS = ("tl_items", "tl_query", "tl_attrs", "tl_sources", "tl_time_ms")
TARGET_KEYS = ("user_id", "t_time_ms", "t_item", "t_query", "t_attrs", "t_source",
               "t_label", "t_group")


def chunk_ids(ends: tf.Tensor, T: int) -> tf.Tensor:
    """Chunk id of each target of a block (ends non-decreasing): T consecutive targets at
    most, and their ends spanning fewer than T behaviours."""
    i = tf.range(tf.size(ends, out_type=tf.int64), dtype=tf.int64)
    by_index = i // T
    first = tf.gather(ends, by_index * T)
    key = by_index * (1 << 32) + (ends - first) // T
    change = tf.concat([[0], tf.cast(key[1:] != key[:-1], tf.int64)], 0)
    return tf.cumsum(change)


def block_chunks(t: Mapping[str, tf.Tensor], T: int) -> tf.data.Dataset:
    """One target block (per-target tensors of `store._block_targets`) -> its chunks, each
    padded to T targets."""
    cid = chunk_ids(t["t_hist_end"], T)
    keys = TARGET_KEYS + ("t_hist_end",)

    def padded(v):
        rag = tf.RaggedTensor.from_value_rowids(v, cid)
        return rag.to_tensor(shape=tf.concat([[rag.nrows()], [T], tf.shape(v)[1:]], 0))

    out = {k: padded(t[k]) for k in keys}
    out["tl_row"] = padded(t["tl_row"])[:, 0]
    out["t_mask"] = padded(tf.ones_like(t["t_item"], tf.bool))
    return tf.data.Dataset.from_tensor_slices(out)


def window(c: Mapping[str, tf.Tensor], tl: Mapping[str, tf.Tensor], L: int, T: int
           ) -> Dict[str, tf.Tensor]:
    """A chunk + its shard's timelines -> the element described in the module docstring."""
    W = L + T
    ends = c["t_hist_end"]
    real = c["t_mask"]
    first = ends[0]
    last = tf.reduce_max(tf.where(real, ends, 0))
    a = tf.maximum(first - L, 0)
    pos = a + tf.range(W, dtype=tf.int64)
    valid = pos < last
    idx = tf.where(valid, tl["base"][c["tl_row"]] + pos, tl["pad"])  # pad: a zero event

    with tf.control_dependencies([tf.debugging.assert_less_equal(
            last - a, tf.cast(W, tf.int64), message="timeline chunk wider than L + T")]):
        out = {f"tl_{k}": tf.gather(tl[k], idx)
               for k in ("items", "query", "attrs", "sources", "time_ms")}
    out.update({k: c[k] for k in TARGET_KEYS})
    out["t_end"] = tf.where(real, ends - a, 0)
    out["t_start"] = tf.where(real, tf.maximum(ends - L, 0) - a, 0)
    out["t_mask"] = real
    return out


def shard_chunks(target_file: tf.Tensor, timelines: tf.Tensor, contract: F.FeatureContract,
                 T: int, chunk_shuffle: int = 0, seed: int = 0) -> tf.data.Dataset:
    """The windows of one shard's chunks. `chunk_shuffle` > 0 shuffles the chunks (a few
    integers per target each) in a buffer of that many before their windows are gathered,
    so that consecutive windows come from different users of the shard (seeded by
    `seed`: runs repeat)."""
    tl = store.load_timelines(timelines, contract)
    ds = tf.data.TFRecordDataset(target_file, compression_type="GZIP")
    ds = ds.map(lambda s: store._block_targets(s, contract, lists=False))
    ds = ds.flat_map(lambda t: block_chunks(t, T))
    if chunk_shuffle:
        ds = ds.shuffle(chunk_shuffle, seed=seed)
    return ds.map(lambda c: window(c, tl, contract.max_seq_len, T))


def finish(contract: F.FeatureContract, batch: Mapping[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """A batch of timeline elements, ready for `LifelongRanker.call_timelines`: ids mapped
    to OOV (as `FeatureContract.finish` does), plus `targets`: the targets' own contract
    features (U, T, ...) (`store.target_features`, OOV-mapped, with the query mask; no
    history: each target's history is its slice of its window, `expand`). Every entry has
    the windows as its leading axis, so a distribution strategy splits a batch by window."""
    oov = contract._oov
    vocab = {"tl_items": contract.item_vocab_size, "tl_query": contract.query_vocab_size,
             "tl_attrs": contract.attr_vocab_size, "user_id": contract.user_vocab_size,
             "t_item": contract.item_vocab_size, "t_query": contract.query_vocab_size,
             "t_attrs": contract.attr_vocab_size}
    out = {k: oov(v, vocab[k]) if k in vocab else v for k, v in batch.items()
           if k != "targets"}
    targets = contract.map_oov(store.target_features({k: out[k] for k in TARGET_KEYS}))
    targets[F.TARGET_QUERY_MASK] = targets[F.TARGET_QUERY] != F.PAD_ID
    out["targets"] = targets
    return out


def input_mode(mode: str, pattern, strategy: Optional[str] = None) -> str:
    """The training input of `train.input_mode` for files `pattern` under `strategy`:
    "auto" is "timelines" over the sequence store, "examples" over Example files and
    under the parameter-server strategy (its coordinator re-batches examples per worker,
    which timeline batches cannot take).

    Raises:
        ValueError: "timelines" asked for where they cannot be read, naming the alternative.
    """
    from seminar_tf.data.dataset import list_shards
    is_store = store.is_store(list_shards(pattern))
    if mode == "auto":
        return "timelines" if is_store and strategy != "parameter_server" else "examples"
    if mode == "timelines" and strategy == "parameter_server":
        raise ValueError("parameter_server training reads per-example batches: set "
                         "train.input_mode to 'examples' or 'auto'")
    if mode == "timelines" and not is_store:
        raise ValueError("train.input_mode 'timelines' needs the sequence store (preprocess "
                         "with --format store) or set it to 'examples' or 'auto'")
    return mode


def timeline_dataset(pattern, contract: F.FeatureContract, *, targets_per_timeline: int = 16,
                     batch_size: int = 256, shuffle_buffer: int = 0, seed: int = 0,
                     repeat: bool = False, deterministic: bool = False) -> tf.data.Dataset:
    """Batches of `batch_size // targets_per_timeline` chunks from sequence-store target
    files (the module docstring).

    Shuffling (`shuffle_buffer` > 0) is two-stage: each shard's chunks are shuffled in a
    buffer of `shuffle_buffer` chunks before their windows are gathered (`shard_chunks`:
    a chunk is a few integers per target, so the buffer spans many users at little
    memory), then the windows of the interleaved shards in a buffer of
    `shuffle_buffer // T` windows. A batch of U windows then holds close to U users, as a
    per-example batch of the same targets does (without the first stage: ~48 users in 64
    windows at L=100 on the comparison's data, against ~106 in 256 per-example targets).

    Raises:
        ValueError: the files are not sequence-store target files.
    """
    from seminar_tf.data.dataset import list_shards
    files = list_shards(pattern)
    if not store.is_store(files):
        raise ValueError("timeline batches need the sequence store (preprocess with "
                         "--format store)")
    T = targets_per_timeline
    U = max(1, batch_size // T)
    ds = tf.data.Dataset.from_tensor_slices((files, [store.timeline_file(f) for f in files]))
    parallel = tf.data.AUTOTUNE  # ordered when `deterministic` (tf.data keeps map order)
    ds = ds.interleave(lambda f, tl: shard_chunks(f, tl, contract, T, shuffle_buffer, seed),
                       cycle_length=1 if deterministic else min(4, len(files)),
                       num_parallel_calls=parallel, deterministic=deterministic or None)
    if shuffle_buffer:
        ds = ds.shuffle(max(1, shuffle_buffer // T), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(U).map(lambda b: finish(contract, b), num_parallel_calls=parallel,
                         deterministic=deterministic or None)
    return store.prefetched(ds)


def expand(batch: Mapping[str, tf.Tensor], L: int):
    """A timeline batch -> per-target contract features with each target's (L, ...) history
    (all U*T rows, padding targets included, before masks) and (U*T, L) bool `valid`
    history positions; with `flat` (U, T*L) window positions for gathering per-window
    tensors (`gather_windows`). For GSUs without per-target masks (`call_expanded`) and
    for checks against the per-example input."""
    mask = batch["t_mask"]
    U, T = tf.shape(mask)[0], tf.shape(mask)[1]
    pos = batch["t_end"][..., None] - L + tf.range(L, dtype=tf.int64)  # (U, T, L)
    valid = pos >= batch["t_start"][..., None]
    flat = tf.reshape(tf.where(valid, pos, 0), [U, -1])
    valid = tf.reshape(valid, [U * T, L])

    def rows(x):  # (U, T, ...) -> (U*T, ...)
        return tf.reshape(x, tf.concat([[U * T], tf.shape(x)[2:]], 0))

    features = store.contract_features(
        {k: rows(batch[k]) for k in TARGET_KEYS},
        lambda k: store.masked(valid, gather_windows(batch[k], flat, L)), valid)
    return features, valid, flat


def gather_windows(col: tf.Tensor, flat: tf.Tensor, L: int) -> tf.Tensor:
    """Per-window tensor (U, W, ...) -> per-target histories (U*T, L, ...) at `flat`."""
    got = tf.gather(col, flat, batch_dims=1)  # (U, T*L, ...)
    return tf.reshape(got, tf.concat([[-1, L], tf.shape(col)[2:]], 0))


def to_examples(batch: Mapping[str, tf.Tensor], L: int) -> Dict[str, tf.Tensor]:
    """The per-example batch of a timeline batch's real targets (contract features before
    masks: `FeatureContract.finish` adds them), for tests and checks."""
    features, _, _ = expand(batch, L)
    real = tf.reshape(batch["t_mask"], [-1])
    return {k: tf.boolean_mask(v, real) for k, v in features.items()}
