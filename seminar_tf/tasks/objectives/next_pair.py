"""Next query-item pair prediction: the context h_t = esu(pair_{t-1}, pairs before t) scores
the true pair at t against in-batch pairs and real pairs sampled from other users' histories
in the batch (real attributes, queries and modalities; the row's own user excluded: with
per-example batches, its row; with timeline batches, every window of the same user)."""
from __future__ import annotations

import tensorflow as tf

from seminar_tf.tasks.objectives.base import Batch, Objective
from seminar_tf.tasks.psu import NextPairTask


class NextPairObjective(Objective):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.task = NextPairTask("next_pair")

    def loss(self, psu, batch: Batch) -> tf.Tensor:
        cfg, T, cols = psu.config, batch.T, batch.cols
        pairs, mask = batch.enc["pair"], batch.mask
        B = tf.shape(batch.items)[0]
        L = batch.items.shape[1]
        d = pairs.shape[-1]
        # h_t = esu(pair_{t-1}, the `context` pairs before t): the rows are projected once
        # and each of the T scored columns gets a causal mask over them (no T-fold copy)
        col = tf.range(L)
        at = tf.range(L - T, L)[:, None]
        causal = (col[None, :] < at) & (col[None, :] >= at - batch.context)  # (T, L)
        prefix = mask[:, None, :] & causal[None]  # (B, T, L)
        context = tf.reshape(psu.esu.attend_many(pairs[:, L - T - 1:L - 1], pairs, prefix,
                                                 batch.values), [B * T, d])
        valid = tf.reshape(batch.scored & mask[:, L - T - 1:L - 1], [B * T])
        pick, usable = self.sample_positions(mask, cfg.train.psu_sampled_negatives)
        neg_pairs = tf.gather(tf.reshape(pairs, [-1, d]), pick)
        neg_ids = tf.gather(tf.reshape(batch.items, [-1]), pick)
        neg_users = tf.gather(batch.row_users, pick // L)
        own_users = tf.repeat(batch.row_users, T)
        # not the row's own user (its other behaviours are likely positives), only real ones
        sampled_valid = (own_users[:, None] != neg_users[None, :]) & usable[None, :]
        return self.task(context, tf.reshape(pairs[:, cols], [B * T, d]), valid,
                         tf.reshape(batch.items[:, cols], [B * T]), neg_pairs, neg_ids,
                         batch.temperature, sampled_valid=sampled_valid)

    @staticmethod
    def sample_positions(mask, n):
        """`n` random flat (row * L + position) indices of real behaviours in the batch.

        Sampled negatives are real (query, item) pairs of other users' histories, with their
        real attributes, queries and modalities, so that no feature's presence tells them
        from positives. Returns (indices (n,) int64, usable (n,) bool: False when the batch
        holds no real behaviour at all).
        """
        flat = tf.where(tf.reshape(mask, [-1]))[:, 0]
        count = tf.shape(flat, out_type=tf.int64)[0]
        draw = tf.random.uniform([n], 0, tf.maximum(count, 1), dtype=tf.int64)
        pick = tf.gather(tf.concat([flat, tf.zeros([1], tf.int64)], 0),
                         tf.where(count > 0, draw, tf.fill([n], count)))
        return pick, tf.fill([n], count > 0)
