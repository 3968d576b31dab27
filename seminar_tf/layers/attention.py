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

    def head_logits(self, target: tf.Tensor, keys: tf.Tensor) -> tf.Tensor:
        """Scaled per-head logits `<W_Q,h t, W_K,h k_l> / sqrt(dk)`, shape (B, H, L)."""
        if not self.built:
            self.build()
        q = tf.einsum("bd,dhk->bhk", target, self.w_q)
        k = tf.einsum("bld,dhk->blhk", keys, self.w_k)
        return tf.einsum("bhk,blhk->bhl", q, k) / tf.sqrt(tf.cast(self.key_dim, keys.dtype))

    def query_in_key_space(self, target: tf.Tensor) -> tf.Tensor:
        """`u = sum_h W_K,h W_Q,h^T t / (H sqrt(dk))`, (B, d_key): the GSU score of a key k is
        `<u, k>`, equal to the head-mean of `head_logits` (used by PQ lookup attention)."""
        if not self.built:
            self.build()
        q = tf.einsum("bd,dhk->bhk", target, self.w_q)
        u = tf.einsum("bhk,dhk->bd", q, self.w_k)
        return u / (self.num_heads * tf.sqrt(tf.cast(self.key_dim, target.dtype)))

    def call(self, target, keys, mask, values=None, return_weights: bool = False):
        values = keys if values is None else values
        weights = masked_softmax(self.head_logits(target, keys), mask[:, None, :])
        v = tf.einsum("bld,dhk->blhk", values, self.w_v)
        heads = tf.einsum("bhl,blhk->bhk", weights, v)
        out = tf.einsum("bhk,hko->bo", heads, self.w_o)
        return (out, weights) if return_weights else out

    def attend_many(self, targets, keys, mask, values=None):
        """T targets per row over the same keys, each with its own mask (e.g. causal).

        Equal to `call` on the rows repeated T times, but the keys and values are projected
        once per row instead of once per target.

        Args:
            targets: (B, T, d_t). keys: (B, L, d). mask: (B, T, L) bool.
            values: (B, L, d_v) (default: keys).

        Returns:
            (B, T, output_dim).
        """
        if not self.built:
            self.build()
        values = keys if values is None else values
        q = tf.einsum("btd,dhk->bthk", targets, self.w_q)
        k = tf.einsum("bld,dhk->blhk", keys, self.w_k)
        logits = tf.einsum("bthk,blhk->bthl", q, k) / tf.sqrt(
            tf.cast(self.key_dim, keys.dtype))
        weights = masked_softmax(logits, mask[:, :, None, :])
        v = tf.einsum("bld,dhk->blhk", values, self.w_v)
        heads = tf.einsum("bthl,blhk->bthk", weights, v)
        return tf.einsum("bthk,hko->bto", heads, self.w_o)

    def project_history(self, keys, values=None):
        """Per-head keys and values of a whole history, once: (B, L, H, dk), (B, L, H, dv).

        With `attend_gathered`, N targets that each attend over their own subset of one
        shared history cost one projection of the L behaviours, not N*K projections."""
        if not self.built:
            self.build()
        values = keys if values is None else values
        return (tf.einsum("bld,dhk->blhk", keys, self.w_k),
                tf.einsum("bld,dhk->blhk", values, self.w_v))

    def attend_gathered(self, targets, projected_keys, projected_values, indices, mask):
        """N targets per row, each over its own K positions of a projected shared history.

        Equal to `call(target_n, keys[indices_n], mask_n, values[indices_n])` per target
        (projection commutes with gathering).

        Args:
            targets: (B, N, d_t). projected_keys, projected_values: from `project_history`.
            indices: (B, N, K) int positions. mask: (B, N, K) bool.

        Returns:
            (B, N, output_dim).
        """
        q = tf.einsum("bnd,dhk->bnhk", targets, self.w_q)
        k = tf.gather(projected_keys, indices, batch_dims=1)  # (B, N, K, H, dk)
        v = tf.gather(projected_values, indices, batch_dims=1)
        logits = tf.einsum("bnhk,bnjhk->bnhj", q, k) / tf.sqrt(
            tf.cast(self.key_dim, k.dtype))
        weights = masked_softmax(logits, mask[:, :, None, :])
        heads = tf.einsum("bnhj,bnjhk->bnhk", weights, v)
        return tf.einsum("bnhk,hko->bno", heads, self.w_o)

    def attend_selected(self, targets, projected_keys, projected_values, indices, mask):
        """`attend_gathered` computed densely: each target's logits over all L projected
        keys (one matrix product), softmax restricted to its selected positions (a (B, N, L)
        mask scattered from `indices`), one product with the values. Faster than gathering
        when K is a large share of L (no (B, N, K, H, dk) gathers); same result.

        Args and returns: as `attend_gathered` (indices distinct per target).
        """
        q = tf.einsum("bnd,dhk->bnhk", targets, self.w_q)
        logits = tf.einsum("bnhk,blhk->bnhl", q, projected_keys) / tf.sqrt(
            tf.cast(self.key_dim, q.dtype))
        shape = tf.shape(indices)
        b = tf.broadcast_to(tf.range(shape[0])[:, None, None], shape)
        n = tf.broadcast_to(tf.range(shape[1])[None, :, None], shape)
        selected = tf.scatter_nd(
            tf.stack([b, n, tf.cast(indices, tf.int32)], -1), tf.cast(mask, tf.int32),
            tf.stack([shape[0], shape[1], tf.shape(projected_keys)[1]])) > 0
        weights = masked_softmax(logits, selected[:, :, None, :])
        heads = tf.einsum("bnhl,blhk->bnhk", weights, projected_values)
        return tf.einsum("bnhk,hko->bno", heads, self.w_o)

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads,
                "target_dim": self.target_dim, "input_dim": self.input_dim,
                "value_dim": self.value_dim, "output_dim": self.output_dim,
                "key_dim": self.key_dim}
