"""The base of the PSU objectives and the per-batch encodings they share."""
from __future__ import annotations

from typing import Dict, NamedTuple

import tensorflow as tf


class Batch(NamedTuple):
    """What the PSU computes once per batch and every objective may use.

    Shapes (B batch, L history, T scored positions = the last T of L, d width):
        items (B, L) int64, mask (B, L) bool, enc: the pair encoder's outputs over the
        history (pair, item, query (B, L, d); raw (B, L, M, d); valid (B, L, M);
        has_query (B, L)), values (B, L, d) pair + source embeddings, cols: the slice of
        the T scored positions, temperature: scalar tau, features: the parsed batch.
    """
    items: tf.Tensor
    mask: tf.Tensor
    enc: Dict[str, tf.Tensor]
    values: tf.Tensor
    cols: slice
    T: int
    temperature: tf.Tensor
    features: Dict[str, tf.Tensor]


class Objective(tf.keras.layers.Layer):
    """One PSU objective: `loss(psu, batch)` returns a scalar (before weighting).

    Subclasses create their Task (loss + metric) in `__init__` and read whatever they need
    from the `Batch` and from the PSU's shared layers (`psu.pair_encoder`, `psu.esu`,
    `psu.source_embedding`) and config (`psu.config`).
    """

    def loss(self, psu, batch: Batch) -> tf.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement loss()")
