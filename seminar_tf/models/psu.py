"""The Pretraining Search Unit (PSU) and the pretrain -> finetune restore.

The PSU shares, by attribute name, the ranker's `pair_encoder` (modality encoders, gated
fusion, query encoder, pair fusion), its target attention `esu` and `source_embedding`. It is
trained on lifelong sequences of (query, item) pairs: every example's history, with the
`psu_positions` most recent positions of each sequence scored by the objectives of the
`seminar_tf.tasks.objectives` table, each with its own weight (0 switches it off):

- multi-modal alignment between the modality embeddings of the items at those positions
  (ID-text, ID-image, text-image, and query-item where a query exists);
- next query-item pair prediction: context h_t = esu(pair_{t-1}, pairs before t) scores the
  true pair at t against in-batch and random pairs;
- query-item relevance: each search behaviour's query against its clicked item, negatives
  from the batch and from the same sequence.

Pretraining itself and the restore into a ranker are workflows: `seminar_tf.workflows.pretraining`.
"""
from __future__ import annotations

from typing import Dict

import numpy as np

import tensorflow as tf
import tensorflow_recommenders as tfrs

from seminar_tf import features as F
from seminar_tf.config import SeminarConfig
from seminar_tf.layers.attention import MultiHeadTargetAttention
from seminar_tf.models.ranker import pair_encoder_for
from seminar_tf.models.windows import encode_distinct
from seminar_tf.tasks.objectives import OBJECTIVES, objective_class
from seminar_tf.tasks.objectives.base import Batch

SHARED = ("pair_encoder", "esu", "source_embedding")


class PretrainingSearchUnit(tfrs.models.Model):
    """PSU over lifelong (query, item) sequences.

    Args:
        config: `SeminarConfig` (or dict); the pair encoder is built without SEMINAR's G_m.

    Input: parsed feature dicts (`FeatureContract.parse_examples`); only the history is used.
    """

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        cfg = config if isinstance(config, SeminarConfig) else SeminarConfig.from_dict(config)
        self.config = cfg
        m, t = cfg.model, cfg.train
        self.pair_encoder = pair_encoder_for(cfg.replace(model={"use_projections": False}))
        self.esu = MultiHeadTargetAttention(m.num_heads, m.embedding_dim, m.embedding_dim,
                                            name="esu")
        self.source_embedding = tf.keras.layers.Embedding(3, m.embedding_dim,
                                                          name="source_embedding")
        if t.learn_temperature:
            self.log_temperature = self.add_weight(
                name="log_temperature", shape=(),
                initializer=tf.keras.initializers.Constant(np.log(t.temperature)))
        self.weights_by_objective = {k: float(w) for k, w in t.weights().items()}
        self.objectives = {k: objective_class(k)(name=k) for k in OBJECTIVES}
        self.loss_trackers = {k: tf.keras.metrics.Mean(name=f"{k}_loss") for k in OBJECTIVES}

    def temperature(self):
        if self.config.train.learn_temperature:
            return tf.exp(self.log_temperature)
        return tf.constant(self.config.train.temperature, tf.float32)

    def set_item_table(self, table: Dict[str, np.ndarray]) -> None:
        self.pair_encoder.item_encoder.set_item_table(table)

    def build_all(self) -> "PretrainingSearchUnit":
        d = self.config.data
        z = tf.zeros
        self.compute_loss({F.HIST_ITEMS: z([2, d.max_seq_len], tf.int64),
                           F.HIST_ATTRS: z([2, d.max_seq_len, d.num_attrs], tf.int64),
                           F.HIST_QUERY: z([2, d.max_seq_len, d.max_query_tokens], tf.int64),
                           F.HIST_SOURCES: z([2, d.max_seq_len], tf.int64)})
        return self

    def losses_of(self, features, training=False) -> Dict[str, tf.Tensor]:
        """The value (before weighting) of every objective with a weight > 0 on one batch
        (per-example or timeline, `seminar_tf.tasks.objectives.base.Batch`)."""
        L = self.config.data.max_seq_len
        P = self.config.train.psu_positions
        if "t_mask" in features:
            rows, scored_from = window_rows(features, P)
            width = rows["items"].shape[1]
            T = min(width - 1, features["t_mask"].shape[1] * P)
            scored = tf.range(width - T, width)[None, :] >= scored_from[:, None]
            users = features["user_id"][:, 0]
        else:
            T = min(P, L - 1)
            rows = {"items": features[F.HIST_ITEMS], "attrs": features[F.HIST_ATTRS],
                    "query": features[F.HIST_QUERY], "sources": features[F.HIST_SOURCES]}
            width, scored = L, True
            users = features.get(F.USER_ID, tf.range(tf.shape(rows["items"])[0],
                                                     dtype=tf.int64))
        items = rows["items"]
        mask = items != F.PAD_ID
        if "t_mask" in features:  # each distinct item of the windows encoded once
            enc = encode_distinct(self.pair_encoder, items, rows["attrs"], rows["query"])
        else:
            enc = self.pair_encoder(items, rows["attrs"], rows["query"])
        batch = Batch(items=items, mask=mask, enc=enc,
                      values=enc["pair"] + self.source_embedding(rows["sources"]),
                      cols=slice(width - T, width), T=T, temperature=self.temperature(),
                      features=features, scored=mask[:, width - T:] & scored, context=L,
                      row_users=users)
        return {k: obj.loss(self, batch) for k, obj in self.objectives.items()
                if self.weights_by_objective[k] > 0}

    def compute_loss(self, features, training=False):
        total = 0.0
        for k, v in self.losses_of(features, training).items():
            self.loss_trackers[k].update_state(v)
            total += self.weights_by_objective[k] * v
        return total

    def shared_checkpoint(self) -> tf.train.Checkpoint:
        return tf.train.Checkpoint(**{k: getattr(self, k) for k in SHARED})


def window_rows(batch, positions: int):
    """Timeline windows (`seminar_tf.data.timelines`) as right-aligned PSU rows.

    A window holds behaviours [a, a + n) of a user, left-aligned, and up to T' targets whose
    histories end at `t_end` (n = the last end). A per-example row scores its target's
    `positions` most recent behaviours, and the targets of a per-example batch are drawn
    apart, so their positions hardly overlap; a window scores as many distinct positions as
    its targets would: its `real targets x positions` most recent behaviours (after
    right-alignment, the columns from `W - real targets * positions` on), all encoded once.

    Returns:
        ({items, attrs, query, sources}: (U, W, ...) right-aligned, 0-padded on the left;
        (U,) int32 first scored column).
    """
    items = batch["tl_items"]
    W = items.shape[1]
    ends = tf.cast(batch["t_end"], tf.int32)
    last = tf.reduce_max(tf.where(batch["t_mask"], ends, 0), 1)
    shift = W - last  # column c holds window position c - shift
    src = tf.range(W)[None, :] - shift[:, None]
    ok = src >= 0

    def take(v):
        got = tf.gather(v, tf.maximum(src, 0), batch_dims=1)
        keep = tf.reshape(ok, tf.concat([tf.shape(ok), tf.ones([tf.rank(got) - 2],
                                                                tf.int32)], 0))
        return tf.where(keep, got, tf.zeros([], got.dtype))

    rows = {"items": take(items), "attrs": take(batch["tl_attrs"]),
            "query": take(batch["tl_query"]), "sources": take(batch["tl_sources"])}
    real = tf.reduce_sum(tf.cast(batch["t_mask"], tf.int32), 1)
    return rows, W - real * positions
