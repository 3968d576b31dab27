"""The example contract: the one place where the `tf.train.Example` schema is defined.

One Example per target event (docs/design.md §3). Its history holds behaviours strictly
before the target's timestamp, oldest first and most recent last, at most `max_seq_len` of them
(the most recent). History fields are stored unpadded; `parse_examples` truncates to the most
recent `max_seq_len` and **left-pads** with 0, so that position L-1 is always the most recent
behaviour and `[:, -N:]` is the last N behaviours.

Feature (Example key)   dtype    stored length    parsed shape
----------------------  -------  ---------------  -------------
user_id                 int64    1                (B,)
timestamp               int64    1                (B,)        unix seconds of the target
target_item             int64    1                (B,)
target_query            int64    Q (0-padded)     (B, Q)
target_attrs            int64    A (0-padded)     (B, A)
target_source           int64    1                (B,)        1 recommendation, 2 search
label                   float    1                (B,)
hist_items              int64    n                (B, L)
hist_query              int64    n * Q            (B, L, Q)
hist_attrs              int64    n * A            (B, L, A)
hist_sources            int64    n                (B, L)
hist_time_gaps          float    n                (B, L)      seconds before the target

The `rank` signature (one user, N candidates) splits an example in two: a context Example
(user_id, timestamp, target_query, target_source and the history) and N candidate Examples
(target_item, target_attrs; label and group_id for evaluation), both parsed with this spec
(`parse_context`, `parse_candidates`).

Parsing also yields `hist_mask` (B, L) bool (real behaviours), `target_query_mask` (B, Q) and
`hist_query_mask` (B, L, Q). Id 0 is padding everywhere; ids outside a vocabulary (negative or
>= its size) map to `OOV_ID`. The same `feature_spec` parses training data and serving requests.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Mapping, Optional

import numpy as np

import tensorflow as tf

from seminar_tf.example_writer import ExampleWriter
from seminar_tf.feature_names import (  # noqa: F401  (re-exported: F.HIST_ITEMS, ...)
    PAD_ID, OOV_ID, FIRST_ID, SOURCE_PAD, SOURCE_REC, SOURCE_SEARCH, USER_ID, TIMESTAMP,
    TARGET_ITEM, TARGET_QUERY, TARGET_ATTRS, TARGET_SOURCE, LABEL, GROUP_ID, HIST_ITEMS,
    HIST_QUERY, HIST_ATTRS, HIST_SOURCES, HIST_TIME_GAPS, HIST_MASK, TARGET_QUERY_MASK,
    HIST_QUERY_MASK, SCALAR_INT_FEATURES, HISTORY_FEATURES, CANDIDATE_FEATURES, CANDIDATE_MASK,
    RANK_CONTEXT, RANK_CANDIDATES, ContractError)


@dataclasses.dataclass(frozen=True)
class FeatureContract(ExampleWriter):
    """Shapes and vocabulary sizes that parsing depends on.

    Attributes:
        max_seq_len: L.
        max_query_tokens: Q.
        num_attrs: A.
        item_vocab_size, query_vocab_size, attr_vocab_size, user_vocab_size: ids at or
            above these (or negative) are mapped to OOV_ID when parsing.
    """
    max_seq_len: int
    max_query_tokens: int
    num_attrs: int
    item_vocab_size: int
    query_vocab_size: int
    attr_vocab_size: int
    user_vocab_size: int

    @classmethod
    def from_config(cls, data_cfg) -> "FeatureContract":
        """Builds the contract from a `seminar_tf.config.DataConfig`."""
        return cls(max_seq_len=data_cfg.max_seq_len,
                   max_query_tokens=data_cfg.max_query_tokens,
                   num_attrs=data_cfg.num_attrs,
                   item_vocab_size=data_cfg.item_vocab_size,
                   query_vocab_size=data_cfg.query_vocab_size,
                   attr_vocab_size=data_cfg.attr_vocab_size,
                   user_vocab_size=data_cfg.user_vocab_size)

    # ------------------------------------------------------------------ parsing
    def feature_spec(self) -> Dict[str, object]:
        """The `tf.io.parse_example` spec shared by training and serving."""
        q, a = self.max_query_tokens, self.num_attrs
        return {
            USER_ID: tf.io.FixedLenFeature([], tf.int64, default_value=0),
            TIMESTAMP: tf.io.FixedLenFeature([], tf.int64, default_value=0),
            TARGET_ITEM: tf.io.FixedLenFeature([], tf.int64),
            TARGET_QUERY: tf.io.FixedLenFeature([q], tf.int64, default_value=[0] * q),
            TARGET_ATTRS: tf.io.FixedLenFeature([a], tf.int64, default_value=[0] * a),
            TARGET_SOURCE: tf.io.FixedLenFeature([], tf.int64, default_value=SOURCE_REC),
            LABEL: tf.io.FixedLenFeature([], tf.float32, default_value=0.0),
            GROUP_ID: tf.io.FixedLenFeature([], tf.int64, default_value=0),
            HIST_ITEMS: tf.io.RaggedFeature(tf.int64),
            HIST_QUERY: tf.io.RaggedFeature(tf.int64),
            HIST_ATTRS: tf.io.RaggedFeature(tf.int64),
            HIST_SOURCES: tf.io.RaggedFeature(tf.int64),
            HIST_TIME_GAPS: tf.io.RaggedFeature(tf.float32),
        }

    def parse_examples(self, serialized: tf.Tensor) -> Dict[str, tf.Tensor]:
        """Parses a batch of serialized Examples into padded dense tensors plus masks.

        Args:
            serialized: string tensor of shape (B,).

        Returns:
            Dict of dense tensors with the shapes listed in the module docstring.

        Raises:
            tf.errors.InvalidArgumentError: a record's history fields have inconsistent
                lengths (e.g. hist_query is not Q times hist_items), naming the field.
        """
        raw = tf.io.parse_example(serialized, self.feature_spec())
        return self.densify(raw)

    def parse_context(self, serialized: tf.Tensor,
                      item_attrs: Optional[tf.Tensor] = None) -> Dict[str, tf.Tensor]:
        """Parses the `rank` signature's context Examples (B,): user, query, source and
        history, as in `parse_examples` (target item, attributes and label not needed).

        Args:
            item_attrs: (item vocabulary, A) ids: the behaviours' attributes are looked up
                by item id instead of read from the Examples (which may leave them out).
        """
        spec = dict(self.feature_spec(), **{TARGET_ITEM: tf.io.FixedLenFeature(
            [], tf.int64, default_value=PAD_ID)})
        raw = tf.io.parse_example(serialized, spec)
        if item_attrs is not None:
            items = raw[HIST_ITEMS]
            attrs = tf.gather(item_attrs, self._oov(items.flat_values, self.item_vocab_size))
            raw[HIST_ATTRS] = tf.RaggedTensor.from_row_lengths(
                tf.reshape(attrs, [-1]), items.row_lengths() * self.num_attrs)
        out = self.densify(raw)
        return {k: v for k, v in out.items() if k not in CANDIDATE_FEATURES}

    def parse_candidates(self, serialized: tf.Tensor) -> Dict[str, tf.Tensor]:
        """Parses the `rank` signature's candidate Examples (B, N); "" is padding.

        Returns:
            dict of target_item (B, N), target_attrs (B, N, A), label (B, N), group_id
            (B, N) and `candidate_mask` (B, N) bool (False for padding).
        """
        shape = tf.shape(serialized)
        pad = tf.train.Example(features=tf.train.Features(feature={TARGET_ITEM: tf.train.Feature(
            int64_list=tf.train.Int64List(value=[PAD_ID]))})).SerializeToString()
        mask = serialized != ""
        flat = tf.reshape(tf.where(mask, serialized, pad), [-1])
        raw = tf.io.parse_example(flat, {k: v for k, v in self.feature_spec().items()
                                         if k in CANDIDATE_FEATURES})
        out = {TARGET_ITEM: self._oov(raw[TARGET_ITEM], self.item_vocab_size),
               TARGET_ATTRS: self._oov(raw[TARGET_ATTRS], self.attr_vocab_size),
               LABEL: raw[LABEL], GROUP_ID: raw[GROUP_ID]}
        out = {k: tf.reshape(v, tf.concat([shape, tf.shape(v)[1:]], 0)) for k, v in out.items()}
        out[CANDIDATE_MASK] = mask
        return out

    def parse_ranking_records(self, serialized: tf.Tensor):
        """Parses stored ranking records (B,) into (context, candidates) as the `rank`
        signature does (candidates padded with "" to the longest list of the batch)."""
        raw = tf.io.parse_example(serialized, {
            RANK_CONTEXT: tf.io.FixedLenFeature([], tf.string),
            RANK_CANDIDATES: tf.io.RaggedFeature(tf.string)})
        return (self.parse_context(raw[RANK_CONTEXT]),
                self.parse_candidates(raw[RANK_CANDIDATES].to_tensor(default_value="")))

    def densify(self, raw: Mapping[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        """Truncates, pads, maps OOV ids and adds masks to parsed (ragged) features."""
        L, Q, A = self.max_seq_len, self.max_query_tokens, self.num_attrs
        items = raw[HIST_ITEMS]
        n = items.row_lengths()
        checks = [
            tf.debugging.assert_equal(raw[HIST_QUERY].row_lengths(), n * Q, message=(
                f"{HIST_QUERY} must hold max_query_tokens ({Q}) tokens per history item")),
            tf.debugging.assert_equal(raw[HIST_ATTRS].row_lengths(), n * A, message=(
                f"{HIST_ATTRS} must hold num_attrs ({A}) ids per history item")),
            tf.debugging.assert_equal(raw[HIST_SOURCES].row_lengths(), n, message=(
                f"{HIST_SOURCES} must have one value per history item")),
            tf.debugging.assert_equal(raw[HIST_TIME_GAPS].row_lengths(), n, message=(
                f"{HIST_TIME_GAPS} must have one value per history item")),
            tf.debugging.assert_all_finite(raw[HIST_TIME_GAPS].values, message=(
                f"{HIST_TIME_GAPS} must hold finite values")),
        ]
        with tf.control_dependencies(checks):
            n = tf.identity(n)
        hist_query = tf.RaggedTensor.from_row_lengths(
            tf.reshape(raw[HIST_QUERY].values, [-1, Q]), n)
        hist_attrs = tf.RaggedTensor.from_row_lengths(
            tf.reshape(raw[HIST_ATTRS].values, [-1, A]), n)
        kept = tf.minimum(n, L)

        def recent_left_padded(rt, inner_shape=()):
            dense = rt[:, -L:].to_tensor(default_value=tf.zeros([], rt.dtype),
                                         shape=[None, L, *inner_shape])
            return tf.reverse(tf.reverse_sequence(dense, kept, seq_axis=1, batch_axis=0),
                              axis=[1])

        dense = {k: raw[k] for k in (USER_ID, TIMESTAMP, TARGET_ITEM, TARGET_QUERY,
                                      TARGET_ATTRS, TARGET_SOURCE, LABEL, GROUP_ID)}
        dense.update({
            HIST_ITEMS: recent_left_padded(items),
            HIST_QUERY: recent_left_padded(hist_query, (Q,)),
            HIST_ATTRS: recent_left_padded(hist_attrs, (A,)),
            HIST_SOURCES: recent_left_padded(raw[HIST_SOURCES]),
            HIST_TIME_GAPS: recent_left_padded(raw[HIST_TIME_GAPS]),
        })
        return self.finish(dense)

    def finish(self, dense: Mapping[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        """Maps OOV ids and adds the masks to dense, left-padded features (the last step of
        `densify`, shared with the sequence-store input `seminar_tf.data.store`)."""
        out = self.map_oov(dense)
        out[HIST_MASK] = out[HIST_ITEMS] != PAD_ID
        out[TARGET_QUERY_MASK] = out[TARGET_QUERY] != PAD_ID
        out[HIST_QUERY_MASK] = out[HIST_QUERY] != PAD_ID
        return out

    def sanitize_dense(self, features: Mapping[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        """Dense inputs (the `predict` signature) held to what parsing guarantees.

        Ids outside a vocabulary (negative or too large) become OOV, as in `densify`;
        non-finite time gaps fail with InvalidArgumentError naming the field.
        """
        out = self.map_oov(features)
        if HIST_TIME_GAPS in out:
            out[HIST_TIME_GAPS] = tf.debugging.assert_all_finite(
                out[HIST_TIME_GAPS], message=f"{HIST_TIME_GAPS} must hold finite values")
        return out

    def map_oov(self, features: Mapping[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        """Id features outside their vocabulary (negative or too large) -> OOV_ID."""
        vocab = {USER_ID: self.user_vocab_size, TARGET_ITEM: self.item_vocab_size,
                 TARGET_QUERY: self.query_vocab_size, TARGET_ATTRS: self.attr_vocab_size,
                 HIST_ITEMS: self.item_vocab_size, HIST_QUERY: self.query_vocab_size,
                 HIST_ATTRS: self.attr_vocab_size}
        return {k: self._oov(v, vocab[k]) if k in vocab else v for k, v in features.items()}

    @staticmethod
    def _oov(ids: tf.Tensor, vocab_size: int) -> tf.Tensor:
        bad = (ids < 0) | (ids >= vocab_size)
        return tf.where(bad, tf.constant(OOV_ID, ids.dtype), ids)

    def dense_input_signature(self) -> Dict[str, tf.TensorSpec]:
        """TensorSpecs of the dense model inputs (the `predict` serving signature)."""
        L, Q, A = self.max_seq_len, self.max_query_tokens, self.num_attrs
        return {
            USER_ID: tf.TensorSpec([None], tf.int64, USER_ID),
            TARGET_ITEM: tf.TensorSpec([None], tf.int64, TARGET_ITEM),
            TARGET_QUERY: tf.TensorSpec([None, Q], tf.int64, TARGET_QUERY),
            TARGET_ATTRS: tf.TensorSpec([None, A], tf.int64, TARGET_ATTRS),
            TARGET_SOURCE: tf.TensorSpec([None], tf.int64, TARGET_SOURCE),
            HIST_ITEMS: tf.TensorSpec([None, L], tf.int64, HIST_ITEMS),
            HIST_QUERY: tf.TensorSpec([None, L, Q], tf.int64, HIST_QUERY),
            HIST_ATTRS: tf.TensorSpec([None, L, A], tf.int64, HIST_ATTRS),
            HIST_SOURCES: tf.TensorSpec([None, L], tf.int64, HIST_SOURCES),
            HIST_TIME_GAPS: tf.TensorSpec([None, L], tf.float32, HIST_TIME_GAPS),
        }


def to_numpy(batch: Mapping[str, tf.Tensor]) -> Dict[str, np.ndarray]:
    """Converts a parsed batch to numpy arrays (for tests and offline tools)."""
    return {k: v.numpy() for k, v in batch.items()}
