"""DIN ("last_n") and full attention ("full"): the most recent K behaviours."""
from __future__ import annotations

import tensorflow as tf

from seminar_tf.layers.retrieval.base import Retrieval
from seminar_tf.serialization import register


@register
class LastNRetrieval(Retrieval):
    """DIN: the most recent K behaviours (the last K positions of a left-padded history)."""

    needs_keys = False

    def call(self, inputs):
        mask = inputs["mask"]
        L = mask.shape[1]
        idx = tf.range(L - self.top_k, L, dtype=tf.int32)
        idx = tf.broadcast_to(idx[None, :], [tf.shape(mask)[0], self.top_k])
        valid = tf.gather(mask, idx, batch_dims=1)
        return {"indices": idx, "scores": tf.zeros_like(idx, tf.float32), "valid": valid}

    def call_many(self, inputs):
        out = self.call(inputs)  # target-independent: once per history
        shape = tf.concat([tf.shape(inputs["target"])[:2], [self.top_k]], 0)
        return {k: tf.broadcast_to(v[:, None, :], shape) for k, v in out.items()}
