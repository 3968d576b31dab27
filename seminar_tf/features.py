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

Parsing also yields `hist_mask` (B, L) bool (real behaviours), `target_query_mask` (B, Q) and
`hist_query_mask` (B, L, Q). Id 0 is padding everywhere; ids outside a vocabulary (negative or
>= its size) map to `OOV_ID`. The same `feature_spec` parses training data and serving requests.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Mapping, Optional, Sequence

import numpy as np

import tensorflow as tf

PAD_ID = 0
OOV_ID = 1
FIRST_ID = 2  # first id a vocabulary assigns to a real value

SOURCE_PAD = 0
SOURCE_REC = 1
SOURCE_SEARCH = 2

USER_ID = "user_id"
TIMESTAMP = "timestamp"
TARGET_ITEM = "target_item"
TARGET_QUERY = "target_query"
TARGET_ATTRS = "target_attrs"
TARGET_SOURCE = "target_source"
LABEL = "label"
GROUP_ID = "group_id"  # evaluation candidate group (0: not a candidate example)
HIST_ITEMS = "hist_items"
HIST_QUERY = "hist_query"
HIST_ATTRS = "hist_attrs"
HIST_SOURCES = "hist_sources"
HIST_TIME_GAPS = "hist_time_gaps"
HIST_MASK = "hist_mask"
TARGET_QUERY_MASK = "target_query_mask"
HIST_QUERY_MASK = "hist_query_mask"

SCALAR_INT_FEATURES = (USER_ID, TIMESTAMP, TARGET_ITEM, TARGET_SOURCE)
HISTORY_FEATURES = (HIST_ITEMS, HIST_QUERY, HIST_ATTRS, HIST_SOURCES, HIST_TIME_GAPS)


class ContractError(ValueError):
    """A record does not satisfy the example contract; the message names field and record."""


