"""The lifelong-sequence ranker: encoders -> GSU (top-K) -> ESU -> multi-task MLP towers.

One class serves SEMINAR and every baseline; `seminar_tf.models.registry` maps model names to
configurations (GSU kind, modalities, projections).
"""
from __future__ import annotations

from typing import Dict

import numpy as np

import tensorflow as tf
import tensorflow_recommenders as tfrs

from seminar_tf import features as F
from seminar_tf.config import SeminarConfig
from seminar_tf.layers.attention import MultiHeadTargetAttention
from seminar_tf.layers.blocks import mlp, short_term_of, time_gap_buckets  # noqa: F401
from seminar_tf.layers.encoders import QueryItemPairEncoder
from seminar_tf.layers.retrieval import build_retrieval, retrieval_top_k
from seminar_tf.layers.retrieval.base import (TARGET_KEYS, Retrieval, per_candidate, rows,
                                              union_positions)
from seminar_tf.models import windows

from seminar_tf.serialization import register  # noqa: E402


def pair_encoder_for(cfg: SeminarConfig, name: str = "pair_encoder") -> QueryItemPairEncoder:
    """The (query, item) encoder of a config (shared by the ranker and the PSU)."""
    d, m = cfg.data, cfg.model
    return QueryItemPairEncoder(
        item_encoder=dict(modalities=list(m.modalities), num_items=d.item_vocab_size,
                          attr_vocab_size=d.attr_vocab_size,
                          query_vocab_size=d.query_vocab_size, dim=m.embedding_dim,
                          text_dim=d.text_dim, image_dim=d.image_dim,
                          title_tokens=d.title_tokens, projections=m.use_projections),
        query_vocab_size=d.query_vocab_size, dim=m.embedding_dim, alpha=m.pair_alpha,
        name=name)


