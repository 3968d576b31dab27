"""Raw features in the served graph: the export owns its vocabularies, tokenizer and item table.

The raw signatures (`rank_raw`, `score_raw`; `seminar_tf.workflows.signatures`) take what a
client logs and map it inside the SavedModel, outside any XLA-compiled part:

- user and item ids (strings) through the dataset's own vocabularies, carried as SavedModel
  assets (`assets/users.txt`, `items.txt`, `query_tokens.txt`: line i is id i + 2) in
  `tf.lookup` tables; an unknown id is OOV (1) and "" is padding (0), as in the Beam job;
- query text through the shared tokenizer (`seminar_tf.text.words_tf`), token ids (unknown
  tokens OOV) truncated / padded to Q;
- sources "search" / "rec" / "recommendation" / "1" / "2", or "" (from the query: search if
  it has a token), as `seminar_tf.raw_events.source_id`;
- the history's query texts and sources arrive once per distinct value of a row, with a
  per-behaviour index (`raw_events.request_arrays`): a lifelong history repeats its session
  queries and holds two sources, and a request's cost is its count of strings;
- unix-millisecond timestamps to time gaps (`seminar_tf.data.store.time_gaps`);
- behaviours' and candidates' attributes from the export's item table (a saved variable).

The history may be any length H (oldest first; "" item ids pad a row anywhere); the last L
real behaviours are kept, exactly as the feature contract truncates a parsed Example, and
only they are read (an unknown source further back is not an error).
`Vocabularies` is the Python side (export-time only): integer Examples back to raw requests,
for the export's warm-up file and output check.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf

from seminar_tf import features as F
from seminar_tf import storage
from seminar_tf.data.store import time_gaps
from seminar_tf.raw_events import SOURCE_NAMES, SOURCE_REC, SOURCE_SEARCH, request_arrays
from seminar_tf.text import words, words_tf

VOCAB_FILES = {"users": "users.txt", "items": "items.txt", "query_tokens": "query_tokens.txt"}
CONTEXT_INPUTS = [tf.TensorSpec([None], tf.string, name="user_id"),
                  tf.TensorSpec([None], tf.string, name="query"),
                  tf.TensorSpec([None], tf.string, name="source"),
                  tf.TensorSpec([None], tf.int64, name="request_time_ms"),
                  tf.TensorSpec([None, None], tf.string, name="hist_item_ids"),
                  tf.TensorSpec([None, None], tf.string, name="hist_queries"),
                  tf.TensorSpec([None, None], tf.int32, name="hist_query_index"),
                  tf.TensorSpec([None, None], tf.string, name="hist_sources"),
                  tf.TensorSpec([None, None], tf.int32, name="hist_source_index"),
                  tf.TensorSpec([None, None], tf.int64, name="hist_timestamps_ms")]
CONTEXT_NAMES = tuple(s.name for s in CONTEXT_INPUTS)
RANK_RAW_INPUTS = CONTEXT_INPUTS + [tf.TensorSpec([None, None], tf.string, name="candidates")]
SCORE_RAW_INPUTS = CONTEXT_INPUTS + [tf.TensorSpec([None], tf.string, name="item_id")]
REQUEST_TIME_MS = 1_700_000_000_000  # request time of raw requests rebuilt from Examples


def vocab_paths(data_dir: Optional[str]) -> Optional[Dict[str, str]]:
    """The dataset's vocabulary files by kind, or None if it has none (e.g. no dataset)."""
    if not data_dir:
        return None
    paths = {k: storage.join(data_dir, "vocab", f) for k, f in VOCAB_FILES.items()}
    return paths if all(storage.exists(p) for p in paths.values()) else None


def _table(path: str) -> tf.lookup.StaticHashTable:
    init = tf.lookup.TextFileInitializer(
        path, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE,
        tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER)
    return tf.lookup.StaticHashTable(init, default_value=-1)


def source_table() -> tf.lookup.StaticHashTable:
    """Source names ("search", "rec", ...; `raw_events.SOURCE_NAMES`) -> ids, else -1."""
    return tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
        list(SOURCE_NAMES), list(SOURCE_NAMES.values()), tf.string, tf.int64), -1)


