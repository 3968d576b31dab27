"""Masked multi-head target attention (the ESU, and the exact GSU's scoring)."""
from __future__ import annotations

from typing import Optional

import tensorflow as tf

from seminar_tf.serialization import register  # noqa: E402

NEG_INF = -1e9


def masked_softmax(logits: tf.Tensor, mask: tf.Tensor, axis: int = -1) -> tf.Tensor:
    """Softmax over `axis` restricted to `mask`; a row with no valid entry is all zeros."""
    mask = tf.cast(mask, tf.bool)
    weights = tf.nn.softmax(tf.where(mask, logits, tf.constant(NEG_INF, logits.dtype)), axis)
    return weights * tf.cast(mask, logits.dtype)


@register
class MultiHeadTargetAttention(tf.keras.layers.Layer):
    """Target attention: one target vector attends over a behaviour sequence.

    For head h: `w_h = masked_softmax(<W_Q,h t, W_K,h k_l> / sqrt(dk))`,
    `o_h = sum_l w_h,l W_V,h v_l`; the output is `W_O [o_1; ...; o_H]`. Padding positions get
    weight 0; a fully padded row yields the zero vector (never NaN). All projections are
    registered weights (trained and saved).

    Args:
        num_heads: H.
        target_dim: width d_t of the target vector.
        input_dim: width d of the keys.
        value_dim: width d_v of the values (default: input_dim).
        output_dim: output width (default: input_dim).
        key_dim: per-head width dk of queries and keys (default: output_dim // H).

    Input shape: target (B, d_t), keys (B, L, d), mask (B, L) bool, values (B, L, d_v)
        (default: keys).
    Output shape: (B, output_dim).

    References:
        - Zhou et al., Deep Interest Network, KDD 2018.
        - Chang et al., TWIN: TWo-stage Interest Network, KDD 2023.
    """

    def __init__(self, num_heads: int, target_dim: int, input_dim: int,
                 value_dim: Optional[int] = None, output_dim: Optional[int] = None,
                 key_dim: Optional[int] = None, **kwargs):
        super().__init__(**kwargs)
        self.num_heads, self.target_dim, self.input_dim = num_heads, target_dim, input_dim
        self.value_dim = value_dim or input_dim
        self.output_dim = output_dim or input_dim
        self.key_dim = key_dim or max(self.output_dim // num_heads, 1)
        self.head_value_dim = max(self.output_dim // num_heads, 1)

    def build(self, input_shape=None):
        h, dk, dv = self.num_heads, self.key_dim, self.head_value_dim
        init = "glorot_uniform"  # a fresh initializer per weight (no identical W_Q, W_K)
        self.w_q = self.add_weight(name="w_q", shape=(self.target_dim, h, dk), initializer=init)
        self.w_k = self.add_weight(name="w_k", shape=(self.input_dim, h, dk), initializer=init)
        self.w_v = self.add_weight(name="w_v", shape=(self.value_dim, h, dv), initializer=init)
        self.w_o = self.add_weight(name="w_o", shape=(h, dv, self.output_dim),
                                   initializer=init)
        super().build(input_shape)

    def target_in_key_space(self, targets: tf.Tensor) -> tf.Tensor:
        """Per-head `u_h = W_K,h W_Q,h^T t / sqrt(dk)`, (..., H, d): the head-h logit of a key
        k is `<u_h, k>`, so no key is ever projected (H*dk*(d_t + d) multiply-adds per
        target instead of H*dk*d per key)."""
        if not self.built:
            self.build()
        q = tf.einsum("...d,dhk->...hk", targets, self.w_q)
        u = tf.einsum("...hk,ehk->...he", q, self.w_k)
        return u / tf.sqrt(tf.cast(self.key_dim, u.dtype))

    def heads_output(self, pooled: tf.Tensor) -> tf.Tensor:
        """`W_O [W_V,1^T p_1; ...; W_V,H^T p_H]` of per-head weighted means of the raw values
        p_h (..., H, d_v) -> (..., output_dim): values are projected after pooling (by
        linearity), once per target and head, not once per behaviour."""
        heads = tf.einsum("...hd,dhk->...hk", pooled, self.w_v)
        return tf.einsum("...hk,hko->...o", heads, self.w_o)

    def head_logits(self, target: tf.Tensor, keys: tf.Tensor) -> tf.Tensor:
        """Scaled per-head logits `<W_Q,h t, W_K,h k_l> / sqrt(dk)`, shape (B, H, L)."""
        return tf.einsum("bhd,bld->bhl", self.target_in_key_space(target), keys)

    def query_in_key_space(self, target: tf.Tensor) -> tf.Tensor:
        """`u = sum_h W_K,h W_Q,h^T t / (H sqrt(dk))`, (B, d_key): the GSU score of a key k is
        `<u, k>`, equal to the head-mean of `head_logits` (used by PQ lookup attention)."""
        return tf.reduce_mean(self.target_in_key_space(target), -2)

    def call(self, target, keys, mask, values=None, return_weights: bool = False):
        values = keys if values is None else values
        weights = masked_softmax(self.head_logits(target, keys), mask[:, None, :])
        out = self.heads_output(tf.einsum("bhl,bld->bhd", weights, values))
        return (out, weights) if return_weights else out

    def attend_many(self, targets, keys, mask, values=None):
        """T targets per row over the same keys, each with its own mask (e.g. causal).

        Equal to `call` on the rows repeated T times; no key or value is projected.

        Args:
            targets: (B, T, d_t). keys: (B, L, d). mask: (B, T, L) bool.
            values: (B, L, d_v) (default: keys).

        Returns:
            (B, T, output_dim).
        """
        values = keys if values is None else values
        logits = tf.einsum("bthd,bld->bthl", self.target_in_key_space(targets), keys)
        weights = masked_softmax(logits, mask[:, :, None, :])
        return self.heads_output(tf.einsum("bthl,bld->bthd", weights, values))

    def attend_gathered(self, targets, keys, values, indices, mask):
        """N targets per row, each over its own K positions of one shared history.

        Equal to `call(target_n, keys[indices_n], mask_n, values[indices_n])` per target;
        the K keys and values are gathered raw (H*K*d multiply-adds per target for the
        logits and as many for the pooling; nothing is projected per behaviour).

        Args:
            targets: (B, N, d_t). keys: (B, L, d). values: (B, L, d_v).
            indices: (B, N, K) int positions. mask: (B, N, K) bool.

        Returns:
            (B, N, output_dim).
        """
        u = self.target_in_key_space(targets)  # (B, N, H, d)
        k = tf.gather(keys, indices, batch_dims=1)  # (B, N, K, d)
        weights = masked_softmax(tf.einsum("bnhd,bnjd->bnhj", u, k), mask[:, :, None, :])
        v = tf.gather(values, indices, batch_dims=1)
        return self.heads_output(tf.einsum("bnhj,bnjd->bnhd", weights, v))

    def attend_selected(self, targets, keys, values, indices, mask):
        """`attend_gathered` computed densely: each target's logits over all L keys (one
        matrix product), softmax restricted to its selected positions (a (B, N, L) mask
        scattered from `indices`), one product with the values. Faster than gathering
        when K is a large share of L; same result.

        Args and returns: as `attend_gathered` (indices distinct per target).
        """
        u = self.target_in_key_space(targets)
        logits = tf.einsum("bnhd,bld->bnhl", u, keys)
        shape = tf.shape(indices)
        b = tf.broadcast_to(tf.range(shape[0])[:, None, None], shape)
        n = tf.broadcast_to(tf.range(shape[1])[None, :, None], shape)
        selected = tf.scatter_nd(
            tf.stack([b, n, tf.cast(indices, tf.int32)], -1), tf.cast(mask, tf.int32),
            tf.stack([shape[0], shape[1], tf.shape(keys)[1]])) > 0
        weights = masked_softmax(logits, selected[:, :, None, :])
        return self.heads_output(tf.einsum("bnhl,bld->bnhd", weights, values))

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads,
                "target_dim": self.target_dim, "input_dim": self.input_dim,
                "value_dim": self.value_dim, "output_dim": self.output_dim,
                "key_dim": self.key_dim}
