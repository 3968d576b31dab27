"""The base of the PSU objectives and the per-batch encodings they share."""
from __future__ import annotations

from typing import Dict, NamedTuple

import tensorflow as tf


class Batch(NamedTuple):
    """What the PSU computes once per batch and every objective may use.

    Shapes (B rows, L row width, T scored columns = the last T of L, d width):
        items (B, L) int64, mask (B, L) bool (real behaviours), enc: the pair encoder's
        outputs over the rows (pair, item, query (B, L, d); raw (B, L, M, d); valid
        (B, L, M); has_query (B, L)), values (B, L, d) pair + source embeddings, cols: the
        slice of the T scored columns, temperature: scalar tau, features: the parsed batch,
        scored (B, T) bool: the scored columns that count (real, and scored for some target
        of the row), context: how many behaviours before a scored position its context
        reads, row_users (B,): the user of each row (negatives come from other users).

    Per-example batches: a row is one target's history (L = `max_seq_len`), right-aligned;
    timeline batches (`PretrainingSearchUnit.window_batch`): a row is a window of L + T'
    behaviours shared by T' consecutive targets, right-aligned, scoring the union of its
    targets' positions once.
    """
    items: tf.Tensor
    mask: tf.Tensor
    enc: Dict[str, tf.Tensor]
    values: tf.Tensor
    cols: slice
    T: int
    temperature: tf.Tensor
    features: Dict[str, tf.Tensor]
    scored: tf.Tensor
    context: int
    row_users: tf.Tensor


class Objective(tf.keras.layers.Layer):
    """One PSU objective: `loss(psu, batch)` returns a scalar (before weighting).

    Subclasses create their Task (loss + metric) in `__init__` and read whatever they need
    from the `Batch` and from the PSU's shared layers (`psu.pair_encoder`, `psu.esu`,
    `psu.source_embedding`) and config (`psu.config`).
    """

    def loss(self, psu, batch: Batch) -> tf.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement loss()")