def lookup(table, keys: tf.Tensor) -> tf.Tensor:
    """Vocabulary ids of string keys: line + 2, OOV (1) if unknown, padding (0) for ""."""
    line = table.lookup(keys)
    ids = tf.where(line < 0, tf.constant(F.OOV_ID, tf.int64), line + F.FIRST_ID)
    return tf.where(keys == "", tf.constant(F.PAD_ID, tf.int64), ids)


def _decode(values: tf.Tensor, index: tf.Tensor, used: tf.Tensor, field: str):
    """A dictionary-encoded field: (values with "" prepended, (B, U + 1); each behaviour's
    column in it, (B, L), 0 for -1). An index outside [-1, U) where `used` fails, naming
    `field`."""
    u = tf.shape(values)[1]
    check = tf.debugging.assert_equal(
        tf.reduce_all((index >= -1) & (index < u) | ~used), True, message=(
            f"'{field}' holds each row's distinct values; an index into it is -1 (none) or "
            f"below the row's count"))
    with tf.control_dependencies([check]):
        column = tf.where(used, index + 1, 0)
    return tf.concat([tf.fill([tf.shape(values)[0], 1], ""), values], 1), column


class RawFeatures(tf.Module):
    """Raw request fields -> the model's integer features (tables and item table saved).

    Args:
        vocab_files: kind ("users", "items", "query_tokens") -> vocabulary file; the files
            become assets of the SavedModel.
        contract: the model's FeatureContract (L, Q, A and vocabulary sizes).
        item_attrs: (item vocabulary, A) int64 variable, attributes by item id.

    Raises:
        ValueError: a vocabulary's size disagrees with the model's (another dataset).
    """

    def __init__(self, vocab_files: Mapping[str, str], contract: F.FeatureContract,
                 item_attrs: tf.Variable):
        super().__init__(name="raw_features")
        self.contract, self.item_attrs = contract, item_attrs
        self.users = _table(vocab_files["users"])
        self.items = _table(vocab_files["items"])
        self.tokens = _table(vocab_files["query_tokens"])
        self.sources = source_table()
        for kind, table, size in (("users", self.users, contract.user_vocab_size),
                                  ("items", self.items, contract.item_vocab_size),
                                  ("query_tokens", self.tokens, contract.query_vocab_size)):
            if int(table.size()) + F.FIRST_ID != size:
                raise ValueError(f"vocab/{VOCAB_FILES[kind]} has {int(table.size())} keys, but "
                                 f"the model was trained with {kind} vocabulary size {size} "
                                 f"(keys + 2): not the model's dataset")
        if int(item_attrs.shape[0]) != contract.item_vocab_size:
            raise ValueError(f"item table has {int(item_attrs.shape[0])} rows, the model's "
                             f"item vocabulary {contract.item_vocab_size}")

    def query_ids(self, text: tf.Tensor):
        """Token ids (S + [Q]) of query text (S) and whether each text has a token (S).

        Each distinct text is tokenized once (a history repeats its session queries)."""
        Q = self.contract.max_query_tokens
        distinct, position = tf.unique(tf.reshape(text, [-1]))
        tokens = words_tf(distinct)
        ids = tf.ragged.map_flat_values(lambda t: lookup(self.tokens, t), tokens)
        dense = tf.gather(ids.to_tensor(default_value=F.PAD_ID, shape=[None, Q]), position)
        shape = tf.shape(text)
        return (tf.reshape(dense, tf.concat([shape, [Q]], 0)),
                tf.reshape(tf.gather(tokens.row_lengths() > 0, position), shape))

    def source_ids(self, source: tf.Tensor, has_tokens: tf.Tensor, used: tf.Tensor,
                   field: str) -> tf.Tensor:
        """Source ids; "" from the query; an unknown value (where `used`) fails, naming
        `field`."""
        inferred = tf.where(has_tokens, tf.constant(SOURCE_SEARCH, tf.int64),
                            tf.constant(SOURCE_REC, tf.int64))
        ids = tf.where(source == "", inferred, self.sources.lookup(source))
        ids = tf.where(used, ids, tf.constant(SOURCE_REC, tf.int64))
        check = tf.debugging.assert_non_negative(ids, message=(
            f"'{field}': a source is 'search', 'rec', 'recommendation', '1', '2' or '' "
            f"(from the query)"))
        with tf.control_dependencies([check]):
            return tf.identity(ids)

    def context(self, user_id, query, source, request_time_ms, hist_item_ids, hist_queries,
                hist_query_index, hist_sources, hist_source_index, hist_timestamps_ms
                ) -> Dict[str, tf.Tensor]:
        """The `rank` context features (as `FeatureContract.parse_context` gives them) of B
        raw contexts with histories (B, H); `hist_queries` (B, U) and `hist_sources` (B, V)
        are each row's distinct values, indexed per behaviour by `hist_query_index` and
        `hist_source_index` (B, H; -1 is "").

        The last L real behaviours of each row (oldest first, left-padded; the contract's
        truncation, `FeatureContract.densify`) are picked first with one top-k over their
        positions, and only they are mapped (looked up, tokenized, validated)."""
        c = self.contract
        L = c.max_seq_len
        checks = [tf.debugging.assert_equal(tf.shape(x), tf.shape(hist_item_ids), message=(
            f"'{name}' must have the shape of 'hist_item_ids' (one value per behaviour)"))
            for name, x in (("hist_query_index", hist_query_index),
                            ("hist_source_index", hist_source_index),
                            ("hist_timestamps_ms", hist_timestamps_ms))]
        checks += [tf.debugging.assert_equal(tf.shape(x)[0], tf.shape(user_id)[0], message=(
            f"'{name}' must have one row per 'user_id'"))
            for name, x in (("query", query), ("source", source),
                            ("request_time_ms", request_time_ms),
                            ("hist_item_ids", hist_item_ids), ("hist_queries", hist_queries),
                            ("hist_sources", hist_sources))]
        with tf.control_dependencies(checks):
            pad = tf.maximum(L - tf.shape(hist_item_ids)[1], 0)  # at least L columns
        left = lambda x, v: tf.pad(x, [[0, 0], [pad, 0]], constant_values=v)  # noqa: E731
        ids = left(hist_item_ids, "")
        at = tf.where(ids != "", tf.range(tf.shape(ids)[1])[None, :], -1)
        recent = tf.reverse(tf.math.top_k(at, k=L).values, [1])  # (B, L): -1 = padding
        valid = recent >= 0
        take = lambda x, v: tf.gather(left(x, v), tf.maximum(recent, 0), batch_dims=1)  # noqa
        items = tf.where(valid, lookup(self.items, take(hist_item_ids, "")), F.PAD_ID)
        texts, column = _decode(hist_queries, take(hist_query_index, -1), valid,
                                "hist_queries")
        hq, hq_any = (tf.gather(x, column, batch_dims=1) for x in self.query_ids(texts))
        names, column = _decode(hist_sources, take(hist_source_index, -1), valid,
                                "hist_sources")
        hist_source = tf.gather(names, column, batch_dims=1)
        q, q_any = self.query_ids(query)
        b = tf.shape(user_id)[0]
        gaps = time_gaps(request_time_ms[:, None], take(hist_timestamps_ms, 0))
        dense = {F.USER_ID: lookup(self.users, user_id),
                 F.TIMESTAMP: tf.math.floordiv(request_time_ms, 1000),
                 F.TARGET_ITEM: tf.zeros([b], tf.int64),
                 F.TARGET_QUERY: q,
                 F.TARGET_ATTRS: tf.zeros([b, c.num_attrs], tf.int64),
                 F.TARGET_SOURCE: self.source_ids(source, q_any, tf.ones([b], tf.bool),
                                                  "source"),
                 F.LABEL: tf.zeros([b], tf.float32), F.GROUP_ID: tf.zeros([b], tf.int64),
                 F.HIST_ITEMS: items,
                 F.HIST_QUERY: tf.where(valid[..., None], hq, F.PAD_ID),
                 F.HIST_ATTRS: tf.where(valid[..., None], tf.gather(self.item_attrs, items),
                                        F.PAD_ID),
                 F.HIST_SOURCES: tf.where(valid, self.source_ids(
                     hist_source, hq_any, valid, "hist_sources"), 0),
                 F.HIST_TIME_GAPS: tf.where(valid, gaps, 0.0)}
        out = c.finish(dense)
        return {k: v for k, v in out.items() if k not in F.CANDIDATE_FEATURES}

    def targets(self, item_ids: tf.Tensor) -> Dict[str, tf.Tensor]:
        """Candidate / target features of item id strings (any shape S): target_item (S),
        target_attrs (S + [A]) and candidate_mask (S, False for "")."""
        items = lookup(self.items, item_ids)
        return {F.TARGET_ITEM: items, F.TARGET_ATTRS: tf.gather(self.item_attrs, items),
                F.CANDIDATE_MASK: item_ids != ""}


