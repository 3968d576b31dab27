"""SIM-soft ("sim_soft"): inner product of a separate item table."""
from __future__ import annotations

import tensorflow as tf

from seminar_tf.layers.retrieval.base import Retrieval, many_mask, masked_top_k
from seminar_tf.serialization import register
from seminar_tf.layers.attention import masked_softmax


@register
class SimSoftRetrieval(Retrieval):
    """SIM-soft: inner product of separate item embeddings (its own table).

    Its embeddings are trained through `summary`, the softmax(score)-weighted sum of the
    retrieved behaviours' SIM embeddings (the ranker consumes it).
    """

    target_masks = True
    needs_keys = False

    def __init__(self, top_k: int, num_items: int, dim: int, **kwargs):
        super().__init__(top_k, **kwargs)
        self.num_items, self.dim = num_items, dim
        self.embedding = tf.keras.layers.Embedding(num_items, dim, name="sim_embedding")

    @classmethod
    def from_ranker(cls, ranker, **options):
        return cls(ranker.top_k, ranker.config.data.item_vocab_size,
                   ranker.config.model.embedding_dim, name="gsu")

    def scores(self, inputs):
        """(B, L) scaled inner products of the target's and the behaviours' SIM embeddings."""
        t = self.embedding(inputs["target_item"])
        h = self.embedding(inputs["hist_items"])
        return tf.einsum("bd,bld->bl", t, h) / tf.sqrt(float(self.dim))

    def call_many(self, inputs):
        t = self.embedding(inputs["target_item"])  # (B, N, d)
        h = self.embedding(inputs["hist_items"])  # (B, L, d), once per history
        scores = tf.einsum("bnd,bld->bnl", t, h) / tf.sqrt(float(self.dim))
        out = masked_top_k(scores, many_mask(inputs), self.top_k)
        w = masked_softmax(out["scores"], out["valid"])
        out["summary"] = tf.einsum("bnk,bnkd->bnd", w,
                                   tf.gather(h, out["indices"], batch_dims=1))
        return out

    def get_config(self):
        return {**super().get_config(), "num_items": self.num_items, "dim": self.dim}
