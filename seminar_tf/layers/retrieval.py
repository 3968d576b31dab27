"""GSU retrieval layers: select the top-K behaviours of a lifelong history for the ESU.

Every retriever takes a dict of tensors (it uses the entries it needs) and returns a dict:
    indices (B, K) int32   positions in the history
    scores  (B, K)         retrieval scores (0 where invalid)
    valid   (B, K) bool    False where fewer than K eligible behaviours exist
    summary (B, d)         only for retrievers with weights of their own: the softmax(scores)-
                           weighted sum of their embeddings, fed to the ranker so that those
                           weights are trained.
Padding is never selected while enough real behaviours exist; selected padding is invalid.

Input dict keys (B batch, L history, d width, A attributes):
    target (B, d), keys (B, L, d), mask (B, L) bool, target_query (B, d),
    target_item (B,), hist_items (B, L), target_attrs (B, A), hist_attrs (B, L, A).
"""
from __future__ import annotations

from typing import Dict

import numpy as np

from seminar_tf import _keras_mode  # noqa: F401
import tensorflow as tf

from seminar_tf.layers.attention import MultiHeadTargetAttention, masked_softmax

register = tf.keras.utils.register_keras_serializable(package="seminar_tf")


def masked_top_k(scores: tf.Tensor, mask: tf.Tensor, k: int) -> Dict[str, tf.Tensor]:
    """Top-k of `scores` over positions where `mask`, with a validity mask.

    Args:
        scores: (B, L) float. mask: (B, L) bool. k: static int <= L.

    Returns:
        dict of indices (B, k) int32, scores (B, k) (0 where invalid), valid (B, k) bool.
    """
    floor = tf.constant(np.finfo(np.float32).min, scores.dtype)
    top, idx = tf.math.top_k(tf.where(mask, scores, floor), k=k)
    valid = tf.gather(mask, idx, batch_dims=1)
    return {"indices": idx, "scores": tf.where(valid, top, tf.zeros_like(top)), "valid": valid}


class Retrieval(tf.keras.layers.Layer):
    """Base class: `top_k` and config.

    `needs_keys`: whether the retriever scores the float keys of all L behaviours. When
    False, the ranker encodes only the K retrieved behaviours (and the short-term window).
    """

    needs_keys = True
    nested_layers = ()  # constructor args that are (shared) layers, serialized by config

    def __init__(self, top_k: int, **kwargs):
        super().__init__(**kwargs)
        self.top_k = top_k

    def get_config(self):
        config = {**super().get_config(), "top_k": self.top_k}
        for name in self.nested_layers:
            config[name] = tf.keras.layers.serialize(getattr(self, name))
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for name in cls.nested_layers:
            config[name] = tf.keras.layers.deserialize(config[name])
        return cls(**config)


@register
class ExactTargetRetrieval(Retrieval):
    """TWIN-style consistent GSU: the ESU's own projections score all L behaviours.

    Score of behaviour l: mean over heads of `<W_Q,h t, W_K,h k_l> / sqrt(dk)`, i.e. exactly the
    ESU's attention logits; computed over the whole history, then masked top-K.

    Args:
        top_k: K.
        attention: the ESU `MultiHeadTargetAttention` whose weights are shared.
    """

    nested_layers = ("attention",)

    def __init__(self, top_k: int, attention: MultiHeadTargetAttention, **kwargs):
        super().__init__(top_k, **kwargs)
        self.attention = attention

    def scores(self, inputs):
        return tf.reduce_mean(self.attention.head_logits(inputs["target"], inputs["keys"]), 1)

    def call(self, inputs):
        return masked_top_k(self.scores(inputs), inputs["mask"], self.top_k)


@register
class SimHardRetrieval(Retrieval):
    """SIM-hard: behaviours whose attribute `attr_index` (e.g. category) equals the target's.

    Among matches the most recent win (positions are oldest-first). Non-matching behaviours
    are never selected.
    """

    needs_keys = False

    def __init__(self, top_k: int, attr_index: int = 1, **kwargs):
        super().__init__(top_k, **kwargs)
        self.attr_index = attr_index

    def call(self, inputs):
        t = inputs["target_attrs"][:, self.attr_index]
        h = inputs["hist_attrs"][:, :, self.attr_index]
        match = (h == t[:, None]) & (t[:, None] != 0) & inputs["mask"]
        L = tf.shape(h)[1]
        recency = tf.cast(tf.range(L), tf.float32) / tf.cast(L, tf.float32)
        scores = tf.cast(match, tf.float32) + 1e-3 * recency[None, :]
        out = masked_top_k(scores, match, self.top_k)
        out["scores"] = tf.where(out["valid"], tf.ones_like(out["scores"]), out["scores"])
        return out

    def get_config(self):
        return {**super().get_config(), "attr_index": self.attr_index}


