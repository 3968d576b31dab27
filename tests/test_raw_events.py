"""One definition of what a client logs, in Python (Beam, client) and in the graph: time
gaps from millisecond timestamps, and sources from logged names and query tokens."""
import numpy as np
import pytest
import tensorflow as tf

from seminar_tf.data.store import time_gaps as graph_time_gaps
from seminar_tf.raw_events import (SOURCE_NAMES, dictionary_encode, request_arrays, source_id,
                                   time_gaps, timestamp_ms)
from seminar_tf.workflows.raw_features import RawFeatures, source_table


def test_time_gaps_equal_in_numpy_and_in_the_graph():
    rng = np.random.default_rng(0)
    request = rng.integers(0, 2**45, 5000)
    behaviour = request[:, None] - rng.integers(-10**6, 10**12, (5000, 7))
    want = time_gaps(request[:, None], behaviour)
    got = graph_time_gaps(tf.constant(request[:, None]), tf.constant(behaviour)).numpy()
    assert want.dtype == np.float32
    np.testing.assert_array_equal(got, want)
    # the Beam job's historical expression
    np.testing.assert_array_equal(want, ((request[:, None] - behaviour) / 1000.0).astype(
        np.float32))


def test_sources_and_timestamps():
    assert source_id(None, ()) == 1 and source_id("", ("red",)) == 2
    assert source_id("search", ()) == 2 and source_id(1, ("x",)) == 1
    assert source_id("recommendation", ()) == 1 and source_id("2", ()) == 2
    for bad in ("radio", 3, True, 2.0):
        with pytest.raises(ValueError):
            source_id(bad, ())
    assert timestamp_ms(1.7e9, "s") == 1_700_000_000_000
    assert timestamp_ms("1.684742676757e+12") == 1_684_742_676_757
    assert timestamp_ms(5, "auto") == 5000
    for bad in (-1, float("nan"), "x", None):
        with pytest.raises(ValueError):
            timestamp_ms(bad)


def test_graph_sources_equal_the_python_definition():
    holder = type("Holder", (), {"sources": source_table()})()
    values = list(SOURCE_NAMES) + [""]
    for has_tokens in (False, True):
        got = RawFeatures.source_ids(holder, tf.constant(values),
                                     tf.constant([has_tokens] * len(values)),
                                     tf.ones([len(values)], tf.bool), "source").numpy()
        assert got.tolist() == [source_id(v, ("t",) if has_tokens else ()) for v in values]
    with pytest.raises(tf.errors.InvalidArgumentError, match="'hist_sources'"):
        RawFeatures.source_ids(holder, tf.constant(["radio"]), tf.constant([False]),
                               tf.constant([True]), "hist_sources")


def test_dictionary_encoding_round_trips_and_sends_each_value_once():
    rows = [["b", "", "a", "b", "b"], [], ["x"]]
    values, index = dictionary_encode(rows, 5)
    assert values.shape == (3, 2) and index.dtype == np.int32 and index.shape == (3, 5)
    assert values[0].tolist() == ["b", "a"] and values[2].tolist() == ["x", ""]
    for row, v, i in zip(rows, values, index):
        decoded = ["" if j < 0 else v[j] for j in i]
        assert decoded == row + [""] * (5 - len(row))
    out = request_arrays([dict(user_id="u", query="q", source="", request_time_ms=7,
                               hist_item_ids=["i1", "i2"], hist_queries=["red", "red"],
                               hist_sources=["search", "search"], hist_timestamps_ms=[1, 2],
                               candidates=["c"])])
    assert out["hist_queries"].tolist() == [["red"]]
    assert out["hist_query_index"].tolist() == [[0, 0]]
    assert out["hist_sources"].tolist() == [["search"]]
    with pytest.raises(ValueError, match="row 0"):
        request_arrays([dict(user_id="u", query="", source="", request_time_ms=7,
                             hist_item_ids=["i1"], hist_queries=[], hist_sources=["rec"],
                             hist_timestamps_ms=[1], candidates=[])])
