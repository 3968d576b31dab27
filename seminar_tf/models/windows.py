"""Timeline batches through the forward core without per-target copies of the history.

A timeline batch (`seminar_tf.data.timelines`) holds U windows of W = L + T behaviours and T
targets per window, each reading its own causal slice [t_start, t_end) of its window. Two
formulations, equal to `LifelongRanker.call` on the per-example batch of the same targets:

* `call_windows` (every built-in GSU): the W behaviours are pair-encoded once per window
  (each distinct item of the batch through the item encoder once, `encode_distinct`);
  the GSU scores the window's keys for all T targets in one op (`Retrieval.call_many` with a
  per-target mask, `target_mask` (U, T, W): the target's slice, real behaviours only); the
  ESU reads each target's K retrieved behaviours and its S most recent ones, gathered from the
  window, with their values (pair + time-gap + source embeddings) built for those K + S
  positions only (time gaps depend on the target). Nothing of size (U*T, L, d) is built.
* `call_expanded` (GSUs without per-target masks, `Retrieval.target_masks = False`): the
  window encodings are copied into each target's (L, ...) history and `call` runs on them.

Same selection, same order: a target's slice holds its L-window's behaviours in the same
order, so `masked_top_k`'s tie rule (later first) picks the same behaviours; positions that
are not real are masked in the GSU, the ESU and the short-term mean on both paths.
"""
from __future__ import annotations

from typing import Dict, Tuple

import tensorflow as tf

from seminar_tf import features as F
from seminar_tf.data import store, timelines
from seminar_tf.layers.blocks import short_term_of, time_gap_buckets
from seminar_tf.layers.retrieval.base import rows, unrows

Outputs = Tuple[Dict[str, tf.Tensor], Dict[str, tf.Tensor], tf.Tensor]


def target_mask(batch, W: int) -> tf.Tensor:
    """(U, T, W) bool: window position w is in target t's history (its causal slice of at
    most L behaviours, real behaviours only)."""
    pos = tf.range(W, dtype=batch["t_end"].dtype)
    inside = ((pos >= batch["t_start"][..., None]) & (pos < batch["t_end"][..., None]))
    return inside & (batch["tl_items"] != F.PAD_ID)[:, None, :]


def window_values(model, batch, enc_pair, positions, valid):
    """Keys and values (U, T, P, d) of window positions (U, T, P) as each target sees them:
    pair encodings + the embeddings of the time gap to the target and of the source.

    The time gap is `store.time_gaps`, as for the per-example input, so both paths bucket
    the same seconds."""
    idx = tf.maximum(positions, 0)
    keys = tf.gather(enc_pair, idx, batch_dims=1)
    when = tf.gather(batch["tl_time_ms"], idx, batch_dims=1)
    gaps = store.time_gaps(batch["t_time_ms"][..., None], when)
    real = valid & (tf.gather(batch["tl_items"], idx, batch_dims=1) != F.PAD_ID)
    time_ids = tf.where(real, time_gap_buckets(tf.where(real, gaps, 0.0),
                                               model.config.model.time_buckets), 0)
    sources = tf.where(real, tf.gather(batch["tl_sources"], idx, batch_dims=1), 0)
    values = keys + model.time_embedding(time_ids) + model.source_embedding(sources)
    return keys, values


def encode_distinct(pair_encoder, items, attrs, query) -> Dict[str, tf.Tensor]:
    """`pair_encoder(items, attrs, query)` with each distinct (item, attributes) of the
    batch run through the item encoder once and gathered back: the item part does not
    depend on the behaviour, and lifelong histories repeat items (a scratch count on the
    generated benchmark data found ~8% of a batch's behaviours to be distinct items).
    Equal values; the gather's gradient sums the duplicates' gradients."""
    A = attrs.shape[-1]
    keyed = tf.concat([tf.reshape(items, [-1, 1]), tf.reshape(attrs, [-1, A])], 1)
    uniq, inv = tf.raw_ops.UniqueV2(x=keyed, axis=[0])
    enc = pair_encoder.item_encoder(uniq[None, :, 0], uniq[None, :, 1:])
    lead = tf.shape(items)
    enc = {k: tf.reshape(tf.gather(v[0], inv), tf.concat([lead, tf.shape(v)[2:]], 0))
           for k, v in enc.items()}
    return pair_encoder.with_query(enc, query)


