"""`PQLookupAttention`: the GSU of docs/design.md §6 in stock TensorFlow ops.

Per request (B targets), with `u = sum_h W_K,h W_Q,h^T t / (H sqrt(dk))` so that the exact GSU
score of a behaviour key `k_l` is `<u, k_l>`:

1. `LUT[b, p, s, c] = <u_s[b], C[p, s, c]>`: one einsum, P*S*C*(d/S) multiply-adds;
2. item parts: `sum_{p,s} LUT[b, p, s, codes[item_l, p, s]]`: the uint8 codes of each
   behaviour's item are cast, offset into one flat per-request table and gathered in a single
   batched gather, then summed; no float key of a behaviour is touched;
3. query part: the pair vector's query term `a * mean_t E[token_t]` is linear too, so its score
   is the masked mean of a per-request *token* table `<u, E[v]>` over the tokens present in
   the request (unique ids gathered, never the whole vocabulary), looked up at each
   behaviour's query tokens (exact, Q lookups; the learned no-query vector for empty
   queries). Under XLA (`use_static_shapes`, set by `seminar export --xla`) the unique
   tokens' dynamic count would be padded to its bound (B*L*Q), so the query part is instead
   `<u, a q_l>` with each behaviour's query vector (B*L*Q gathers, static shapes);
4. masked top-K. The ESU then gathers and encodes only the K retrieved behaviours.

`call_many` (one history, N candidates: the `rank` signature) either decodes each
behaviour's key once from the codebooks (L x d, plus the exact query part) and scores all N
candidates with one (N x d).(d x L) product ("decode"), or builds N lookup tables and gathers
N-wide rows ("lookup"); `pq.rank_scoring` chooses.

Everything is einsum / gather / reduce_sum / top_k (no custom op, no py_function), so it runs
in a SavedModel under stock TF Serving; `jit_compile=True` (TF Serving:
`--xla_cpu_compilation_enabled`) fuses the cast/offset/gather/sum.
"""
from __future__ import annotations

import tensorflow as tf

from seminar_tf.features import PAD_ID
from seminar_tf.layers.retrieval.base import (Retrieval, many_mask, masked_top_k,
                                              per_candidate)
from seminar_tf.serialization import register


def pq_item_scores(u: tf.Tensor, codebooks: tf.Tensor, codes: tf.Tensor) -> tf.Tensor:
    """Scores of coded items by table lookups.

    Args:
        u: (B, d) request vectors.
        codebooks: (P, S, C, d/S) float.
        codes: (B, L, P, S) uint8 (or any integer) codes of the L behaviours.

    Returns:
        (B, L) approximate scores `sum_{p,s} <u_s, C[p, s, codes[..., p, s]]>`.
    """
    P, S, C, w = codebooks.shape
    B = tf.shape(u)[0]
    lut = tf.einsum("bsw,pscw->bpsc", tf.reshape(u, [B, S, w]), codebooks)
    lut = tf.reshape(lut, [B, P * S * C])
    offsets = tf.reshape(tf.range(P * S, dtype=tf.int32) * C, [P, S])
    flat = tf.cast(codes, tf.int32) + offsets
    L = tf.shape(codes)[1]
    picked = tf.gather(lut, tf.reshape(flat, [B, L * P * S]), batch_dims=1)
    return tf.reduce_sum(tf.reshape(picked, [B, L, P * S]), -1)


def pq_decode(codebooks: tf.Tensor, codes: tf.Tensor) -> tf.Tensor:
    """Decoded keys `sum_p concat_s C[p, s, codes[..., p, s]]`.

    Args:
        codebooks: (P, S, C, d/S). codes: (..., P, S) integer.

    Returns:
        (..., d) float.
    """
    P, S, C, w = codebooks.shape
    offsets = tf.reshape(tf.range(P * S, dtype=tf.int32) * C, [P, S])
    vectors = tf.gather(tf.reshape(codebooks, [P * S * C, w]),
                        tf.cast(codes, tf.int32) + offsets)  # (..., P, S, w)
    summed = tf.reduce_sum(vectors, -3)  # (..., S, w)
    return tf.reshape(summed, tf.concat([tf.shape(summed)[:-2], [S * w]], 0))


