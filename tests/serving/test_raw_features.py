"""Raw features in, scores out (`rank_raw`, `score_raw`): requests built from an events log
only (no vocabulary read by the client) score as the integer-id `rank` with ids mapped
offline, for an exact and a PQ export, over gRPC and REST; a model retrained on another
vocabulary (version 2) scores the same raw requests with no client change."""
import builtins
import os

import numpy as np
import pytest
import tensorflow as tf

from beam_pipelines import pipeline
from seminar_tf import features as F
from seminar_tf.data import synthetic_events
from seminar_tf.raw_events import source_id, time_gaps
from seminar_tf.text import words
from seminar_tf.workflows import export, training
from seminar_tf.workflows.codebook_build import build_for_model_dir
from serving import client as C

NAME = "shop"


def _train(tmp, seed, item_offset):
    raw, data = os.path.join(tmp, "raw"), os.path.join(tmp, "data")
    synthetic_events.generate_events(raw, num_users=30, num_items=120, events_per_user=30,
                                     seed=seed, item_offset=item_offset)
    pipeline.run("events", raw, data, max_seq_len=12, num_candidates=10)
    model_dir = os.path.join(tmp, "model")
    cfg = training.config_for("seminar", data, model=dict(
        embedding_dim=8, num_heads=2, top_k=4, short_term_len=3, mlp_units=[8],
        tower_units=[8]), pq=dict(num_subspaces=2, num_codewords=8),
        train=dict(batch_size=128, epochs=1))
    training.train("seminar", data, model_dir, cfg, verbose=0)
    return raw, data, model_dir


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("raw_shop"))
    raw, data, model_dir = _train(os.path.join(tmp, "v1"), seed=3, item_offset=0)
    build_for_model_dir(model_dir)
    bases = {gsu: os.path.join(tmp, f"models_{gsu}") for gsu in ("exact", "pq")}
    for gsu, base in bases.items():
        report = export.export_from_model_dir(model_dir, base, NAME, version=1, gsu=gsu)
        assert report["raw_features"] and {"rank_raw", "score_raw"} <= set(report["signatures"])
    assert {"rank_raw", "score_raw"} <= set(warmup_signatures(bases["pq"]))
    return tmp, raw, data, model_dir, bases


def warmup_signatures(base, version=1):
    """The signature of every request in the export's warm-up file."""
    from tensorflow_serving.apis import prediction_log_pb2
    path = os.path.join(base, NAME, str(version), "assets.extra", "tf_serving_warmup_requests")
    return [prediction_log_pb2.PredictionLog.FromString(r.numpy()).predict_log.request
            .model_spec.signature_name for r in tf.data.TFRecordDataset(path)]


def _rows(events, users, request_time):
    """Raw rows from events only: the client opens no file while building them."""
    known = sorted({e["item_id"] for e in events})
    real_open = builtins.open

    def guarded(path, *a, **k):
        raise AssertionError(f"the client opened {path}")
    builtins.open = guarded
    try:
        rows = []
        for i, u in enumerate(users):
            cands = known[i::7][:6 + i] + ["sku-unseen-1", "Sku-9"]
            rows.append(C.raw_rank_row(events, u, cands, request_time=request_time,
                                       query=["Red RUNNING shoe!", "", "tents, please"][i % 3],
                                       source=["", "rec", "search"][i % 3]))
        return rows
    finally:
        builtins.open = real_open


def _offline_rank_inputs(data, contract, rows):
    """The integer-id `rank` request of the same rows, ids mapped offline with the dataset's
    vocabularies and item table (what an integer-id client must hold)."""
    vocab = {k: {key: i + F.FIRST_ID for i, key in enumerate(
        open(os.path.join(data, "vocab", f"{k}.txt"), encoding="utf-8").read().splitlines())}
        for k in ("users", "items", "query_tokens")}
    attrs = np.load(os.path.join(data, "item_table.npz"))["attrs"]

    def item(x):
        return vocab["items"].get(x, F.OOV_ID) if x else F.PAD_ID

    def query(text):
        return [vocab["query_tokens"].get(t, F.OOV_ID) for t in words(text)][
            :contract.max_query_tokens]

    contexts, candidates = [], []
    for r in rows:
        hist = [dict(item=item(i), query=query(q), attrs=list(attrs[item(i)]),
                     source=source_id(s, words(q)),
                     age_seconds=float(time_gaps(r["request_time_ms"], ts)))
                for i, q, s, ts in zip(r["hist_item_ids"], r["hist_queries"],
                                       r["hist_sources"], r["hist_timestamps_ms"])]
        ctx, cands = C.rank_request_from_events(
            contract, vocab["users"].get(r["user_id"], F.OOV_ID), hist,
            [dict(item=item(c), attrs=list(attrs[item(c)])) for c in r["candidates"]],
            query=query(r["query"]), source=source_id(r["source"], words(r["query"])))
        contexts.append(ctx)
        candidates.append(cands)
    return C.rank_arrays(contexts, candidates)


