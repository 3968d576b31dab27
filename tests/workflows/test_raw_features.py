"""`RawFeatures.context` against a plain numpy reference of the feature contract: the last L
real behaviours of any-length rows with "" anywhere, oldest first and left-padded, mapped
through the vocabularies, the tokenizer, the item table, the source rule and the time gap."""
import numpy as np
import pytest
import tensorflow as tf

from seminar_tf import features as F
from seminar_tf.raw_events import dictionary_encode, source_id, time_gaps
from seminar_tf.text import words
from seminar_tf.workflows.raw_features import RawFeatures

from helpers import tiny_config

WORDS = ["red", "shoe", "tent", "blue", "lamp", "wool", "sock"]


def _vocab(tmp_path, contract):
    keys = {"users": [f"user-{i}" for i in range(contract.user_vocab_size - 2)],
            "items": [f"sku-{i}" for i in range(contract.item_vocab_size - 2)],
            "query_tokens": (WORDS + [f"w{i}" for i in range(contract.query_vocab_size)])[
                :contract.query_vocab_size - 2]}
    paths = {}
    for kind, lines in keys.items():
        paths[kind] = str(tmp_path / f"{kind}.txt")
        with open(paths[kind], "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    return keys, paths


def _reference(keys, attrs, contract, row, request_ms):
    """numpy / Python float64 reference of one row's history features."""
    L, Q = contract.max_seq_len, contract.max_query_tokens
    ids = {k: i + F.FIRST_ID for i, k in enumerate(keys["items"])}
    toks = {k: i + F.FIRST_ID for i, k in enumerate(keys["query_tokens"])}
    real = [j for j, x in enumerate(row["items"]) if x != ""][-L:]
    out = {F.HIST_ITEMS: np.zeros(L, np.int64), F.HIST_QUERY: np.zeros((L, Q), np.int64),
           F.HIST_ATTRS: np.zeros((L, attrs.shape[1]), np.int64),
           F.HIST_SOURCES: np.zeros(L, np.int64), F.HIST_TIME_GAPS: np.zeros(L, np.float32)}
    for slot, j in zip(range(L - len(real), L), real):
        item = ids.get(row["items"][j], F.OOV_ID)
        words_j = words(row["queries"][j])
        q = [toks.get(w, F.OOV_ID) for w in words_j][:Q]
        out[F.HIST_ITEMS][slot] = item
        out[F.HIST_QUERY][slot, :len(q)] = q
        out[F.HIST_ATTRS][slot] = attrs[item]
        out[F.HIST_SOURCES][slot] = source_id(row["sources"][j], words_j)
        out[F.HIST_TIME_GAPS][slot] = time_gaps(request_ms, row["times"][j])
    return out


@pytest.mark.parametrize("H", [0, 4, 10, 23])  # L = 10: empty, shorter, equal, longer
def test_context_equals_the_numpy_reference(tmp_path, H):
    contract = F.FeatureContract.from_config(tiny_config().data)
    keys, paths = _vocab(tmp_path, contract)
    rng = np.random.default_rng(H)
    attrs = rng.integers(1, contract.attr_vocab_size,
                         size=(contract.item_vocab_size, contract.num_attrs))
    attrs[0] = 0
    raw = RawFeatures(paths, contract, tf.Variable(attrs, dtype=tf.int64))
    B, request_ms = 5, 1_700_000_000_000
    pool = keys["items"][:12] + ["sku-unseen", ""]
    rows = []
    for b in range(B):
        items = list(rng.choice(pool, size=H)) if H else []
        if b == 0:
            items = [""] * H  # all padding
        rows.append({"items": items,
                     "queries": [" ".join(rng.choice(WORDS + ["Zzz", "ÉTÉ"], size=rng.integers(
                         0, 5))) for _ in range(H)],
                     "sources": list(rng.choice(["", "rec", "search", "1", "2"], size=H)),
                     "times": list(request_ms - rng.integers(0, 10**9, size=H))})
    arr = lambda key, dtype: tf.constant(np.array([r[key] for r in rows], dtype=dtype)  # noqa
                                         .reshape(B, H))
    queries, query_index = dictionary_encode([r["queries"] for r in rows], H)
    sources, source_index = dictionary_encode([r["sources"] for r in rows], H)
    got = raw.context(user_id=tf.constant(["user-1", "nobody", "", "user-3", "user-0"]),
                      query=tf.constant(["red shoe", "", "x", "tent", "WOOL sock!"]),
                      source=tf.constant(["", "", "rec", "search", "2"]),
                      request_time_ms=tf.constant([request_ms] * B, tf.int64),
                      hist_item_ids=arr("items", object),
                      hist_queries=tf.constant(queries.reshape(B, -1)),
                      hist_query_index=tf.constant(query_index),
                      hist_sources=tf.constant(sources.reshape(B, -1)),
                      hist_source_index=tf.constant(source_index),
                      hist_timestamps_ms=arr("times", np.int64))
    np.testing.assert_array_equal(got[F.USER_ID].numpy(), [3, F.OOV_ID, F.PAD_ID, 5, 2])
    for b, row in enumerate(rows):
        want = _reference(keys, attrs, contract, row, request_ms)
        for k, v in want.items():
            np.testing.assert_array_equal(got[k].numpy()[b], v, err_msg=f"row {b} {k}")
        np.testing.assert_array_equal(got[F.HIST_MASK].numpy()[b], want[F.HIST_ITEMS] != 0)


def _one_row(raw, items, queries, query_index, sources, source_index):
    s = lambda *v: tf.constant([list(v)])  # noqa: E731
    return raw.context(tf.constant(["user-1"]), tf.constant([""]), tf.constant([""]),
                       tf.constant([5000], tf.int64), s(*items), s(*queries),
                       tf.constant([query_index], tf.int32), s(*sources),
                       tf.constant([source_index], tf.int32),
                       tf.constant([[1000] * len(items)], tf.int64))


def test_an_unknown_source_or_index_of_a_kept_behaviour_fails_naming_the_field(tmp_path):
    contract = F.FeatureContract.from_config(tiny_config().data)
    _, paths = _vocab(tmp_path, contract)
    raw = RawFeatures(paths, contract, tf.Variable(
        np.zeros((contract.item_vocab_size, contract.num_attrs)), dtype=tf.int64))
    with pytest.raises(tf.errors.InvalidArgumentError, match="'hist_sources'"):
        _one_row(raw, ("sku-1", "sku-2"), ("red",), [-1, 0], ("rec", "radio"), [0, 1])
    for q, s in (([-1, 1], [0, 0]), ([-2, 0], [0, 0])):  # one query text: index 0 or -1
        with pytest.raises(tf.errors.InvalidArgumentError, match="'hist_queries'"):
            _one_row(raw, ("sku-1", "sku-2"), ("red",), q, ("rec",), s)
    with pytest.raises(tf.errors.InvalidArgumentError, match="'hist_sources'"):
        _one_row(raw, ("sku-1", "sku-2"), ("red",), [0, 0], ("rec",), [0, 3])
    # only the kept behaviours are read: a bad index behind padding is not an error
    got = _one_row(raw, ("", "sku-2"), ("red",), [7, 0], ("radio", "rec"), [0, 1])
    assert got[F.HIST_SOURCES].numpy()[0, -1] == F.SOURCE_REC