def pq_item_scores_many(u: tf.Tensor, codebooks: tf.Tensor, codes: tf.Tensor) -> tf.Tensor:
    """`pq_item_scores` for N request vectors per history through N-wide lookup rows.

    Args:
        u: (B, N, d). codebooks: (P, S, C, d/S). codes: (B, L, P, S).

    Returns:
        (B, N, L).
    """
    P, S, C, w = codebooks.shape
    shape = tf.shape(u)
    B, N = shape[0], shape[1]
    lut = tf.einsum("bnsw,pscw->bpscn", tf.reshape(u, [B, N, S, w]), codebooks)
    lut = tf.reshape(lut, [B, P * S * C, N])
    offsets = tf.reshape(tf.range(P * S, dtype=tf.int32) * C, [P, S])
    L = tf.shape(codes)[1]
    flat = tf.reshape(tf.cast(codes, tf.int32) + offsets, [B, L * P * S])
    picked = tf.gather(lut, flat, batch_dims=1)  # (B, L*P*S, N)
    return tf.transpose(tf.reduce_sum(tf.reshape(picked, [B, L, P * S, N]), 2), [0, 2, 1])


@register
class PQLookupAttention(Retrieval):
    """PQ lookup-attention GSU (see the module docstring).

    Args:
        top_k: K.
        num_items: item vocabulary size (rows of the code table).
        num_parts: P codebook parts, summed (`seminar_tf.pq.quantizer.codebook_layout`:
            modalities or 1 combined; x stages / sub-spaces for full-d codewords).
        num_subspaces: S sub-spaces of d/S dims per part (1: full-d codewords).
        num_codewords: C. dim: d.
        rank_scoring: "decode" or "lookup" (`call_many`, see the module docstring).
        attention: the ESU (`query_in_key_space` gives u).
        pair_encoder: the ranker's `QueryItemPairEncoder` (query token table, no-query
            vector and the pair weight of the query).

    Weights (non-trainable, saved): `codebooks` (P, S, C, d/S) float32 and `item_codes`
    (num_items, P, S) uint8.

    Input: dict with target (B, d), hist_items (B, L), hist_query (B, L, Q), mask (B, L),
        and optionally hist_codes (B, L, P, S): per-behaviour codes from a sequence store
        (then the code table is not consulted).
    Output: dict of indices (B, K), scores (B, K), valid (B, K).
    """

    target_masks = True
    needs_keys = False
    nested_layers = ("attention", "pair_encoder")

    def __init__(self, top_k: int, num_items: int, num_parts: int, num_subspaces: int,
                 num_codewords: int, dim: int, attention, pair_encoder,
                 rank_scoring: str = "decode", **kwargs):
        super().__init__(top_k, **kwargs)
        if rank_scoring not in ("decode", "lookup"):
            raise ValueError(f"rank_scoring must be 'decode' or 'lookup', not {rank_scoring!r}")
        self.rank_scoring = rank_scoring
        self.num_items, self.num_parts = num_items, num_parts
        self.num_subspaces, self.num_codewords, self.dim = num_subspaces, num_codewords, dim
        self.attention, self.pair_encoder = attention, pair_encoder
        self.static_shapes = False

    def use_static_shapes(self, static: bool = True) -> None:
        """Score the query part through per-behaviour query vectors (XLA) instead of the
        request's unique tokens (see the module docstring, item 3); the query encoder
        then takes its dense (static-shape) path too."""
        self.static_shapes = static
        self.pair_encoder.query_encoder.sparse = not static

    @classmethod
    def from_ranker(cls, ranker, **options) -> "PQLookupAttention":
        """Options come from the `pq` config section (shared with codebook building)."""
        from seminar_tf.pq.quantizer import codebook_layout
        cfg = ranker.config
        parts, subspaces = codebook_layout(cfg.pq, len(ranker.pair_encoder.item_encoder
                                                       .modalities))
        return cls(ranker.top_k, cfg.data.item_vocab_size, parts, subspaces,
                   cfg.pq.num_codewords, cfg.model.embedding_dim, ranker.esu,
                   ranker.pair_encoder, rank_scoring=cfg.pq.rank_scoring, name="gsu")

    def build(self, input_shape=None):
        self.codebooks = self.add_weight(
            name="codebooks", shape=(self.num_parts, self.num_subspaces, self.num_codewords,
                                     self.dim // self.num_subspaces),
            initializer="zeros", trainable=False)
        self.item_codes = self.add_weight(
            name="item_codes", shape=(self.num_items, self.num_parts, self.num_subspaces),
            dtype=tf.uint8, initializer="zeros", trainable=False)
        super().build(input_shape)

    def set_codebooks(self, codebooks, item_codes) -> None:
        if not self.built:
            self.build()
        self.codebooks.assign(codebooks)
        self.item_codes.assign(item_codes)

    def query_part_scores(self, u, tokens):
        """Exact scores of the behaviours' query parts `a * q_l` via a token table.

        Only the tokens present in the request are scored: their unique ids are gathered
        from the embedding table (U <= B*L*Q rows, never the whole query vocabulary), one
        einsum gives `<u_b, E[token]>` per request and unique token, and each behaviour
        gathers its tokens' entries.
        """
        qe = self.pair_encoder.query_encoder
        if self.static_shapes:
            vectors, _ = qe(tokens)  # (B, L, d): masked mean or the no-query vector
            return self.pair_encoder.pair_fusion.weight_of_query() * tf.einsum(
                "bd,bld->bl", u, vectors)
        B = tf.shape(tokens)[0]
        unique, position = tf.unique(tf.reshape(tokens, [-1]))
        emb = tf.gather(qe.token_embedding.embeddings, unique)  # (U, d)
        table = tf.einsum("bd,ud->bu", u, emb)  # (B, U)
        per_token = tf.reshape(tf.gather(table, tf.reshape(position, [B, -1]), batch_dims=1),
                               tf.shape(tokens))
        present = tf.cast(tokens != PAD_ID, per_token.dtype)
        count = tf.reduce_sum(present, -1)
        mean = tf.reduce_sum(per_token * present, -1) / tf.maximum(count, 1.0)
        no_query = tf.einsum("bd,d->b", u, qe.no_query)[:, None]
        return self.pair_encoder.pair_fusion.weight_of_query() * tf.where(count > 0, mean,
                                                                          no_query)

    def scores(self, inputs):
        if not self.built:
            self.build()
        u = self.attention.query_in_key_space(inputs["target"])
        return pq_item_scores(u, self.codebooks, self._codes(inputs)) + self.query_part_scores(
            u, inputs["hist_query"])

    def call(self, inputs):
        return masked_top_k(self.scores(inputs), inputs["mask"], self.top_k)

    def _codes(self, inputs):
        codes = inputs.get("hist_codes")
        return tf.gather(self.item_codes, inputs["hist_items"]) if codes is None else codes

    def scores_many(self, inputs):
        """(B, N, L) scores of N candidates per history (`rank_scoring`)."""
        if not self.built:
            self.build()
        u = per_candidate(self.attention.query_in_key_space, inputs["target"])  # (B, N, d)
        codes = self._codes(inputs)
        if self.rank_scoring == "decode":
            # one key per behaviour: decoded item parts + the exact query part
            query_vec, _ = self.pair_encoder.query_encoder(inputs["hist_query"])
            keys = (pq_decode(self.codebooks, codes)
                    + self.pair_encoder.pair_fusion.weight_of_query() * query_vec)
            return tf.einsum("bnd,bld->bnl", u, keys)
        return (pq_item_scores_many(u, self.codebooks, codes)
                + self.query_part_scores_many(u, inputs["hist_query"]))

    def query_part_scores_many(self, u, tokens):
        """`query_part_scores` for u (B, N, d) against tokens (B, L, Q): (B, N, L)."""
        qe = self.pair_encoder.query_encoder
        if self.static_shapes:
            vectors, _ = qe(tokens)
            return self.pair_encoder.pair_fusion.weight_of_query() * tf.einsum(
                "bnd,bld->bnl", u, vectors)
        shape = tf.shape(tokens)
        B, L, Q = shape[0], shape[1], shape[2]
        unique, position = tf.unique(tf.reshape(tokens, [-1]))
        emb = tf.gather(qe.token_embedding.embeddings, unique)  # (U, d)
        table = tf.einsum("bnd,ud->bun", u, emb)  # (B, U, N)
        per_token = tf.gather(table, tf.reshape(position, [B, L * Q]), batch_dims=1)
        per_token = tf.reshape(per_token, [B, L, Q, -1])
        present = tf.cast(tokens != PAD_ID, per_token.dtype)[..., None]
        count = tf.reduce_sum(present, 2)  # (B, L, 1)
        mean = tf.reduce_sum(per_token * present, 2) / tf.maximum(count, 1.0)
        no_query = tf.einsum("bnd,d->bn", u, qe.no_query)[:, None, :]
        scores = tf.where(count > 0, mean, no_query)  # (B, L, N)
        return self.pair_encoder.pair_fusion.weight_of_query() * tf.transpose(scores, [0, 2, 1])

    def call_many(self, inputs):
        return masked_top_k(self.scores_many(inputs), many_mask(inputs),
                            self.top_k)

    def get_config(self):
        return {**super().get_config(), "num_items": self.num_items,
                "num_parts": self.num_parts, "num_subspaces": self.num_subspaces,
                "num_codewords": self.num_codewords, "dim": self.dim,
                "rank_scoring": self.rank_scoring}