def _signatures(base, version=1):
    return tf.saved_model.load(os.path.join(base, NAME, str(version))).signatures


@pytest.mark.parametrize("gsu", ["exact", "pq"])
def test_raw_rank_equals_integer_rank_with_ids_mapped_offline(shop, gsu):
    _, raw, data, model_dir, bases = shop
    events = synthetic_events.read_events(os.path.join(raw, "events.jsonl"))
    end = max(e["timestamp"] for e in events)
    rows = _rows(events, ["user-0", "user-5", "user-11", "user-unknown"], end - 3_600_000)
    assert len(rows[0]["hist_item_ids"]) > 12 and not rows[3]["hist_item_ids"]
    sigs = _signatures(bases[gsu])
    got = sigs["rank_raw"](**{k: tf.constant(v) for k, v in C.raw_rank_arrays(rows).items()})
    contract = F.FeatureContract.from_config(training.load_model(model_dir).config.data)
    context, grid = _offline_rank_inputs(data, contract, rows)
    want = sigs["rank"](context=tf.constant(context), candidates=tf.constant(grid))
    np.testing.assert_array_equal(got["mask"].numpy(), want["mask"].numpy())
    assert got["mask"].numpy().sum() == sum(len(r["candidates"]) for r in rows)
    for k in ("score", "ctr", "search"):
        np.testing.assert_allclose(got[k].numpy(), want[k].numpy(), rtol=0, atol=1e-6)
    # score_raw: each row's first candidate, as rank_raw scores it
    single = [dict(r, candidates=r["candidates"][:1]) for r in rows]
    one = sigs["score_raw"](**{k: tf.constant(v) for k, v in
                               C.raw_rank_arrays(single, target="item_id").items()})
    np.testing.assert_allclose(one["score"].numpy(), got["score"].numpy()[:, 0], atol=1e-5)


def test_raw_requests_over_grpc_and_rest(shop):
    from serving.server import Server
    _, raw, _, _, bases = shop
    events = synthetic_events.read_events(os.path.join(raw, "events.jsonl"))
    rows = _rows(events, ["user-1", "user-2"], max(e["timestamp"] for e in events) + 1)
    local = _signatures(bases["pq"])["rank_raw"](
        **{k: tf.constant(v) for k, v in C.raw_rank_arrays(rows).items()})["score"].numpy()
    server = Server(bases["pq"], NAME, grpc_port=0, rest_port=0, poll_seconds=60).start()
    try:
        grpc_client = C.GrpcClient(f"127.0.0.1:{server.grpc_port}", NAME)
        rest = C.RestClient(f"http://127.0.0.1:{server.rest_port}", NAME)
        np.testing.assert_allclose(grpc_client.rank_raw(rows)["score"], local, atol=1e-6)
        np.testing.assert_allclose(rest.rank_raw(rows)["score"], local, atol=1e-6)
        grpc_client.close()
    finally:
        server.stop()


def test_a_retrained_vocabulary_serves_the_same_raw_requests_as_version_2(shop):
    tmp, raw, _, _, bases = shop
    events = synthetic_events.read_events(os.path.join(raw, "events.jsonl"))
    rows = _rows(events, ["user-3", "user-4"], max(e["timestamp"] for e in events) + 1)
    arrays = {k: tf.constant(v) for k, v in C.raw_rank_arrays(rows).items()}
    _, data2, model_dir2 = _train(os.path.join(tmp, "v2"), seed=4, item_offset=60)
    export.export_from_model_dir(model_dir2, bases["exact"], NAME, version=2)
    v1, v2 = _signatures(bases["exact"], 1), _signatures(bases["exact"], 2)
    got = v2["rank_raw"](**arrays)
    contract2 = F.FeatureContract.from_config(training.load_model(model_dir2).config.data)
    context, grid = _offline_rank_inputs(data2, contract2, rows)
    want = v2["rank"](context=tf.constant(context), candidates=tf.constant(grid))
    np.testing.assert_allclose(got["score"].numpy(), want["score"].numpy(), atol=1e-6)
    # items of version 1's catalogue that version 2 never saw: OOV in version 2
    v2_items = set(open(os.path.join(data2, "vocab", "items.txt")).read().splitlines())
    unseen = [c for r in rows for c in r["candidates"] if c not in v2_items]
    assert any(c.startswith("sku-") and int(c[4:]) < 60 for c in unseen if c[4:].isdigit())
    assert not np.allclose(v1["rank_raw"](**arrays)["score"].numpy(), got["score"].numpy())