@register
class SimSoftRetrieval(Retrieval):
    """SIM-soft: inner product of separate item embeddings (its own table).

    Its embeddings are trained through `summary`, the softmax(score)-weighted sum of the
    retrieved behaviours' SIM embeddings (the ranker consumes it).
    """

    needs_keys = False

    def __init__(self, top_k: int, num_items: int, dim: int, **kwargs):
        super().__init__(top_k, **kwargs)
        self.num_items, self.dim = num_items, dim
        self.embedding = tf.keras.layers.Embedding(num_items, dim, name="sim_embedding")

    def call(self, inputs):
        t = self.embedding(inputs["target_item"])
        h = self.embedding(inputs["hist_items"])
        scores = tf.einsum("bd,bld->bl", t, h) / tf.sqrt(float(self.dim))
        out = masked_top_k(scores, inputs["mask"], self.top_k)
        w = masked_softmax(out["scores"], out["valid"])
        out["summary"] = tf.einsum("bk,bkd->bd", w, tf.gather(h, out["indices"], batch_dims=1))
        return out

    def get_config(self):
        return {**super().get_config(), "num_items": self.num_items, "dim": self.dim}


@register
class EtaRetrieval(Retrieval):
    """ETA: SimHash signatures (fixed random hyperplanes, a saved non-trainable weight) and
    Hamming similarity between the target's and each behaviour's signature.

    Similarity = bits - 2 * Hamming distance = <sign(R t), sign(R k_l)>.
    """

    def __init__(self, top_k: int, dim: int, bits: int = 64, seed: int = 0, **kwargs):
        super().__init__(top_k, **kwargs)
        self.dim, self.bits, self.seed = dim, bits, seed

    def build(self, input_shape=None):
        init = tf.keras.initializers.RandomNormal(seed=self.seed)
        self.hyperplanes = self.add_weight(name="hyperplanes", shape=(self.dim, self.bits),
                                           initializer=init, trainable=False)
        super().build(input_shape)

    def signatures(self, x):
        return tf.where(tf.tensordot(x, self.hyperplanes, 1) >= 0, 1.0, -1.0)

    def call(self, inputs):
        st = self.signatures(inputs["target"])
        sh = self.signatures(inputs["keys"])
        return masked_top_k(tf.einsum("bn,bln->bl", st, sh), inputs["mask"], self.top_k)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "bits": self.bits, "seed": self.seed}


@register
class QinRetrieval(Retrieval):
    """QIN: a query-relevant stage (the target query against each behaviour, top
    `first_k`), then a target-relevant stage (the ESU's logits) among those, top K."""

    nested_layers = ("attention",)

    def __init__(self, top_k: int, first_k: int, attention: MultiHeadTargetAttention,
                 **kwargs):
        super().__init__(top_k, **kwargs)
        self.first_k, self.attention = first_k, attention

    def call(self, inputs):
        keys, mask = inputs["keys"], inputs["mask"]
        L = keys.shape[1] or tf.shape(keys)[1]
        first_k = min(self.first_k, L) if isinstance(L, int) else self.first_k
        s1 = tf.einsum("bd,bld->bl", inputs["target_query"], keys)
        stage1 = masked_top_k(s1, mask, max(first_k, self.top_k))
        sub_keys = tf.gather(keys, stage1["indices"], batch_dims=1)
        s2 = tf.reduce_mean(self.attention.head_logits(inputs["target"], sub_keys), 1)
        stage2 = masked_top_k(s2, stage1["valid"], self.top_k)
        stage2["indices"] = tf.gather(stage1["indices"], stage2["indices"], batch_dims=1)
        return stage2

    def get_config(self):
        return {**super().get_config(), "first_k": self.first_k}


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


def build_retrieval(kind: str, top_k: int, attention: MultiHeadTargetAttention, *,
                    num_items: int, dim: int, eta_bits: int = 64, qin_first_k: int = 100,
                    attr_index: int = 1, seed: int = 0) -> Retrieval:
    """Builds the GSU named `kind` (see `seminar_tf.config.GSU_KINDS`; "pq" lives in
    `seminar_tf.pq`, "full" is `LastNRetrieval` over the whole history)."""
    if kind == "exact":
        return ExactTargetRetrieval(top_k, attention, name="gsu")
    if kind == "sim_hard":
        return SimHardRetrieval(top_k, attr_index, name="gsu")
    if kind == "sim_soft":
        return SimSoftRetrieval(top_k, num_items, dim, name="gsu")
    if kind == "eta":
        return EtaRetrieval(top_k, dim, eta_bits, seed, name="gsu")
    if kind == "qin":
        return QinRetrieval(top_k, qin_first_k, attention, name="gsu")
    if kind in ("last_n", "full"):
        return LastNRetrieval(top_k, name="gsu")
    raise ValueError(f"unknown GSU kind {kind!r}")
