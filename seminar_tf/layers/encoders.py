"""Modality encoders and their fusion into item and (query, item) pair vectors.

Every modality maps an item to `e_m(item)` in R^d:
- `id`: item-ID embedding;
- `attr`: sum of attribute-id embeddings (category levels / author / brand / genre);
- `text`: frozen pretrained text vector -> learned Dense projection (or, when no pretrained
  vectors exist, `TokenBagEncoder` over title/caption tokens);
- `image`: frozen pretrained image vector -> learned Dense projection.
Items lacking a pretrained vector are *masked* for that modality (the fusion gate ignores it),
never given a zero vector that looks real. The query encoder is a masked mean of keyword
embeddings with a learned "no query" vector.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np

import tensorflow as tf

from seminar_tf.features import PAD_ID

from seminar_tf.serialization import register  # noqa: E402


def _masked_mean(emb: tf.Tensor, mask: tf.Tensor, axis: int):
    """Mean of `emb` over `axis` where `mask`; returns (mean, count)."""
    m = tf.cast(mask, emb.dtype)[..., None]
    total = tf.reduce_sum(emb * m, axis=axis)
    count = tf.reduce_sum(m, axis=axis)
    return total / tf.maximum(count, 1.0), tf.squeeze(count, -1)


@register
class QueryEncoder(tf.keras.layers.Layer):
    """Masked mean of keyword-token embeddings; an empty query yields a learned vector.

    Args:
        vocab_size: query-token vocabulary size (0 padding).
        dim: output width d.

    Input shape: int tokens (..., Q), 0-padded.
    Output shape: (vectors (..., d), has_query (...,) bool).
    """

    def __init__(self, vocab_size: int, dim: int, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size, self.dim = vocab_size, dim
        self.token_embedding = tf.keras.layers.Embedding(vocab_size, dim, name="token_embedding")
        # gather only the present tokens (most query slots are padding: a lifelong history
        # is mostly recommendation behaviours without a query); dense under XLA, whose
        # shapes must be static (`LifelongRanker.use_static_shapes`)
        self.sparse = True

    def build(self, input_shape):
        self.no_query = self.add_weight(name="no_query", shape=(self.dim,),
                                        initializer="random_normal")
        super().build(input_shape)

    def _present_mean(self, tokens, mask):
        """`_masked_mean` of the token embeddings from the present tokens only (the same
        sums, without gathering the padding slots)."""
        shape = tf.shape(tokens)
        flat = tf.reshape(tokens, [-1])
        present = tf.where(tf.reshape(mask, [-1]))[:, 0]
        emb = tf.gather(self.token_embedding.embeddings, tf.gather(flat, present))
        rows = tf.size(flat, tf.int64) // tf.cast(shape[-1], tf.int64)
        total = tf.math.unsorted_segment_sum(emb, present // tf.cast(shape[-1], tf.int64),
                                             rows)
        count = tf.reduce_sum(tf.cast(mask, emb.dtype), -1)
        mean = total / tf.maximum(tf.reshape(count, [-1, 1]), 1.0)
        return tf.reshape(mean, tf.concat([shape[:-1], [self.dim]], 0)), count

    def call(self, tokens):
        mask = tokens != PAD_ID
        if self.sparse:
            if not self.token_embedding.built:
                self.token_embedding.build(tokens.shape)
            mean, count = self._present_mean(tokens, mask)
        else:
            mean, count = _masked_mean(self.token_embedding(tokens), mask, axis=-2)
        has_query = count > 0
        vec = tf.where(has_query[..., None], mean, tf.broadcast_to(self.no_query, tf.shape(mean)))
        return vec, has_query

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size, "dim": self.dim}


@register
class AttributeEncoder(tf.keras.layers.Layer):
    """Sum of attribute-id embeddings, padding ids contributing nothing.

    Input shape: int ids (..., A). Output shape: (..., d).
    """

    def __init__(self, vocab_size: int, dim: int, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size, self.dim = vocab_size, dim
        self.embedding = tf.keras.layers.Embedding(vocab_size, dim, name="attr_embedding")

    def call(self, ids):
        m = tf.cast(ids != PAD_ID, self.compute_dtype)[..., None]
        return tf.reduce_sum(self.embedding(ids) * m, axis=-2)

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size, "dim": self.dim}


@register
class PretrainedVectorEncoder(tf.keras.layers.Layer):
    """Frozen pretrained item vectors (a saved, non-trainable table) + learned projection.

    Args:
        num_items: rows of the table (item vocabulary size).
        vector_dim: width of the pretrained vectors.
        dim: output width d.

    Input shape: item ids (...,). Output shape: (vectors (..., d), present (...,) bool).
    """

    def __init__(self, num_items: int, vector_dim: int, dim: int, **kwargs):
        super().__init__(**kwargs)
        self.num_items, self.vector_dim, self.dim = num_items, vector_dim, dim
        self.projection = tf.keras.layers.Dense(dim, name="projection")

    def build(self, input_shape):
        self.table = self.add_weight(name="table", shape=(self.num_items, self.vector_dim),
                                     initializer="zeros", trainable=False)
        self.present = self.add_weight(name="present", shape=(self.num_items,),
                                       initializer="zeros", trainable=False)
        self.projection.build((None, self.vector_dim))
        super().build(input_shape)

    def set_table(self, vectors: np.ndarray, present: np.ndarray) -> None:
        """Loads the pretrained vectors (rows by item id) and their presence mask."""
        if not self.built:
            self.build(None)
        if vectors.shape != (self.num_items, self.vector_dim):
            raise ValueError(f"{self.name}: table must be {(self.num_items, self.vector_dim)}, "
                             f"got {vectors.shape}")
        self.table.assign(vectors.astype(np.float32))
        self.present.assign(present.astype(np.float32))

    def call(self, ids):
        present = tf.gather(self.present, ids) > 0
        vec = self.projection(tf.gather(self.table, ids))
        return vec * tf.cast(present, vec.dtype)[..., None], present

    def get_config(self):
        return {**super().get_config(), "num_items": self.num_items,
                "vector_dim": self.vector_dim, "dim": self.dim}


@register
class TokenBagEncoder(tf.keras.layers.Layer):
    """Text fallback: masked mean of title/caption token embeddings looked up per item.

    Input shape: item ids (...,). Output shape: (vectors (..., d), present (...,) bool).
    """

    def __init__(self, num_items: int, title_tokens: int, vocab_size: int, dim: int, **kwargs):
        super().__init__(**kwargs)
        self.num_items, self.title_tokens = num_items, title_tokens
        self.vocab_size, self.dim = vocab_size, dim
        self.embedding = tf.keras.layers.Embedding(vocab_size, dim, name="title_embedding")

    def build(self, input_shape):
        self.titles = self.add_weight(name="titles", shape=(self.num_items, self.title_tokens),
                                      dtype=tf.int64, initializer="zeros", trainable=False)
        super().build(input_shape)

    def set_table(self, titles: np.ndarray) -> None:
        if not self.built:
            self.build(None)
        self.titles.assign(titles.astype(np.int64))

    def call(self, ids):
        tokens = tf.gather(self.titles, ids)
        mean, count = _masked_mean(self.embedding(tokens), tokens != PAD_ID, axis=-2)
        return mean, count > 0

    def get_config(self):
        return {**super().get_config(), "num_items": self.num_items,
                "title_tokens": self.title_tokens, "vocab_size": self.vocab_size,
                "dim": self.dim}


@register
class GatedFusion(tf.keras.layers.Layer):
    """Per-item softmax gate over modality embeddings: `sum_m g_m e_m`.

    The gate logits come from the concatenated modality embeddings of the item itself (not
    one global constant); modalities absent for an item are excluded from the softmax.

    Input shape: embeddings (..., M, d), valid (..., M) bool.
    Output shape: (fused (..., d), gates (..., M)).
    """

    def __init__(self, num_modalities: int, **kwargs):
        super().__init__(**kwargs)
        self.num_modalities = num_modalities
        self.gate = tf.keras.layers.Dense(num_modalities, name="gate")

    def call(self, embeddings, valid):
        shape = tf.shape(embeddings)
        flat = tf.reshape(embeddings, tf.concat([shape[:-2], [-1]], 0))
        flat = tf.ensure_shape(flat, embeddings.shape[:-2].concatenate(
            [embeddings.shape[-2] * embeddings.shape[-1]]))
        logits = self.gate(flat)
        logits = tf.where(valid, logits, tf.constant(-1e9, logits.dtype))
        gates = tf.nn.softmax(logits, axis=-1) * tf.cast(valid, logits.dtype)
        return tf.reduce_sum(gates[..., None] * embeddings, axis=-2), gates

    def get_config(self):
        return {**super().get_config(), "num_modalities": self.num_modalities}


@register
class MultiModalItemEncoder(tf.keras.layers.Layer):
    """All item modalities, optional per-modality projections G_m, and the gated fusion.

    Args:
        modalities: subset of ("id", "text", "image", "attr"), in this order.
        num_items, attr_vocab_size, query_vocab_size: vocabulary sizes.
        dim: d.
        text_dim, image_dim: pretrained vector widths (0: none; text falls back to tokens).
        title_tokens: tokens per title in the item table (token-bag fallback).
        projections: add G_m (d x d, identity-initialised) after each modality (SEMINAR's
            map from PSU space into GSU/ESU space).

    Input shape: item ids (...,), attribute ids (..., A).
    Output shape: dict with `modalities` (..., M, d) (projected parts, before gating),
        `valid` (..., M) bool, `gates` (..., M), `fused` (..., d).
    """

    def __init__(self, modalities: Sequence[str], num_items: int, attr_vocab_size: int,
                 query_vocab_size: int, dim: int, text_dim: int = 0, image_dim: int = 0,
                 title_tokens: int = 8, projections: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.modalities = tuple(m for m in ("id", "text", "image", "attr") if m in modalities
                                and not (m == "image" and image_dim == 0))
        self.num_items, self.attr_vocab_size = num_items, attr_vocab_size
        self.query_vocab_size, self.dim = query_vocab_size, dim
        self.text_dim, self.image_dim, self.title_tokens = text_dim, image_dim, title_tokens
        self.use_projections = projections
        if "id" in self.modalities:
            self.id_embedding = tf.keras.layers.Embedding(num_items, dim, name="id_embedding")
        if "text" in self.modalities:
            self.text_encoder = (
                PretrainedVectorEncoder(num_items, text_dim, dim, name="text_encoder")
                if text_dim else
                TokenBagEncoder(num_items, title_tokens, query_vocab_size, dim,
                                name="text_encoder"))
        if "image" in self.modalities:
            self.image_encoder = PretrainedVectorEncoder(num_items, image_dim, dim,
                                                         name="image_encoder")
        if "attr" in self.modalities:
            self.attr_encoder = AttributeEncoder(attr_vocab_size, dim, name="attr_encoder")
        self.projection_layers = [
            tf.keras.layers.Dense(dim, use_bias=False, kernel_initializer="identity",
                                  name=f"G_{m}") for m in self.modalities] if projections else []
        self.fusion = GatedFusion(len(self.modalities), name="fusion")

    def set_item_table(self, table: Dict[str, np.ndarray]) -> None:
        """Loads pretrained vectors / titles from an item table (see beam_pipelines)."""
        if "text" in self.modalities:
            if self.text_dim:
                self.text_encoder.set_table(table["text"], table["text_mask"])
            else:
                self.text_encoder.set_table(table["title"][:, :self.title_tokens])
        if "image" in self.modalities:
            self.image_encoder.set_table(table["image"], table["image_mask"])

    def raw_modalities(self, ids, attrs):
        """Per-modality embeddings before projections: ((..., M, d), valid (..., M))."""
        embs, valid = [], []
        real = ids != PAD_ID
        for m in self.modalities:
            if m == "id":
                e, ok = self.id_embedding(ids), real
            elif m == "text":
                e, ok = self.text_encoder(ids)
            elif m == "image":
                e, ok = self.image_encoder(ids)
            else:
                e = self.attr_encoder(attrs)
                ok = tf.reduce_any(attrs != PAD_ID, axis=-1)
            embs.append(e)
            valid.append(ok & real)
        return tf.stack(embs, axis=-2), tf.stack(valid, axis=-1)

    def call(self, ids, attrs):
        raw, valid = self.raw_modalities(ids, attrs)
        parts = raw
        if self.use_projections:
            parts = tf.stack([g(raw[..., k, :]) for k, g in enumerate(self.projection_layers)],
                             axis=-2)
        fused, gates = self.fusion(parts, valid)
        return {"modalities": parts, "raw": raw, "valid": valid, "gates": gates,
                "fused": fused}

    def get_config(self):
        return {**super().get_config(), "modalities": list(self.modalities),
                "num_items": self.num_items, "attr_vocab_size": self.attr_vocab_size,
                "query_vocab_size": self.query_vocab_size, "dim": self.dim,
                "text_dim": self.text_dim, "image_dim": self.image_dim,
                "title_tokens": self.title_tokens, "projections": self.use_projections}


@register
class PairFusion(tf.keras.layers.Layer):
    """(query, item) pair vector `alpha q + (1 - alpha) item`.

    Args:
        alpha: fixed query weight in [0, 1], or None to learn it (sigmoid of a scalar).

    Input shape: query (..., d), item (..., d). Output shape: (..., d).
    """

    def __init__(self, alpha: Optional[float] = None, **kwargs):
        super().__init__(**kwargs)
        self.alpha = alpha

    def build(self, input_shape):
        if self.alpha is None:
            self.alpha_logit = self.add_weight(name="alpha_logit", shape=(),
                                               initializer="zeros")
        super().build(input_shape)

    def weight_of_query(self) -> tf.Tensor:
        if self.alpha is None:
            return tf.sigmoid(self.alpha_logit)
        return tf.constant(self.alpha, self.compute_dtype)

    def call(self, query, item):
        a = self.weight_of_query()
        return a * query + (1.0 - a) * item

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha}


@register
class QueryItemPairEncoder(tf.keras.layers.Layer):
    """Encodes (item, attributes, query tokens) into item, query and pair vectors.

    Shared, by name, between the PSU and the ranker so that pretrained weights restore.

    Args:
        item_encoder: a `MultiModalItemEncoder` config dict (see its Args).
        query_vocab_size: query-token vocabulary size.
        dim: d.
        alpha: pair weight of the query (None: learned).

    Input shape: items (...,), attrs (..., A), query tokens (..., Q).
    Output shape: dict with `pair`, `item`, `query` (..., d), `has_query` (...,) bool and the
        item encoder's `modalities` (..., M, d), `valid` (..., M), `gates` (..., M).
    """

    def __init__(self, item_encoder: dict, query_vocab_size: int, dim: int,
                 alpha: Optional[float] = None, **kwargs):
        super().__init__(**kwargs)
        self.item_encoder_config = dict(item_encoder)
        self.query_vocab_size, self.dim, self.alpha = query_vocab_size, dim, alpha
        self.item_encoder = MultiModalItemEncoder(**self.item_encoder_config,
                                                  name="item_encoder")
        self.query_encoder = QueryEncoder(query_vocab_size, dim, name="query_encoder")
        self.pair_fusion = PairFusion(alpha, name="pair_fusion")

    def call(self, items, attrs, query):
        return self.with_query(self.item_encoder(items, attrs), query)

    def with_query(self, enc, query):
        """Item-encoder outputs `enc` (..., ...) + the query tokens -> the pair outputs."""
        q, has_query = self.query_encoder(query)
        pair = self.pair_fusion(q, enc["fused"])
        return {**enc, "item": enc["fused"], "query": q, "has_query": has_query, "pair": pair}

    def key_parts(self, encoded):
        """The additive parts of the pair vector: `(1-a) g_m G_m e_m` per modality and `a q`.

        Returns (item_parts (..., M, d), query_part (..., d)); their sum equals `pair`.
        """
        a = self.pair_fusion.weight_of_query()
        item_parts = (1.0 - a) * encoded["gates"][..., None] * encoded["modalities"]
        return item_parts, a * encoded["query"]

    def get_config(self):
        return {**super().get_config(), "item_encoder": self.item_encoder_config,
                "query_vocab_size": self.query_vocab_size, "dim": self.dim,
                "alpha": self.alpha}
