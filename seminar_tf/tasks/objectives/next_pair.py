"""Next query-item pair prediction: the context h_t = esu(pair_{t-1}, pairs before t) scores
the true pair at t against in-batch and random pairs."""
from __future__ import annotations

import tensorflow as tf

from seminar_tf import features as F
from seminar_tf.tasks.objectives.base import Batch, Objective
from seminar_tf.tasks.psu import NextPairTask


class NextPairObjective(Objective):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.task = NextPairTask("next_pair")

    def loss(self, psu, batch: Batch) -> tf.Tensor:
        cfg, T, cols = psu.config, batch.T, batch.cols
        L = cfg.data.max_seq_len
        pairs, mask = batch.enc["pair"], batch.mask
        B = tf.shape(batch.items)[0]
        d = pairs.shape[-1]
        col = tf.range(L)
        targets = tf.reshape(pairs[:, L - T - 1:L - 1], [B * T, d])
        tiled_keys = tf.repeat(pairs, T, axis=0)
        tiled_values = tf.repeat(batch.values, T, axis=0)
        t_idx = tf.tile(tf.range(L - T, L), [B])
        prefix = tf.repeat(mask, T, axis=0) & (col[None, :] < t_idx[:, None])
        context = psu.esu(targets, tiled_keys, prefix, tiled_values)
        valid = tf.reshape(mask[:, cols] & mask[:, L - T - 1:L - 1], [B * T])
        n_neg = cfg.train.psu_sampled_negatives
        neg_ids = tf.random.uniform([n_neg], F.FIRST_ID, cfg.data.item_vocab_size,
                                    dtype=tf.int64)
        neg = psu.pair_encoder(neg_ids, tf.zeros([n_neg, cfg.data.num_attrs], tf.int64),
                               tf.zeros([n_neg, cfg.data.max_query_tokens], tf.int64))
        return self.task(context, tf.reshape(pairs[:, cols], [B * T, d]), valid,
                         tf.reshape(batch.items[:, cols], [B * T]), neg["pair"], neg_ids,
                         batch.temperature)
