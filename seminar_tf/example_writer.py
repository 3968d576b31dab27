"""Serializing the example contract (`seminar_tf.features`): `ExampleWriter`, a mixin of
`FeatureContract`, builds `tf.train.Example`s from Python lists or numpy arrays."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

import tensorflow as tf

from seminar_tf.feature_names import (
    GROUP_ID, HIST_ATTRS, HIST_ITEMS, HIST_QUERY, HIST_SOURCES, HIST_TIME_GAPS, LABEL, PAD_ID,
    SOURCE_REC, SOURCE_SEARCH, TARGET_ATTRS, TARGET_ITEM, TARGET_QUERY, TARGET_SOURCE,
    TIMESTAMP, USER_ID, RANK_CANDIDATES, RANK_CONTEXT, ContractError)


class ExampleWriter:
    """Serializer methods of `FeatureContract` (uses its max_seq_len, max_query_tokens,
    num_attrs)."""

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

    def make_candidate(self, target_item: int, target_attrs: Sequence[int] = (),
                       label: float = 0.0, group_id: int = 0) -> bytes:
        """One serialized candidate Example of a ranking record / `rank` request."""
        feats = {TARGET_ITEM: _int64([target_item], TARGET_ITEM, ""),
                 TARGET_ATTRS: tf.train.Feature(int64_list=tf.train.Int64List(
                     value=_fit(np.asarray(target_attrs).tolist(), self.num_attrs))),
                 LABEL: _float([label])}
        if group_id:
            feats[GROUP_ID] = _int64([group_id], GROUP_ID, "")
        return tf.train.Example(
            features=tf.train.Features(feature=feats)).SerializeToString(deterministic=True)

    @staticmethod
    def make_ranking_record(context: bytes, candidates: Sequence[bytes]) -> bytes:
        """A ranking record (ExampleListWithContext-like, stored as an Example): `context`
        (one serialized Example) and `candidates` (serialized candidate Examples)."""
        return tf.train.Example(features=tf.train.Features(feature={
            RANK_CONTEXT: _bytes([context]), RANK_CANDIDATES: _bytes(candidates)})
        ).SerializeToString(deterministic=True)

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


def _bytes(values) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))
