"""ETA ("eta"): SimHash signatures and Hamming similarity."""
from __future__ import annotations

import tensorflow as tf

from seminar_tf.layers.retrieval.base import Retrieval, many_mask, masked_top_k
from seminar_tf.serialization import register


@register
class EtaRetrieval(Retrieval):
    """ETA: SimHash signatures (fixed random hyperplanes, a saved non-trainable weight) and
    Hamming similarity between the target's and each behaviour's signature.

    Similarity = bits - 2 * Hamming distance = <sign(R t), sign(R k_l)>.
    """

    target_masks = True

    def __init__(self, top_k: int, dim: int, bits: int = 64, seed: int = 0, **kwargs):
        super().__init__(top_k, **kwargs)
        self.dim, self.bits, self.seed = dim, bits, seed

    @classmethod
    def from_ranker(cls, ranker, bits: int = 64, **options):
        return cls(ranker.top_k, ranker.config.model.embedding_dim, bits,
                   ranker.config.train.seed, name="gsu")

    def build(self, input_shape=None):
        init = tf.keras.initializers.RandomNormal(seed=self.seed)
        self.hyperplanes = self.add_weight(name="hyperplanes", shape=(self.dim, self.bits),
                                           initializer=init, trainable=False)
        super().build(input_shape)

    def signatures(self, x):
        return tf.where(tf.tensordot(x, self.hyperplanes, 1) >= 0, 1.0, -1.0)

    def scores(self, inputs):
        """(B, L) signature agreements (integers in [-bits, bits])."""
        st = self.signatures(inputs["target"])
        return tf.einsum("bn,bln->bl", st, self.signatures(inputs["keys"]))

    def call_many(self, inputs):
        st = self.signatures(inputs["target"])  # (B, N, bits)
        sh = self.signatures(inputs["keys"])  # (B, L, bits), once per history
        return masked_top_k(tf.einsum("bnc,blc->bnl", st, sh), many_mask(inputs),
                            self.top_k)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "bits": self.bits, "seed": self.seed}
