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
        # h_t = esu(pair_{t-1}, pairs before t): the history is projected once and each of
        # the T targets gets a causal mask over it (no T-fold copy of the (B, L, d) history)
        col = tf.range(L)
        causal = col[None, :] < tf.range(L - T, L)[:, None]  # (T, L)
        prefix = mask[:, None, :] & causal[None]  # (B, T, L)
        context = tf.reshape(psu.esu.attend_many(pairs[:, L - T - 1:L - 1], pairs, prefix,
                                                 batch.values), [B * T, d])
        valid = tf.reshape(mask[:, cols] & mask[:, L - T - 1:L - 1], [B * T])
        n_neg = cfg.train.psu_sampled_negatives
        neg_ids = tf.random.uniform([n_neg], F.FIRST_ID, cfg.data.item_vocab_size,
                                    dtype=tf.int64)
        neg = psu.pair_encoder(neg_ids, tf.zeros([n_neg, cfg.data.num_attrs], tf.int64),
                               tf.zeros([n_neg, cfg.data.max_query_tokens], tf.int64))
        return self.task(context, tf.reshape(pairs[:, cols], [B * T, d]), valid,
                         tf.reshape(batch.items[:, cols], [B * T]), neg["pair"], neg_ids,
                         batch.temperature)
