"""The Pretraining Search Unit (PSU) and the pretrain -> finetune restore.

The PSU shares, by attribute name, the ranker's `pair_encoder` (modality encoders, gated
fusion, query encoder, pair fusion), its target attention `esu` and `source_embedding`. It is
trained on lifelong sequences of (query, item) pairs: every example's history, with the
`psu_positions` most recent positions of each sequence scored by three objectives
(`seminar_tf.tasks.psu`), each with its own weight (0 switches it off):

- multi-modal alignment between the modality embeddings of the items at those positions
  (ID-text, ID-image, text-image, and query-item where a query exists);
- next query-item pair prediction: context h_t = esu(pair_{t-1}, pairs before t) scores the
  true pair at t against in-batch and random pairs;
- query-item relevance: each search behaviour's query against its clicked item, negatives
  from the batch and from the same sequence.

`restore_into_ranker` loads those weights into a `LifelongRanker` (SEMINAR's projections G_m
stay at their identity initialisation) and fails if any expected weight is not restored.
"""
from __future__ import annotations

import json
import os
import time
from typing import Dict, List, Optional

import numpy as np

import tensorflow as tf
import tensorflow_recommenders as tfrs

from seminar_tf import features as F
from seminar_tf.config import SeminarConfig
from seminar_tf.layers.attention import MultiHeadTargetAttention
from seminar_tf.models.ranker import pair_encoder_for
from seminar_tf.tasks.psu import (MultiModalAlignmentTask, NextPairTask,
                                  QueryItemRelevanceTask)

SHARED = ("pair_encoder", "esu", "source_embedding")
MODALITY_PAIRS = (("id", "text"), ("id", "image"), ("text", "image"))


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
        self.alignment = MultiModalAlignmentTask("alignment")
        self.next_pair = NextPairTask("next_pair")
        self.relevance = QueryItemRelevanceTask("relevance")
        self.loss_trackers = {k: tf.keras.metrics.Mean(name=f"{k}_loss")
                              for k in ("alignment", "next_pair", "relevance")}

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
        """The three objective values (before weighting) on one batch."""
        cfg, tau = self.config, self.temperature()
        L = cfg.data.max_seq_len
        T = min(cfg.train.psu_positions, L - 1)
        items = features[F.HIST_ITEMS]
        mask = items != F.PAD_ID
        enc = self.pair_encoder(items, features[F.HIST_ATTRS], features[F.HIST_QUERY])
        pairs = enc["pair"]
        values = pairs + self.source_embedding(features[F.HIST_SOURCES])
        B = tf.shape(items)[0]
        d = pairs.shape[-1]
        cols = slice(L - T, L)
        pos_items = items[:, cols]
        pos_mask = mask[:, cols]
        out = {}
        w = cfg.train

        if w.alignment_weight > 0:
            mods = list(self.pair_encoder.item_encoder.modalities)
            raw = tf.reshape(enc["raw"][:, cols], [B * T, len(mods), d])
            valid = tf.reshape(enc["valid"][:, cols], [B * T, len(mods)])
            ids = tf.reshape(pos_items, [B * T])
            terms = []
            for a, b in MODALITY_PAIRS:
                if a in mods and b in mods:
                    i, j = mods.index(a), mods.index(b)
                    terms.append(self.alignment(raw[:, i], raw[:, j], valid[:, i] & valid[:, j],
                                                ids, tau))
            has_q = tf.reshape(enc["has_query"][:, cols] & pos_mask, [B * T])
            terms.append(self.alignment(tf.reshape(enc["query"][:, cols], [B * T, d]),
                                        tf.reshape(enc["item"][:, cols], [B * T, d]), has_q,
                                        ids, tau))
            out["alignment"] = tf.add_n(terms) / float(len(terms))

        if w.next_pair_weight > 0:
            # context for position t: the ESU with the previous pair as target over pairs < t
            col = tf.range(L)
            targets = tf.reshape(pairs[:, L - T - 1:L - 1], [B * T, d])
            tiled_keys = tf.repeat(pairs, T, axis=0)
            tiled_values = tf.repeat(values, T, axis=0)
            t_idx = tf.tile(tf.range(L - T, L), [B])
            prefix = tf.repeat(mask, T, axis=0) & (col[None, :] < t_idx[:, None])
            context = self.esu(targets, tiled_keys, prefix, tiled_values)
            valid = tf.reshape(pos_mask & mask[:, L - T - 1:L - 1], [B * T])
            n_neg = cfg.train.psu_sampled_negatives
            neg_ids = tf.random.uniform([n_neg], F.FIRST_ID, cfg.data.item_vocab_size,
                                        dtype=tf.int64)
            neg_attrs = tf.zeros([n_neg, cfg.data.num_attrs], tf.int64)
            neg = self.pair_encoder(neg_ids, neg_attrs,
                                    tf.zeros([n_neg, cfg.data.max_query_tokens], tf.int64))
            out["next_pair"] = self.next_pair(
                context, tf.reshape(pairs[:, cols], [B * T, d]), valid,
                tf.reshape(pos_items, [B * T]), neg["pair"], neg_ids, tau)

        if w.relevance_weight > 0:
            out["relevance"] = self.relevance(
                enc["query"][:, cols], enc["item"][:, cols],
                enc["has_query"][:, cols] & pos_mask, pos_items, enc["item"], items, mask, tau)
        return out

    def compute_loss(self, features, training=False):
        losses = self.losses_of(features, training)
        weights = {"alignment": self.config.train.alignment_weight,
                   "next_pair": self.config.train.next_pair_weight,
                   "relevance": self.config.train.relevance_weight}
        total = 0.0
        for k, v in losses.items():
            self.loss_trackers[k].update_state(v)
            total += weights[k] * v
        return total

    def shared_checkpoint(self) -> tf.train.Checkpoint:
        return tf.train.Checkpoint(**{k: getattr(self, k) for k in SHARED})


