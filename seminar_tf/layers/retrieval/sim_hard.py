"""SIM-hard ("sim_hard"): category match, most recent first."""
from __future__ import annotations

import tensorflow as tf

from seminar_tf.layers.retrieval.base import Retrieval, many_mask, masked_top_k
from seminar_tf.serialization import register


@register
class SimHardRetrieval(Retrieval):
    """SIM-hard: behaviours whose attribute `attr_index` (e.g. category) equals the target's.

    Among matches the most recent win (positions are oldest-first). Non-matching behaviours
    are never selected.
    """

    target_masks = True
    needs_keys = False

    def __init__(self, top_k: int, attr_index: int = 1, **kwargs):
        super().__init__(top_k, **kwargs)
        self.attr_index = attr_index

    def call_many(self, inputs):
        t = inputs["target_attrs"][..., self.attr_index][..., None]  # (B, N, 1)
        h = inputs["hist_attrs"][:, None, :, self.attr_index]  # (B, 1, L)
        return self._select(t, h, many_mask(inputs))

    def _select(self, t, h, mask):
        match = (h == t) & (t != 0) & mask
        # equal scores: masked_top_k's tie rule keeps the most recent matches
        out = masked_top_k(tf.cast(match, tf.float32), match, self.top_k)
        out["scores"] = tf.where(out["valid"], tf.ones_like(out["scores"]), out["scores"])
        return out

    def get_config(self):
        return {**super().get_config(), "attr_index": self.attr_index}