def call_windows(model, batch, training=False) -> Outputs:
    """`LifelongRanker.call_timelines` for GSUs that take per-target masks (module
    docstring). Returns (outputs over all U*T rows, the targets' features, (U*T,) weights)."""
    m = model.config.model
    features = {k: rows(v) for k, v in batch["targets"].items()}  # (U*T, ...)
    shape = tf.shape(batch["t_mask"])  # [U, T]
    W = batch["tl_items"].shape[1] or tf.shape(batch["tl_items"])[1]
    enc = encode_distinct(model.pair_encoder, batch["tl_items"], batch["tl_attrs"],
                          batch["tl_query"])
    target_enc = model.encode_target(features)  # (U*T, ...)
    many = {k: unrows(v, shape) for k, v in target_enc.items()}
    mask = target_mask(batch, W)
    inputs = {"target": many["pair"], "target_query": many["query"],
              "target_item": unrows(features[F.TARGET_ITEM], shape),
              "target_attrs": unrows(features[F.TARGET_ATTRS], shape),
              "mask": batch["tl_items"] != F.PAD_ID, "target_mask": mask,
              "target_end": tf.cast(batch["t_end"], tf.int32),
              "hist_items": batch["tl_items"], "hist_query": batch["tl_query"],
              "hist_attrs": batch["tl_attrs"], "keys": enc["pair"]}
    if not model.gsu.built:  # call_many is called directly, not through Layer.__call__
        model.gsu.build(None)
    retrieved = model.gsu.call_many(inputs)
    idx, valid = retrieved["indices"], retrieved["valid"]
    keys_k, values_k = window_values(model, batch, enc["pair"], idx, valid)
    interest = model.esu(rows(many["pair"]), rows(keys_k), rows(valid), rows(values_k))
    S = m.short_term_len
    recent = (tf.cast(batch["t_end"], tf.int32)[..., None] - S
              + tf.range(S, dtype=tf.int32))  # (U, T, S): the S positions before the target
    recent_ok = tf.gather(mask, tf.maximum(recent, 0), batch_dims=2) & (recent >= 0)
    _, values_s = window_values(model, batch, enc["pair"], recent, recent_ok)
    short_term = short_term_of(rows(values_s), rows(recent_ok))
    summary = retrieved.get("summary")
    out = model.head(target_enc, interest, short_term, features[F.TARGET_SOURCE],
                     features[F.USER_ID], None if summary is None else rows(summary),
                     training)
    weights = tf.cast(tf.reshape(batch["t_mask"], [-1]), tf.float32)
    return out, features, weights


def call_expanded(model, batch, training=False) -> Outputs:
    """`LifelongRanker.call_timelines` for any GSU: each target's (L, ...) history of window
    encodings (padding behaviours' encoding where its slice is shorter than L, exactly what
    the per-example input encodes there), then `call`."""
    d = model.config.data
    L = d.max_seq_len
    features, valid, flat = timelines.expand(batch, L)
    features = F.FeatureContract.from_config(d).finish(features)
    enc = model.pair_encoder(batch["tl_items"], batch["tl_attrs"], batch["tl_query"])
    pad = model.pair_encoder(tf.zeros([1, 1], tf.int64),
                             tf.zeros([1, 1, d.num_attrs], tf.int64),
                             tf.zeros([1, 1, d.max_query_tokens], tf.int64))

    def windows(v, p):  # (U, W, ...) -> each target's (U*T, L, ...) window
        got = timelines.gather_windows(v, flat, L)
        keep = tf.reshape(valid, tf.concat([tf.shape(valid), tf.ones(
            [tf.rank(got) - 2], tf.int32)], 0))
        return tf.where(keep, got, p[0, 0])

    encoded = {k: windows(v, pad[k]) for k, v in enc.items()}
    weights = tf.cast(tf.reshape(batch["t_mask"], [-1]), tf.float32)
    return model(features, training=training, encoded=encoded), features, weights