def pretrain(data_dir: str, out_dir: str, cfg: SeminarConfig, *, verbose: int = 1,
             steps: Optional[int] = None) -> Dict:
    """Pretrains a PSU on the training split's histories; writes `out_dir`.

    Writes `psu/ckpt-*` (the shared weights), `config.json`, `pretrain.json` (loss history,
    alignment statistics before and after, timings).
    """
    from seminar_tf.data.dataset import make_dataset, split_pattern
    from seminar_tf.training import contract_of, load_item_table
    tf.keras.utils.set_random_seed(cfg.train.seed)
    os.makedirs(out_dir, exist_ok=True)
    table = load_item_table(data_dir)
    psu = PretrainingSearchUnit(cfg)
    psu.set_item_table(table)
    psu.build_all()
    before = alignment_report(psu, table)
    psu.compile(optimizer=tf.keras.optimizers.Adam(cfg.train.learning_rate))
    t = cfg.train
    ds = make_dataset(split_pattern(data_dir, "train"), contract_of(cfg),
                      batch_size=t.batch_size, shuffle_buffer=t.shuffle_buffer, seed=t.seed,
                      repeat=(steps or t.steps_per_epoch) is not None, drop_remainder=True)
    t0 = time.time()
    hist = psu.fit(ds, epochs=t.epochs if steps is None else 1,
                   steps_per_epoch=steps or t.steps_per_epoch, verbose=verbose,
                   callbacks=[tf.keras.callbacks.TerminateOnNaN()])
    seconds = time.time() - t0
    after = alignment_report(psu, table)
    psu.shared_checkpoint().save(os.path.join(out_dir, "psu", "ckpt"))
    with open(os.path.join(out_dir, "config.json"), "w", encoding="utf-8") as f:
        f.write(cfg.to_json())
    result = {"history": {k: [float(x) for x in v] for k, v in hist.history.items()},
              "seconds": round(seconds, 2), "alignment_before": before,
              "alignment_after": after}
    with open(os.path.join(out_dir, "pretrain.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2, sort_keys=True)
    return result


def alignment_report(model, table: Dict[str, np.ndarray], max_items: int = 5000,
                     k: int = 10) -> Dict[str, float]:
    """Mean cosine between the text and image embeddings of the same item, and recall@k of
    text -> image retrieval across items (items having both vectors)."""
    enc = model.pair_encoder.item_encoder
    if "text" not in enc.modalities or "image" not in enc.modalities:
        return {}
    both = np.flatnonzero(table["text_mask"] & table["image_mask"])[:max_items]
    if len(both) < 2:
        return {}
    ids = tf.constant(both, tf.int64)
    text, _ = enc.text_encoder(ids)
    image, _ = enc.image_encoder(ids)
    t = tf.math.l2_normalize(text, -1).numpy()
    v = tf.math.l2_normalize(image, -1).numpy()
    cos = float(np.mean(np.sum(t * v, -1)))
    sims = t @ v.T
    own = np.diag(sims)
    rank = np.sum(sims > own[:, None], 1)
    return {"mean_cosine_text_image": cos, f"recall@{k}_text_to_image": float(
        np.mean(rank < k)), "items": int(len(both))}


def restore_into_ranker(ranker, psu_dir: str, freeze: bool = False) -> List[str]:
    """Restores the PSU's encoders, fusion, attention and source embedding into `ranker`.

    Returns the restored variable paths. Raises if any weight saved by the PSU has no
    counterpart in the ranker or was not restored, or if nothing was restored.
    """
    path = tf.train.latest_checkpoint(os.path.join(psu_dir, "psu"))
    if path is None:
        raise FileNotFoundError(f"no PSU checkpoint under {psu_dir}/psu: run "
                                "`seminar pretrain` first")
    ckpt = tf.train.Checkpoint(**{k: getattr(ranker, k) for k in SHARED})
    # SEMINAR's G_m exist only in the ranker (identity init); every saved weight is checked
    # below against its ranker counterpart instead of asserting a one-to-one object match.
    ckpt.restore(path).expect_partial()
    saved = [name for name, _ in tf.train.list_variables(path)
             if name.split("/")[0] in SHARED and name.endswith(".ATTRIBUTES/VARIABLE_VALUE")]
    reader = tf.train.load_checkpoint(path)
    restored = []
    lookup = _variable_paths(ranker)
    missing = []
    for name in saved:
        key = name[:-len("/.ATTRIBUTES/VARIABLE_VALUE")]
        var = lookup.get(key)
        if var is None or not np.array_equal(var.numpy(), reader.get_tensor(name)):
            missing.append(key)
        else:
            restored.append(key)
    if missing or not restored:
        raise RuntimeError(f"PSU weights not restored into the ranker: {missing or 'none'}")
    if freeze:
        enc = ranker.pair_encoder
        for layer in (enc.query_encoder, ranker.esu, ranker.source_embedding,
                      enc.item_encoder.fusion):
            layer.trainable = False
        for name in ("id_embedding", "text_encoder", "image_encoder", "attr_encoder"):
            if hasattr(enc.item_encoder, name):
                getattr(enc.item_encoder, name).trainable = False
    return restored


def _variable_paths(ranker) -> Dict[str, tf.Variable]:
    """Checkpoint paths (as saved by `shared_checkpoint`) of the ranker's shared variables."""
    from tensorflow.python.checkpoint import graph_view  # stable in TF 2.x
    root = tf.train.Checkpoint(**{k: getattr(ranker, k) for k in SHARED})
    out = {}
    view = graph_view.ObjectGraphView(root)
    objects, paths = view.breadth_first_traversal()
    for obj in objects:
        if isinstance(obj, tf.Variable):
            path = "/".join(ref.name for ref in paths[obj])
            out[path] = obj
    return out
