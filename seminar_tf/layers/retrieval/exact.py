"""TWIN-style exact GSU ("exact"): the ESU's own logits over the whole history."""
from __future__ import annotations

import tensorflow as tf

from seminar_tf.layers.attention import MultiHeadTargetAttention
from seminar_tf.layers.retrieval.base import (Retrieval, many_mask, masked_top_k,
                                              per_candidate)
from seminar_tf.serialization import register


@register
class ExactTargetRetrieval(Retrieval):
    """TWIN-style consistent GSU: the ESU's own projections score all L behaviours.

    Score of behaviour l: mean over heads of `<W_Q,h t, W_K,h k_l> / sqrt(dk)`, i.e. exactly the
    ESU's attention logits, computed as `<u, k_l>` with the target mapped into key space once
    (`MultiHeadTargetAttention.query_in_key_space`: O(L d) per target instead of projecting
    every key, O(L d H dk)); then masked top-K.

    Args:
        top_k: K.
        attention: the ESU `MultiHeadTargetAttention` whose weights are shared.
    """

    target_masks = True
    nested_layers = ("attention",)

    def __init__(self, top_k: int, attention: MultiHeadTargetAttention, **kwargs):
        super().__init__(top_k, **kwargs)
        self.attention = attention

    @classmethod
    def from_ranker(cls, ranker, **options):
        return cls(ranker.top_k, ranker.esu, name="gsu")

    def scores(self, inputs):
        """(B, L): `<u, k_l>` per behaviour."""
        u = self.attention.query_in_key_space(inputs["target"])
        return tf.einsum("bd,bld->bl", u, inputs["keys"])

    def scores_many(self, inputs):
        """(B, N, L): one (N x d) . (d x L) product per history, with the target mapped
        into key space (`u`, see `MultiHeadTargetAttention.query_in_key_space`)."""
        u = per_candidate(self.attention.query_in_key_space, inputs["target"])
        return tf.einsum("bnd,bld->bnl", u, inputs["keys"])

    def call_many(self, inputs):
        return masked_top_k(self.scores_many(inputs), many_mask(inputs),
                            self.top_k)
