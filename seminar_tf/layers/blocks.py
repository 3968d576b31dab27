"""Small building blocks of the ranker: time-gap buckets, MLPs, the short-term summary."""
from __future__ import annotations

import numpy as np
import tensorflow as tf


def time_gap_buckets(gaps: tf.Tensor, num_buckets: int) -> tf.Tensor:
    """log2 buckets of time gaps in seconds (minutes resolution): ids in [1, num_buckets]."""
    minutes = tf.maximum(gaps, 0.0) / 60.0
    b = tf.cast(tf.floor(tf.math.log(1.0 + minutes) / np.log(2.0)), tf.int32) + 1
    return tf.clip_by_value(b, 1, num_buckets)


def mlp(units, dropout: float, name: str) -> tf.keras.Sequential:
    layers = []
    for k, u in enumerate(units):
        layers.append(tf.keras.layers.Dense(u, activation="relu", name=f"{name}_dense{k}"))
        if dropout:
            layers.append(tf.keras.layers.Dropout(dropout))
    return tf.keras.Sequential(layers, name=name)


def short_term_of(values, mask):
    """Masked mean of the short-term window: values (B, S, d), mask (B, S) -> (B, d)."""
    m = tf.cast(mask, values.dtype)[..., None]
    return tf.reduce_sum(values * m, 1) / tf.maximum(tf.reduce_sum(m, 1), 1.0)
