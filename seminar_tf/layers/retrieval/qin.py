"""QIN ("qin"): query-relevant first stage, then target-relevant second stage."""
from __future__ import annotations

import tensorflow as tf

from seminar_tf.layers.attention import MultiHeadTargetAttention
from seminar_tf.layers.retrieval.base import Retrieval, masked_top_k
from seminar_tf.serialization import register


@register
class QinRetrieval(Retrieval):
    """QIN: a query-relevant stage (the target query against each behaviour, top
    `first_k`), then a target-relevant stage (the ESU's logits) among those, top K."""

    nested_layers = ("attention",)

    def __init__(self, top_k: int, first_k: int, attention: MultiHeadTargetAttention,
                 **kwargs):
        super().__init__(top_k, **kwargs)
        self.first_k, self.attention = first_k, attention

    @classmethod
    def from_ranker(cls, ranker, first_k: int = 100, **options):
        return cls(ranker.top_k, first_k, ranker.esu, name="gsu")

    def _first_k(self, keys):
        L = keys.shape[1] or tf.shape(keys)[1]
        first_k = min(self.first_k, L) if isinstance(L, int) else self.first_k
        return max(first_k, self.top_k)

    def call(self, inputs):
        keys, mask = inputs["keys"], inputs["mask"]
        s1 = tf.einsum("bd,bld->bl", inputs["target_query"], keys)
        stage1 = masked_top_k(s1, mask, self._first_k(keys))
        sub_keys = tf.gather(keys, stage1["indices"], batch_dims=1)
        s2 = tf.reduce_mean(self.attention.head_logits(inputs["target"], sub_keys), 1)
        stage2 = masked_top_k(s2, stage1["valid"], self.top_k)
        stage2["indices"] = tf.gather(stage1["indices"], stage2["indices"], batch_dims=1)
        return stage2

    def call_many(self, inputs):
        keys, mask = inputs["keys"], inputs["mask"]
        s1 = tf.einsum("bnd,bld->bnl", inputs["target_query"], keys)
        stage1 = masked_top_k(s1, mask[:, None, :], self._first_k(keys))  # (B, N, k1)
        sub_keys = tf.gather(keys, stage1["indices"], batch_dims=1)  # (B, N, k1, d)
        shape = tf.shape(sub_keys)
        flat_keys = tf.reshape(sub_keys, [shape[0] * shape[1], shape[2], shape[3]])
        flat_target = tf.reshape(inputs["target"], [shape[0] * shape[1], -1])
        s2 = tf.reshape(tf.reduce_mean(self.attention.head_logits(flat_target, flat_keys), 1),
                        shape[:3])
        stage2 = masked_top_k(s2, stage1["valid"], self.top_k)
        stage2["indices"] = tf.gather(stage1["indices"], stage2["indices"], batch_dims=2)
        return stage2

    def get_config(self):
        return {**super().get_config(), "first_k": self.first_k}