class Vocabularies:
    """The vocabularies as Python lists (export-time only: rebuilding raw requests from
    integer Examples for the warm-up file and the output check; clients never read them)."""

    def __init__(self, vocab_files: Mapping[str, str]):
        self.keys = {k: storage.read_text(p).splitlines() for k, p in vocab_files.items()}
        self.unseen = {}
        for kind, keys in self.keys.items():  # a key outside the vocabulary: maps to OOV
            known, n = set(keys), 0
            while f"unseen{n}" in known:
                n += 1
            self.unseen[kind] = f"unseen{n}"

    def key(self, kind: str, i: int) -> str:
        if i == F.PAD_ID:
            return ""
        return self.unseen[kind] if i == F.OOV_ID else self.keys[kind][i - F.FIRST_ID]

    def text(self, token_ids: Sequence[int]) -> str:
        tokens = [self.key("query_tokens", int(t)) for t in token_ids if t != F.PAD_ID]
        text = " ".join(tokens)
        if list(words(text)) != tokens:
            raise ValueError(f"query tokens {tokens} are not words of the tokenizer")
        return text

    def raw_rank_inputs(self, contract: F.FeatureContract, context: Sequence[bytes],
                        candidates) -> Dict[str, np.ndarray]:
        """`rank_raw` inputs equal to a `rank` request (context Examples [B], candidate
        Examples [B, N]) whose attributes come from the item table."""
        ctx = F.to_numpy(contract.parse_context(tf.constant(list(context))))
        cand = F.to_numpy(contract.parse_candidates(tf.constant(np.asarray(candidates,
                                                                           object))))
        name = {SOURCE_REC: "rec", SOURCE_SEARCH: "search"}
        rows = []
        for b in range(len(context)):
            keep = np.flatnonzero(ctx[F.HIST_MASK][b])
            rows.append(dict(
                user_id=self.key("users", int(ctx[F.USER_ID][b])),
                query=self.text(ctx[F.TARGET_QUERY][b]),
                source=name[int(ctx[F.TARGET_SOURCE][b])], request_time_ms=REQUEST_TIME_MS,
                hist_item_ids=[self.key("items", int(i)) for i in ctx[F.HIST_ITEMS][b, keep]],
                hist_queries=[self.text(q) for q in ctx[F.HIST_QUERY][b, keep]],
                hist_sources=[name[int(s)] for s in ctx[F.HIST_SOURCES][b, keep]],
                hist_timestamps_ms=[REQUEST_TIME_MS - int(round(float(g) * 1000))
                                    for g in ctx[F.HIST_TIME_GAPS][b, keep]],
                candidates=[self.key("items", int(i)) if m else "" for i, m in
                            zip(cand[F.TARGET_ITEM][b], cand[F.CANDIDATE_MASK][b])]))
        return request_arrays(rows)


def copy_vocabularies(data_dir: str, dest: str) -> Dict[str, str]:
    """Copies the dataset's vocabulary files into `dest` (the export's working folder) and
    returns their paths there; the SavedModel then carries them as assets."""
    src = vocab_paths(data_dir)
    if src is None:
        raise FileNotFoundError(f"{data_dir} has no vocab/{{{','.join(VOCAB_FILES.values())}}}")
    out = {}
    for kind, path in src.items():
        out[kind] = storage.join(dest, VOCAB_FILES[kind])
        storage.write_bytes(out[kind], storage.read_bytes(path))
    return out