@register
class LifelongRanker(tfrs.models.Model):
    """Ranker over lifelong histories with a pluggable GSU and multi-task towers.

    Args:
        config: a `SeminarConfig` or its dict.

    Input: the dict of `FeatureContract.parse_examples` (B examples, L, Q, A as configured).
    Output: dict of per-task logits `{task: (B,)}`, `logit` (B,) routed by the target's
        source (search -> "search" task, recommendation -> "ctr"), `score` = sigmoid(logit).
    """

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        cfg = config if isinstance(config, SeminarConfig) else SeminarConfig.from_dict(config)
        self.config = cfg
        d, m = cfg.data, cfg.model
        dim = m.embedding_dim
        self.pair_encoder = pair_encoder_for(cfg)
        self.time_embedding = tf.keras.layers.Embedding(m.time_buckets + 1, dim,
                                                        name="time_embedding")
        self.source_embedding = tf.keras.layers.Embedding(3, dim, name="source_embedding")
        self.user_embedding = (tf.keras.layers.Embedding(d.user_vocab_size, dim,
                                                         name="user_embedding")
                               if m.use_user_embedding else None)
        self.esu = MultiHeadTargetAttention(m.num_heads, dim, dim, name="esu")
        self.top_k = retrieval_top_k(m.gsu, cfg)
        # rank path: gather each candidate's K raw keys / values (the ESU projects none),
        # or, where K is at least half of L, one dense product over all L with a selection
        # mask (a scratch timing on 2 cores, N=100, d=64, H=4, found gathering faster at
        # every L >= 1,000 tried; not a benchmark script)
        self.rank_dense_esu = d.max_seq_len <= 2 * self.top_k
        self.gsu = self._build_gsu()
        self.static_shapes = False
        # `rank` encodes each distinct history item of its rows once (False: every behaviour,
        # the same values; kept as the benchmarks' baseline)
        self.distinct_history = True
        self.bottom = mlp(m.mlp_units, m.dropout, "bottom")
        self.towers = {t: tf.keras.Sequential(
            [mlp(m.tower_units, m.dropout, f"{t}_tower"),
             tf.keras.layers.Dense(1, name=f"{t}_logit")], name=f"{t}_head") for t in m.tasks}
        self.ranking_tasks = {t: tfrs.tasks.Ranking(
            # summed here and divided by the all-replica count of real targets in
            # compute_loss, so that gradients summed across replicas (tf.distribute) equal
            # the single-device mean
            loss=tf.keras.losses.BinaryCrossentropy(
                from_logits=True, reduction=tf.keras.losses.Reduction.SUM),
            metrics=[tf.keras.metrics.AUC(from_logits=True, name=f"{t}_auc")],
            name=f"{t}_task") for t in m.tasks}
        self.auc = tf.keras.metrics.AUC(from_logits=True, name="auc")

    def _build_gsu(self):
        return build_retrieval(self.config.model.gsu, self)

    # ------------------------------------------------------------------ building
    def set_item_table(self, table: Dict[str, np.ndarray]) -> None:
        """Loads the frozen pretrained vectors / titles of the item table."""
        self.pair_encoder.item_encoder.set_item_table(table)

    def dummy_batch(self, batch: int = 2) -> Dict[str, tf.Tensor]:
        d = self.config.data
        L, Q, A = d.max_seq_len, d.max_query_tokens, d.num_attrs
        z = lambda *s: tf.zeros(s, tf.int64)  # noqa: E731
        feats = {F.USER_ID: z(batch), F.TARGET_ITEM: z(batch), F.TARGET_QUERY: z(batch, Q),
                 F.TARGET_ATTRS: z(batch, A), F.TARGET_SOURCE: tf.ones([batch], tf.int64),
                 F.HIST_ITEMS: z(batch, L), F.HIST_QUERY: z(batch, L, Q),
                 F.HIST_ATTRS: z(batch, L, A), F.HIST_SOURCES: z(batch, L),
                 F.HIST_TIME_GAPS: tf.zeros([batch, L])}
        return feats

    def build_all(self) -> "LifelongRanker":
        """Creates every variable by calling the model once on a padding batch."""
        self(self.dummy_batch(), training=False)
        return self

    # ------------------------------------------------------------------- forward
    def encode_target(self, features):
        return self.pair_encoder(features[F.TARGET_ITEM], features[F.TARGET_ATTRS],
                                 features[F.TARGET_QUERY])

    def encode_behaviours(self, features, positions=None, encoded=None):
        """Keys (pair vectors), values (+ time gap and source) and mask of history positions.

        Args:
            features: parsed features.
            positions: optional (B, P) int positions to encode (default: all L).
            encoded: optional pair-encoder outputs of the whole history (B, L, ...), already
                computed (timeline batches encode each behaviour once per window).

        Returns:
            dict of encoded (pair encoder outputs), keys (B, P, d), values (B, P, d),
            mask (B, P) bool.
        """
        take = (lambda x: x) if positions is None else (
            lambda x: tf.gather(x, positions, batch_dims=1))
        items = take(features[F.HIST_ITEMS])
        enc = (self.pair_encoder(items, take(features[F.HIST_ATTRS]),
                                 take(features[F.HIST_QUERY])) if encoded is None
               else {k: take(v) for k, v in encoded.items()})
        mask = items != F.PAD_ID
        time_ids = time_gap_buckets(take(features[F.HIST_TIME_GAPS]),
                                    self.config.model.time_buckets)
        time_ids = tf.where(mask, time_ids, 0)
        values = (enc["pair"] + self.time_embedding(time_ids)
                  + self.source_embedding(take(features[F.HIST_SOURCES])))
        return {"encoded": enc, "keys": enc["pair"], "values": values, "mask": mask}

    def retrieval_inputs(self, features, target_enc, history=None, many=False):
        """The GSU's input dict (`seminar_tf.layers.retrieval`): the history entries of
        `features` (B rows) and the targets, per row (B, ...) or, with `many`, with an N axis
        (B, N, ...) as `target_enc` and the candidate fields of `features` carry."""
        inputs = {"target": target_enc["pair"], "target_query": target_enc["query"],
                  "target_item": features[F.TARGET_ITEM],
                  "target_attrs": features[F.TARGET_ATTRS],
                  "mask": features[F.HIST_ITEMS] != F.PAD_ID,
                  "hist_items": features[F.HIST_ITEMS], "hist_query": features[F.HIST_QUERY],
                  "hist_attrs": features[F.HIST_ATTRS]}
        if many:  # the query is the context's, one per row
            inputs["row_query"] = target_enc["query"][:, 0]
        if history is not None:
            inputs["keys"] = history["keys"]
        return inputs

    def selection_determined(self, features, delta: float) -> np.ndarray:
        """(B,) bool, eagerly: examples whose GSU selection no relative float noise of
        `delta` in the GSU scores can change (`Retrieval.determined`); where it can, two
        formulations of the model (per-candidate and `rank`, XLA and not) may retrieve
        different near-tied behaviours."""
        history = self.encode_behaviours(features) if self.gsu.needs_keys else None
        return self.gsu.determined(
            self.retrieval_inputs(features, self.encode_target(features), history), delta)

    def use_static_shapes(self, static: bool = True) -> None:
        """Called by `seminar export --xla`: static-shape formulations (XLA pads a dynamic
        shape to its bound), here and in the GSU."""
        self.static_shapes = static
        self.pair_encoder.query_encoder.sparse = not static
        self.gsu.use_static_shapes(static)

    def retrieve(self, features, target_enc=None, history=None):
        """GSU output for one target per row: indices (B, K), scores (B, K), valid (B, K)."""
        target_enc = target_enc or self.encode_target(features)
        if history is None and self.gsu.needs_keys:
            history = self.encode_behaviours(features)
        return self.gsu(self.retrieval_inputs(features, target_enc, history))

    def call(self, features, training=False, encoded=None):
        """Scores B examples: the forward core with one candidate per row (`encoded`:
        optional precomputed pair encodings of the histories, see `encode_behaviours`)."""
        target_enc = self.encode_target(features)
        one = {k: v[:, None] for k, v in target_enc.items()}
        out = self.forward(features, one, features[F.TARGET_ITEM][:, None],
                           features[F.TARGET_ATTRS][:, None], training, encoded)
        return {k: v[:, 0] for k, v in out.items()}

    def rank(self, context, candidates, training=False):
        """Scores N candidates against one shared context (history, user, query) per row.

        The history is encoded once per row, the GSU scores all N candidates in one op
        (`Retrieval.call_many`), and the ESU attends, per candidate, over its own K retrieved
        behaviours (`forward`). Equal to `call` on the N per-candidate examples (each carrying
        the context's history, user, query and source).

        Args:
            context: dict (B rows) with USER_ID (B,), TARGET_QUERY (B, Q), TARGET_SOURCE
                (B,) and the history features (B, L, ...) of the feature contract.
            candidates: dict with TARGET_ITEM (B, N) and TARGET_ATTRS (B, N, A).

        Returns:
            dict of per-task logits, `logit` and `score`, each (B, N).
        """
        items, attrs = candidates[F.TARGET_ITEM], candidates[F.TARGET_ATTRS]
        N = tf.shape(items)[1]
        target_enc = per_candidate(self.pair_encoder, items, attrs,
                                   tf.repeat(context[F.TARGET_QUERY][:, None], N, axis=1))
        encoded = None
        if self.gsu.needs_keys and self.distinct_history and not self.static_shapes:
            # the whole history is encoded: each distinct (item, attributes) of the rows once
            # (lifelong histories repeat items); XLA exports keep the static-shape encoder
            encoded = windows.encode_distinct(self.pair_encoder, context[F.HIST_ITEMS],
                                              context[F.HIST_ATTRS], context[F.HIST_QUERY])
        return self.forward(context, target_enc, items, attrs, training, encoded)

    def forward(self, context, target_enc, items, attrs, training=False, encoded=None):
        """The one forward core, from (history, targets) to scores: `call` (N = 1), `rank`
        and timeline batches (`call` with the windows' encodings) all run it.

        Args:
            context: dict of B rows: USER_ID, TARGET_SOURCE and the history features.
            target_enc: pair-encoder outputs of the targets, each (B, N, ...).
            items, attrs: the targets' TARGET_ITEM (B, N) and TARGET_ATTRS (B, N, A).
            encoded: optional precomputed pair encodings of the histories (B, L, ...).

        Returns:
            dict of per-task logits, `logit` and `score`, each (B, N).

        The GSU scores all N targets against the history (`call_many`). A GSU that scores
        the float keys of the whole history gets them encoded once per row; otherwise only the
        union of the retrieved positions and the short-term window is encoded, once per row
        (`union_positions`). With one target per row the ESU projects only its K behaviours;
        with N, it projects what was encoded once and each target attends over its own K
        (dense with a selection mask where K is a large share of the encoded length,
        `rank_dense_esu`, else gathered).
        """
        features = dict(context, **{F.TARGET_ITEM: items, F.TARGET_ATTRS: attrs})
        history = self.encode_behaviours(context, encoded=encoded) if self.gsu.needs_keys \
            else None
        retrieved = self.forward_retrieve(features, target_enc, history)
        history, idx = self.forward_history(context, history, retrieved, encoded)
        return self.forward_interest(context, target_enc, history, idx, retrieved, training)

    def forward_retrieve(self, features, target_enc, history=None):
        """Stage 1 of `forward`: the GSU over all N targets (B, N, K) (`history`: the
        encoded whole history where the GSU needs its float keys)."""
        return self._retrieve_many(self.retrieval_inputs(features, target_enc, history,
                                                         many=True))

    def forward_history(self, context, history, retrieved, encoded=None):
        """Stage 2 of `forward`: the encoded behaviours the ESU reads, and the retrieved
        indices into them: the whole history if already encoded (or under static shapes),
        else the union of the retrieved positions and the short-term window."""
        idx = retrieved["indices"]
        if history is None:
            positions = None
            if not self.static_shapes:  # XLA pads a dynamic length to L: encode all
                positions, idx = union_positions(idx, retrieved["valid"],
                                                 self.config.data.max_seq_len,
                                                 self.config.model.short_term_len)
            history = self.encode_behaviours(context, positions, encoded)
        return history, idx

    def forward_interest(self, context, target_enc, history, idx, retrieved, training=False):
        """Stage 3 of `forward`: the ESU over each target's K behaviours, the short-term
        summary, bottom MLP and towers: outputs (B, N)."""
        S = self.config.model.short_term_len
        if target_enc["pair"].shape[1] == 1:  # one target per row: project only its K
            keys_k = tf.gather(history["keys"], idx[:, 0], batch_dims=1)
            values_k = tf.gather(history["values"], idx[:, 0], batch_dims=1)
            interest = self.esu(target_enc["pair"][:, 0], keys_k, retrieved["valid"][:, 0],
                                values_k)[:, None]
        else:  # N targets over one encoded history, each over its own K
            attend = (self.esu.attend_selected if self.rank_dense_esu
                      else self.esu.attend_gathered)
            interest = attend(target_enc["pair"], history["keys"], history["values"], idx,
                              retrieved["valid"])
        short_term = short_term_of(history["values"][:, -S:], history["mask"][:, -S:])
        shape = tf.shape(idx)[:2]

        def repeat(x):  # (B, ...) -> (B*N, ...)
            return tf.repeat(x, shape[1], axis=0)

        summary = retrieved.get("summary")
        out = self.head({k: rows(v) for k, v in target_enc.items()}, rows(interest),
                        repeat(short_term), repeat(context[F.TARGET_SOURCE]),
                        repeat(context[F.USER_ID]),
                        None if summary is None else rows(summary), training)
        return {k: tf.reshape(v, shape) for k, v in out.items()}

    def _retrieve_many(self, inputs):
        """`call_many`, or for one target per row a GSU's own per-target `call` where it
        declares one (it overrides `Retrieval.call`: PQ's per-target lookup tables,
        benchmarks/gsu_per_target.py)."""
        if not self.gsu.built:  # call_many is called directly, not through Layer.__call__
            self.gsu.build(None)
        if inputs["target_item"].shape[1] == 1 and type(self.gsu).call is not Retrieval.call:
            one = {k: (v[:, 0] if k in TARGET_KEYS else v) for k, v in inputs.items()
                   if k != "row_query"}
            return {k: v[:, None] for k, v in self.gsu(one).items()}
        return self.gsu.call_many(inputs)

    def head(self, target_enc, interest, short_term, source, user_id, summary=None,
             training=False):
        """Bottom MLP and task towers on per-target parts (all (B, ...) rows)."""
        target = target_enc["pair"]
        parts = [target, target_enc["item"], target_enc["query"], interest,
                 target * interest, short_term, self.source_embedding(source)]
        if self.user_embedding is not None:
            parts.append(self.user_embedding(user_id))
        if summary is not None:
            parts.append(summary)
        h = self.bottom(tf.concat(parts, -1), training=training)
        logits = {t: tf.squeeze(tower(h, training=training), -1)
                  for t, tower in self.towers.items()}
        out = dict(logits)
        out["logit"] = self.route(logits, source)
        out["score"] = tf.sigmoid(out["logit"])
        return out

    def route(self, logits, source):
        tasks = self.config.model.tasks
        if len(tasks) == 1:
            return logits[tasks[0]]
        return tf.where(source == F.SOURCE_SEARCH, logits["search"], logits["ctr"])

    def task_weights(self, source) -> Dict[str, tf.Tensor]:
        tasks = self.config.model.tasks
        if len(tasks) == 1:
            return {tasks[0]: tf.ones_like(source, tf.float32)}
        return {"ctr": tf.cast(source != F.SOURCE_SEARCH, tf.float32),
                "search": tf.cast(source == F.SOURCE_SEARCH, tf.float32)}

    def call_timelines(self, batch, training=False):
        """Scores a timeline batch (`seminar_tf.data.timelines`): each window is encoded
        once for its T targets, each of which reads its own causal slice of the window
        (`seminar_tf.models.windows`: the GSU scores the window once for all T targets where
        it takes per-target masks). Equal to `call` on the per-example batch.

        Args:
            batch: a finished timeline batch (`seminar_tf.data.timelines.finish`): the
                windows (`tl_*`, (U, W, ...)), the targets' fields (U, T, ...), `t_start`
                / `t_end` / `t_mask` (U, T) and `targets` (the U*T targets' own features).

        Returns:
            (outputs of `call` over all U*T rows, the targets' features, (U*T,) float
            weights: 1 for real targets).
        """
        if self.gsu.target_masks:
            return windows.call_windows(self, batch, training)
        return windows.call_expanded(self, batch, training)

    def compute_loss(self, features, training=False):
        """Mean loss over the batch's targets: per-example batches, or timeline batches
        (`t_mask` present; padding targets weigh 0)."""
        if "t_mask" in features:
            out, features, weights = self.call_timelines(features, training)
        else:
            out = self(features, training=training)
            weights = tf.ones_like(features[F.LABEL], tf.float32)
        labels = tf.cast(features[F.LABEL], tf.float32)
        # a mean over the real targets of *all* replicas: each replica divides its sum by the
        # all-reduced count, so the gradients summed across replicas equal the single-device
        # mean even where replicas carry different numbers of real targets (timeline batches)
        count = tf.reduce_sum(weights)
        ctx = tf.distribute.get_replica_context()
        if ctx is not None and ctx.num_replicas_in_sync > 1:
            count = ctx.all_reduce(tf.distribute.ReduceOp.SUM, count)
        loss = 0.0
        for t, w in self.task_weights(features[F.TARGET_SOURCE]).items():
            loss += self.ranking_tasks[t](labels=labels[:, None], predictions=out[t][:, None],
                                          sample_weight=w * weights, training=training)
        self.auc.update_state(labels, out["logit"], sample_weight=weights)
        return loss / tf.maximum(count, 1.0)

    def get_config(self):
        return {"config": self.config.to_dict()}
