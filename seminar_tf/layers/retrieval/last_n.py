"""DIN ("last_n") and full attention ("full"): the most recent K behaviours."""
from __future__ import annotations

import tensorflow as tf

from seminar_tf.layers.retrieval.base import Retrieval
from seminar_tf.serialization import register


@register
class LastNRetrieval(Retrieval):
    """DIN: the most recent K behaviours (the last K positions of a left-padded history).
    With `whole_history` (the "full" line of the table) K is the history length L."""

    target_masks = True
    needs_keys = False

    @classmethod
    def top_k_for(cls, config, whole_history: bool = False, **options) -> int:
        return config.data.max_seq_len if whole_history else config.model.top_k

    @classmethod
    def from_ranker(cls, ranker, whole_history: bool = False, **options):
        return cls(ranker.top_k, name="gsu")

    def call_many(self, inputs):
        if "target_mask" in inputs:  # each target's own slice of a window: its last K
            idx = inputs["target_end"][..., None] - self.top_k + tf.range(self.top_k)
            valid = tf.gather(inputs["target_mask"], tf.maximum(idx, 0), batch_dims=2)
            valid &= idx >= 0
            idx = tf.maximum(idx, 0)
            return {"indices": idx, "scores": tf.zeros_like(idx, tf.float32),
                    "valid": valid}
        mask = inputs["mask"]
        L = mask.shape[1]
        idx = tf.range(L - self.top_k, L, dtype=tf.int32)
        idx = tf.broadcast_to(idx[None, :], [tf.shape(mask)[0], self.top_k])
        out = {"indices": idx, "scores": tf.zeros_like(idx, tf.float32),
               "valid": tf.gather(mask, idx, batch_dims=1)}
        # target-independent: once per history, broadcast to the N candidates
        shape = tf.concat([tf.shape(inputs["target"])[:2], [self.top_k]], 0)
        return {k: tf.broadcast_to(v[:, None, :], shape) for k, v in out.items()}
