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

`call_many` is the shared-history form used by the `rank` signature and evaluation: N
candidates per history. The target entries gain an N axis (target (B, N, d), target_item
(B, N), ...), the history entries are unchanged, and every output gains it (indices
(B, N, K), summary (B, N, d)). Each retriever scores all N candidates against the history
in one op; the base class falls back to repeating the history N times (correct, O(N) work).
"""
from __future__ import annotations

from typing import Dict

import numpy as np
import tensorflow as tf

# Scores closer than one step of a grid of 2**-TIE_BITS of the row's power-of-two scale
# tie, and ties go to the most recent behaviour (docs/design.md, "GSU tie rule").
from seminar_tf.layers.retrieval.ties import TIE_BITS, determined_rows


def selection_keys(scores: tf.Tensor, mask: tf.Tensor, bits: int = TIE_BITS) -> tf.Tensor:
    """The values `masked_top_k` ranks by: `scores` rounded to a per-row grid.

    The grid step is `2**(ceil(log2(max |score|)) - bits)` over the row's masked positions
    (a power of two, so the division is exact). Formulations of the same scores that differ
    by float noise (the per-candidate and the shared-history paths, one machine's kernels
    and another's) then give *equal* keys, except where a score lies within the noise of a
    grid edge; copies of one behaviour (a repeated item) tie exactly.

    Args:
        scores: (..., L) float. mask: (..., L) bool, broadcastable to `scores`.
        bits: grid resolution (steps per power-of-two scale).

    Returns:
        (..., L) float keys: integers in [-2**bits, 2**bits] (masked positions: any value).
    """
    mask = tf.broadcast_to(mask, tf.shape(scores))
    top = tf.reduce_max(tf.where(mask, tf.abs(scores), tf.zeros_like(scores)), -1,
                        keepdims=True)
    tiny = tf.constant(np.finfo(np.float32).tiny, scores.dtype)
    exponent = tf.math.ceil(tf.math.log(tf.maximum(top, tiny)) / np.log(2.0))
    step = tf.pow(tf.constant(2.0, scores.dtype), exponent - bits)
    return tf.round(scores / step)


def masked_top_k(scores: tf.Tensor, mask: tf.Tensor, k: int) -> Dict[str, tf.Tensor]:
    """Top-k of `scores` over positions where `mask`, with a validity mask.

    The tie rule: positions are ranked by `selection_keys` (scores on a grid, so near-equal
    scores tie the same way on every path and machine), and ties go to the *later* position
    (positions are oldest-first, so the most recent behaviour wins). Returned scores are the
    raw scores of the selected positions. Callers whose candidate positions are not in time
    order sort them first (QIN's second stage).

    Args:
        scores: (..., L) float. mask: (..., L) bool, broadcastable to `scores`.
        k: static int <= L.

    Returns:
        dict of indices (..., k) int32, scores (..., k) (0 where invalid), valid (..., k)
        bool; ordered by key, later positions first among equal keys.
    """
    floor = tf.constant(np.finfo(np.float32).min, scores.dtype)
    mask = tf.broadcast_to(mask, tf.shape(scores))
    keys = tf.where(mask, selection_keys(scores, mask), floor)
    idx = later_first_top_k(keys, k)
    batch_dims = scores.shape.rank - 1
    valid = tf.gather(mask, idx, batch_dims=batch_dims)
    top = tf.gather(scores, idx, batch_dims=batch_dims)
    return {"indices": idx, "scores": tf.where(valid, top, tf.zeros_like(top)), "valid": valid}


def later_first_top_k(keys: tf.Tensor, k: int) -> tf.Tensor:
    """Positions (..., k) int32 of the k largest `keys` (..., L), later positions first among
    equal keys (top_k puts the lower index first: on the reversed row, the later one).

    For long rows (static L >= 128 k) the row is cut into chunks of c and only the k chunks
    with the largest maxima are searched (chunk order: maximum, then later chunk first): an
    element outside them has k chunk maxima above it in the (key, position) order, so the
    result is exactly the full top-k (k*c instead of L candidates; the threshold comes from
    a scratch timing on random scores, not a benchmark script: no gain at L=10,000).
    """
    rev = tf.reverse(keys, [-1])
    L = keys.shape[-1]
    if L is None or L < 128 * k:
        _, got = tf.math.top_k(rev, k=k)
        return tf.shape(keys)[-1] - 1 - got
    c = 32 if L >= 512 * k else 16
    n = -(-L // c)
    lead = tf.shape(keys)[:-1]
    if n * c > L:  # padding chunks' tails rank below everything
        rev = tf.concat([rev, tf.fill(tf.concat([lead, [n * c - L]], 0),
                                      tf.constant(-np.inf, keys.dtype))], -1)
    chunks = tf.reshape(rev, tf.concat([lead, [n, c]], 0))
    _, best = tf.math.top_k(tf.reduce_max(chunks, -1), k=k)
    best = tf.sort(best, -1)  # candidates in row order, so ties still go to the lower index
    dims = keys.shape.rank - 1
    cand = tf.reshape(tf.gather(chunks, best, batch_dims=dims), tf.concat([lead, [k * c]], 0))
    _, j = tf.math.top_k(cand, k=k)
    return L - 1 - (tf.gather(best, j // c, batch_dims=dims) * c + j % c)


TARGET_KEYS = ("target", "target_query", "target_item", "target_attrs")


def many_mask(inputs) -> tf.Tensor:
    """The positions each of `call_many`'s N targets may select: `target_mask` (B, N, L)
    where the targets read different slices of one history (timeline windows,
    `seminar_tf.models.windows`), else the history's `mask` (B, 1, L)."""
    if "target_mask" in inputs:
        return inputs["target_mask"]
    return inputs["mask"][:, None, :]


def rows(x):
    """(B, N, ...) -> (B*N, ...): the one merge of the candidate axis into rows."""
    return tf.reshape(x, tf.concat([[-1], tf.shape(x)[2:]], 0))


def unrows(x, batch_shape):
    """(B*N, ...) -> (B, N, ...) for `batch_shape` = [B, N]."""
    return tf.reshape(x, tf.concat([batch_shape, tf.shape(x)[1:]], 0))


def flatten_many(inputs):
    """Shared-history inputs -> per-candidate inputs: targets (B, N, ...) to (B*N, ...),
    history entries repeated N times."""
    N = tf.shape(inputs["target"])[1]
    return {key: rows(x) if key in TARGET_KEYS else tf.repeat(x, N, axis=0)
            for key, x in inputs.items() if key != "row_query"}


def per_candidate(fn, *xs):
    """Applies `fn` (written for (B, ...) rows) to (B, N, ...) tensors by merging the first
    two axes; a dict output is split back key by key."""
    y = fn(*[rows(x) for x in xs])
    shape = tf.shape(xs[0])[:2]
    return ({k: unrows(v, shape) for k, v in y.items()} if isinstance(y, dict)
            else unrows(y, shape))


def unflatten(outputs, batch_shape):
    """(B*N, ...) outputs -> (B, N, ...)."""
    return {k: unrows(v, batch_shape) for k, v in outputs.items()}


def union_positions(indices, valid, L: int, S: int):
    """The history positions a row's targets read, once: the union of the valid retrieved
    positions of its N targets and the S most recent positions, ascending and right-aligned
    in (B, U) with U the largest union of the batch (<= min(L, N*K + S); the slots before a
    shorter row's union repeat position 0 and are never read).

    Args:
        indices, valid: (B, N, K) GSU output. L: history length. S: short-term window.

    Returns:
        positions (B, U) int32, and `indices` mapped into [0, U) (B, N, K).
    """
    B = tf.shape(indices)[0]
    b = tf.broadcast_to(tf.range(B)[:, None, None], tf.shape(indices))
    hits = tf.scatter_nd(tf.stack([b, tf.cast(indices, tf.int32)], -1),
                         tf.cast(valid, tf.int32), tf.stack([B, L]))
    used = (hits > 0) | (tf.range(L) >= L - S)[None, :]
    count = tf.reduce_sum(tf.cast(used, tf.int32), 1)  # (B,)
    U = tf.reduce_max(tf.concat([count, [min(L, S)]], 0))  # defined for B = 0 too
    slot = tf.cumsum(tf.cast(used, tf.int32), axis=1, exclusive=True) + (U - count)[:, None]
    rows_b = tf.broadcast_to(tf.range(B)[:, None], [B, L])
    where = tf.boolean_mask(tf.stack([rows_b, slot], -1), used)
    positions = tf.scatter_nd(where, tf.boolean_mask(
        tf.broadcast_to(tf.range(L)[None, :], [B, L]), used), tf.stack([B, U]))
    mapped = tf.gather(slot, tf.cast(indices, tf.int32), batch_dims=1)
    return positions, tf.where(valid, mapped, tf.zeros_like(mapped))


class Retrieval(tf.keras.layers.Layer):
    """Base class: `top_k` and config.

    `needs_keys`: whether the retriever scores the float keys of all L behaviours. When
    False, the ranker encodes only the K retrieved behaviours (and the short-term window).
    `target_masks`: whether `call_many` takes per-target masks (`many_mask`; last-N also
    `target_end` (B, N), each target's history end).
    """

    needs_keys = True
    # call_many honours `target_mask` / `target_end` (`many_mask`): timeline batches then
    # score each window once for all its targets (`seminar_tf.models.windows`)
    target_masks = False
    nested_layers = ()  # constructor args that are (shared) layers, serialized by config

    def __init__(self, top_k: int, **kwargs):
        super().__init__(**kwargs)
        self.top_k = top_k

    def get_config(self):
        config = {**super().get_config(), "top_k": self.top_k}
        for name in self.nested_layers:
            config[name] = tf.keras.layers.serialize(getattr(self, name))
        return config

    def use_static_shapes(self, static: bool = True) -> None:
        """Called by `seminar export --xla`: prefer formulations with static shapes (XLA pads
        a dynamic shape to its upper bound). Retrievers whose ops are all static ignore it."""

    def determined(self, inputs, delta: float) -> np.ndarray:
        """(B,) bool, eagerly: rows whose selection no relative float noise of `delta` in the
        scores can change under the tie rule (`ties.determined_rows`). Retrievers that do
        not rank float scores (no `scores` method: last-N, SIM-hard's exact matches) are
        determined everywhere; multi-stage ones override."""
        if not hasattr(self, "scores"):
            return np.ones(inputs["mask"].shape[0], bool)
        return determined_rows(self.scores(inputs).numpy(), inputs["mask"].numpy(),
                               self.top_k, delta)

    @classmethod
    def top_k_for(cls, config, **options) -> int:
        """K under `config` and this retriever's table options (default `model.top_k`)."""
        return config.model.top_k

    def call(self, inputs):
        """One target per row: `call_many` with N = 1 (retrievers whose per-target form is
        cheaper override it)."""
        many = {k: (v[:, None] if k in TARGET_KEYS else v) for k, v in inputs.items()}
        return {k: v[:, 0] for k, v in self.call_many(many).items()}

    def call_many(self, inputs):
        """N candidates against one history per row (see the module docstring). Every
        retriever implements it; this fallback repeats the history N times and runs a
        per-target `call` override on B*N rows."""
        if type(self).call is Retrieval.call:
            raise NotImplementedError(f"{type(self).__name__} implements neither call_many "
                                      "nor call")
        return unflatten(self(flatten_many(inputs)), tf.shape(inputs["target"])[:2])

    @classmethod
    def from_ranker(cls, ranker, **options) -> "Retrieval":
        """Builds this GSU for a `LifelongRanker` (its ESU, encoders and config).

        Args:
            ranker: the ranker (`ranker.top_k`, `ranker.esu`, `ranker.pair_encoder`,
                `ranker.config`).
            **options: this retriever's options (defaults in the RETRIEVERS table,
                overridden by `model.gsu_options[<name>]`).
        """
        return cls(ranker.top_k, **options, name="gsu")

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for name in cls.nested_layers:
            config[name] = tf.keras.layers.deserialize(config[name])
        return cls(**config)
