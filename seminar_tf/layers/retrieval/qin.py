"""QIN ("qin"): query-relevant first stage, then target-relevant second stage."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from seminar_tf.layers.attention import MultiHeadTargetAttention
from seminar_tf.layers.retrieval.base import (Retrieval, many_mask, masked_top_k,
                                              per_candidate)
from seminar_tf.serialization import register


@register
class QinRetrieval(Retrieval):
    """QIN: a query-relevant stage (the target query against each behaviour, top
    `first_k`), then a target-relevant stage (the ESU's logits, as `<u, k>` with the target
    in key space) among those, top K. The first stage's picks are put back in time order, so
    that the second stage's ties go to the most recent behaviour like every GSU's."""

    target_masks = True
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

    @staticmethod
    def _in_time_order(stage):
        """A top-k selection re-ordered by position (oldest first)."""
        order = tf.argsort(stage["indices"], axis=-1)
        batch_dims = stage["indices"].shape.rank - 1
        return {k: tf.gather(v, order, batch_dims=batch_dims) for k, v in stage.items()}

    def call_many(self, inputs):
        """The query stage once per row when the N targets share the row's query
        (`row_query`, as in `rank`), broadcast to them; else once per target."""
        keys, mask = inputs["keys"], inputs["mask"]
        k1 = self._first_k(keys)
        if "row_query" in inputs:
            s1 = tf.einsum("bd,bld->bl", inputs["row_query"], keys)
            shared = self._in_time_order(masked_top_k(s1, mask, k1))  # (B, k1)
            shape = tf.concat([tf.shape(inputs["target"])[:2], [k1]], 0)
            stage1 = {k: tf.broadcast_to(v[:, None], shape) for k, v in shared.items()}
        else:
            s1 = tf.einsum("bnd,bld->bnl", inputs["target_query"], keys)
            stage1 = self._in_time_order(masked_top_k(s1, many_mask(inputs), k1))  # (B, N, k1)
        sub_keys = tf.gather(keys, stage1["indices"], batch_dims=1)  # (B, N, k1, d)
        u = per_candidate(self.attention.query_in_key_space, inputs["target"])  # (B, N, d)
        stage2 = masked_top_k(tf.einsum("bnd,bnkd->bnk", u, sub_keys), stage1["valid"],
                              self.top_k)
        stage2["indices"] = tf.gather(stage1["indices"], stage2["indices"], batch_dims=2)
        return stage2

    def determined(self, inputs, delta):
        """Both stages determined (`Retrieval.determined`)."""
        from seminar_tf.layers.retrieval.ties import determined_rows, reference_select
        keys, mask = inputs["keys"], inputs["mask"].numpy()
        s1 = tf.einsum("bd,bld->bl", inputs["target_query"], keys).numpy()
        k1 = self._first_k(keys)
        eligible = np.zeros_like(mask)
        for r, sel in enumerate(reference_select(s1, mask, k1)):
            eligible[r, list(sel)] = True
        u = self.attention.query_in_key_space(inputs["target"])
        s2 = tf.einsum("bd,bld->bl", u, keys).numpy()
        return (determined_rows(s1, mask, k1, delta)
                & determined_rows(s2, eligible, self.top_k, delta))

    def get_config(self):
        return {**super().get_config(), "first_k": self.first_k}