@dataclasses.dataclass(frozen=True)
class FeatureContract:
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

        out = {
            USER_ID: self._oov(raw[USER_ID], self.user_vocab_size),
            TIMESTAMP: raw[TIMESTAMP],
            TARGET_ITEM: self._oov(raw[TARGET_ITEM], self.item_vocab_size),
            TARGET_QUERY: self._oov(raw[TARGET_QUERY], self.query_vocab_size),
            TARGET_ATTRS: self._oov(raw[TARGET_ATTRS], self.attr_vocab_size),
            TARGET_SOURCE: raw[TARGET_SOURCE],
            LABEL: raw[LABEL],
            GROUP_ID: raw[GROUP_ID],
            HIST_ITEMS: self._oov(recent_left_padded(items), self.item_vocab_size),
            HIST_QUERY: self._oov(recent_left_padded(hist_query, (Q,)),
                                  self.query_vocab_size),
            HIST_ATTRS: self._oov(recent_left_padded(hist_attrs, (A,)),
                                  self.attr_vocab_size),
            HIST_SOURCES: recent_left_padded(raw[HIST_SOURCES]),
            HIST_TIME_GAPS: recent_left_padded(raw[HIST_TIME_GAPS]),
        }
        out[HIST_MASK] = out[HIST_ITEMS] != PAD_ID
        out[TARGET_QUERY_MASK] = out[TARGET_QUERY] != PAD_ID
        out[HIST_QUERY_MASK] = out[HIST_QUERY] != PAD_ID
        return out

    def sanitize_dense(self, features: Mapping[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        """Dense inputs (the `predict` signature) held to what parsing guarantees.

        Ids outside a vocabulary (negative or too large) become OOV, as in `densify`;
        non-finite time gaps fail with InvalidArgumentError naming the field.
        """
        vocab = {USER_ID: self.user_vocab_size, TARGET_ITEM: self.item_vocab_size,
                 TARGET_QUERY: self.query_vocab_size, TARGET_ATTRS: self.attr_vocab_size,
                 HIST_ITEMS: self.item_vocab_size, HIST_QUERY: self.query_vocab_size,
                 HIST_ATTRS: self.attr_vocab_size}
        out = {k: self._oov(v, vocab[k]) if k in vocab else v for k, v in features.items()}
        if HIST_TIME_GAPS in out:
            out[HIST_TIME_GAPS] = tf.debugging.assert_all_finite(
                out[HIST_TIME_GAPS], message=f"{HIST_TIME_GAPS} must hold finite values")
        return out

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

    # ------------------------------------------------------------- serializing
    def make_example(self, *, user_id: int, target_item: int, label: float,
                     target_query: Sequence[int] = (), target_attrs: Sequence[int] = (),
                     target_source: int = SOURCE_REC, timestamp: int = 0,
                     hist_items: Sequence[int] = (),
                     hist_query: Optional[Sequence[Sequence[int]]] = None,
                     hist_attrs: Optional[Sequence[Sequence[int]]] = None,
                     hist_sources: Optional[Sequence[int]] = None,
                     hist_time_gaps: Optional[Sequence[float]] = None,
                     record: str = "") -> tf.train.Example:
        """Builds one Example; history given oldest first, truncated to the most recent L.

        Per-behaviour queries and attributes are truncated / 0-padded to Q and A. Missing
        history fields default to empty queries, zero attributes, recommendation sources and
        zero gaps.

        Args:
            record: a name for the record used in error messages (e.g. "user 7, t=123").

        Raises:
            ContractError: inconsistent history lengths, ids that are not integers, or a
                source outside {1, 2}; the message names the field and the record.
        """
        n = len(hist_items)
        where = f" (record {record})" if record else ""

        def per_item(name, values, default):
            if values is None:
                return [default] * n
            if len(values) != n:
                raise ContractError(
                    f"{name} has {len(values)} entries but {HIST_ITEMS} has {n}{where}")
            return list(values)

        keep = slice(max(0, n - self.max_seq_len), n)
        q, a = self.max_query_tokens, self.num_attrs
        hq = per_item(HIST_QUERY, hist_query, ())[keep]
        ha = per_item(HIST_ATTRS, hist_attrs, ())[keep]
        return self.make_example_arrays(
            user_id=user_id, timestamp=timestamp, target_item=target_item,
            target_query=_int_array(_fit(target_query, q), TARGET_QUERY, where),
            target_attrs=_int_array(_fit(target_attrs, a), TARGET_ATTRS, where),
            target_source=target_source, label=label,
            hist_items=_int_array(list(hist_items)[keep], HIST_ITEMS, where),
            hist_query=_int_array([_fit(t, q) for t in hq], HIST_QUERY, where).reshape(-1, q),
            hist_attrs=_int_array([_fit(t, a) for t in ha], HIST_ATTRS, where).reshape(-1, a),
            hist_sources=_int_array(per_item(HIST_SOURCES, hist_sources, SOURCE_REC)[keep],
                                    HIST_SOURCES, where),
            hist_time_gaps=np.asarray(per_item(HIST_TIME_GAPS, hist_time_gaps, 0.0)[keep],
                                      np.float32),
            record=record)

    def make_example_arrays(self, *, user_id: int, timestamp: int, target_item: int,
                            target_query: np.ndarray, target_attrs: np.ndarray,
                            target_source: int, label: float, hist_items: np.ndarray,
                            hist_query: np.ndarray, hist_attrs: np.ndarray,
                            hist_sources: np.ndarray, hist_time_gaps: np.ndarray,
                            record: str = "", group_id: int = 0) -> tf.train.Example:
        """The serializer proper, over numpy arrays (the fast path of the Beam builder).

        Args: target_query (Q,), target_attrs (A,), hist_items (n,), hist_query (n, Q),
            hist_attrs (n, A), hist_sources (n,), hist_time_gaps (n,), oldest first; the
            history is truncated to the most recent L. group_id: the evaluation candidate
            group (written only when non-zero).

        Raises:
            ContractError: wrong shapes, non-integer ids or sources outside {1, 2}, naming
                the field and the record.
        """
        where = f" (record {record})" if record else ""
        n = len(hist_items)
        q, a = self.max_query_tokens, self.num_attrs
        shapes = {TARGET_QUERY: (target_query, (q,)), TARGET_ATTRS: (target_attrs, (a,)),
                  HIST_QUERY: (hist_query, (n, q)), HIST_ATTRS: (hist_attrs, (n, a)),
                  HIST_SOURCES: (hist_sources, (n,)), HIST_TIME_GAPS: (hist_time_gaps, (n,))}
        for name, (arr, shape) in shapes.items():
            if np.shape(arr) != shape:
                if name in (HIST_SOURCES, HIST_TIME_GAPS) and np.ndim(arr) == 1:
                    raise ContractError(f"{name} has {len(arr)} entries but {HIST_ITEMS} has "
                                        f"{n}{where}")
                raise ContractError(f"{name} must have shape {shape}, got {np.shape(arr)}"
                                    f"{where}")
            if name != HIST_TIME_GAPS and np.asarray(arr).dtype.kind not in "iu" and np.size(
                    arr):
                raise ContractError(f"{name} must hold integer ids{where}")
        bad = ~np.isin(np.append(hist_sources, target_source), (SOURCE_REC, SOURCE_SEARCH))
        if bad.any():
            s = np.append(hist_sources, target_source)[bad][0].item()
            raise ContractError(f"source {s!r} must be {SOURCE_REC} (recommendation) or "
                                f"{SOURCE_SEARCH} (search){where}")
        keep = slice(max(0, n - self.max_seq_len), n)
        ints = tf.train.Int64List
        feats = {
            USER_ID: _int64([user_id], USER_ID, where),
            TIMESTAMP: _int64([timestamp], TIMESTAMP, where),
            TARGET_ITEM: _int64([target_item], TARGET_ITEM, where),
            TARGET_QUERY: tf.train.Feature(int64_list=ints(value=np.asarray(
                target_query).tolist())),
            TARGET_ATTRS: tf.train.Feature(int64_list=ints(value=np.asarray(
                target_attrs).tolist())),
            TARGET_SOURCE: _int64([target_source], TARGET_SOURCE, where),
            LABEL: _float([label]),
            HIST_ITEMS: tf.train.Feature(int64_list=ints(value=np.asarray(
                hist_items)[keep].tolist())),
            HIST_QUERY: tf.train.Feature(int64_list=ints(value=np.asarray(
                hist_query)[keep].ravel().tolist())),
            HIST_ATTRS: tf.train.Feature(int64_list=ints(value=np.asarray(
                hist_attrs)[keep].ravel().tolist())),
            HIST_SOURCES: tf.train.Feature(int64_list=ints(value=np.asarray(
                hist_sources)[keep].tolist())),
            HIST_TIME_GAPS: tf.train.Feature(float_list=tf.train.FloatList(value=np.asarray(
                hist_time_gaps, np.float32)[keep].tolist())),
        }
        if group_id:
            feats[GROUP_ID] = _int64([group_id], GROUP_ID, where)
        return tf.train.Example(features=tf.train.Features(feature=feats))


def _int_array(values, name: str, where: str) -> np.ndarray:
    """Integer array of ids; non-integral values are a ContractError naming the field."""
    try:
        arr = np.asarray(values)
        if arr.size == 0:
            return arr.astype(np.int64)
        if arr.dtype.kind == "f":
            if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
                raise ValueError("non-integral value")
        elif arr.dtype.kind not in "iub":
            raise ValueError(f"dtype {arr.dtype}")
        return arr.astype(np.int64)
    except (TypeError, ValueError) as e:
        raise ContractError(f"{name} must hold integer ids, got {values!r}"[:300] + where) from e


def _fit(values: Sequence[int], width: int) -> list:
    values = list(values)[:width]
    return values + [PAD_ID] * (width - len(values))


def _int64(values, name: str, where: str) -> tf.train.Feature:
    try:
        ints = [int(v) for v in values]
        if any(i != v for i, v in zip(ints, values)):
            raise ValueError("non-integral value")
    except (TypeError, ValueError) as e:
        raise ContractError(f"{name} must hold integer ids, got {list(values)!r}{where}") from e
    return tf.train.Feature(int64_list=tf.train.Int64List(value=ints))


def _float(values) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))


def to_numpy(batch: Mapping[str, tf.Tensor]) -> Dict[str, np.ndarray]:
    """Converts a parsed batch to numpy arrays (for tests and offline tools)."""
    return {k: v.numpy() for k, v in batch.items()}
