"""Export -> server -> official tensorflow-serving-api client, end to end."""
import base64
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from helpers import assert_paths_agree, gsu_determined
from seminar_tf.workflows import export, training
from seminar_tf import features as F
from seminar_tf.workflows.codebook_build import build_for_model_dir
from serving.client import GrpcClient, RestClient
from serving.server import Server

NAME = "seminar"


def _keras_scores(model_dir, examples, gsu="pq"):
    model = training.load_model(model_dir, gsu=gsu)
    contract = F.FeatureContract.from_config(model.config.data)
    out = model(contract.parse_examples(tf.constant(examples)))
    return out["score"].numpy(), tf.sigmoid(out["ctr"]).numpy()


def test_export_layout_ops_and_warmup(trained):
    model_dir, base, report, examples = trained
    v1 = os.path.join(base, NAME, "1")
    for name in ("saved_model.pb", "variables", "assets", "assets.extra"):
        assert os.path.exists(os.path.join(v1, name)), name
    assert report["gsu"] == "pq" and report["max_abs_diff_vs_keras"] <= 1e-5
    ops = export.check_stock_ops(v1)
    assert "PyFunc" not in ops and "EagerPyFunc" not in ops
    assert {"TopKV2", "GatherV2", "ParseExampleV2"} <= set(ops)
    loaded = tf.saved_model.load(v1)
    seen = []
    for raw in tf.data.TFRecordDataset(os.path.join(v1, "assets.extra",
                                                    "tf_serving_warmup_requests")):
        log = prediction_log_pb2.PredictionLog.FromString(raw.numpy())
        req = log.predict_log.request
        seen.append(req.model_spec.signature_name)
        out = loaded.signatures[req.model_spec.signature_name](
            **{k: tf.constant(tf.make_ndarray(v)) for k, v in req.inputs.items()})
        assert all(np.all(np.isfinite(v.numpy().astype(np.float64))) for v in out.values())
    assert seen.count("serving_default") >= 1 and "rank" in seen


def test_export_check_rejects_python_ops(tmp_path):
    class Bad(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def f(self, x):
            return tf.py_function(lambda a: a * 2, [x], tf.float32)
    tf.saved_model.save(Bad(), str(tmp_path / "bad"))
    with pytest.raises(export.ExportError, match="EagerPyFunc"):
        export.check_stock_ops(str(tmp_path / "bad"))


@pytest.fixture(scope="module")
def server_process(trained):
    _, base, _, _ = trained
    proc = subprocess.Popen([sys.executable, "-m", "seminar_tf.cli", "serve", "--model-base",
                             base, "--name", NAME, "--grpc-port", "0", "--rest-port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ports = None
    deadline = time.time() + 180
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("{") and '"ready"' in line:
            ports = json.loads(line)
            break
    if ports is None:
        proc.kill()
        raise RuntimeError(f"server did not start: {proc.stderr.read()[-3000:]}")
    yield ports
    proc.terminate()
    proc.wait(timeout=30)


def test_grpc_and_rest_equal_keras(trained, server_process):
    model_dir, _, _, examples = trained
    score, ctr = _keras_scores(model_dir, examples)
    client = GrpcClient(f"127.0.0.1:{server_process['grpc_port']}", NAME)
    out = client.predict_examples(examples)
    np.testing.assert_allclose(out["score"], score, atol=1e-5)
    np.testing.assert_allclose(out["ctr"], ctr, atol=1e-5)
    assert sorted(client.metadata().signature_def) == ["predict", "rank", "rank_raw",
                                                       "retrieve", "score_raw",
                                                       "serving_default"]
    status = client.status()
    from tensorflow_serving.apis import get_model_status_pb2
    assert status.model_version_status[0].state == \
        get_model_status_pb2.ModelVersionStatus.AVAILABLE
    rest = RestClient(f"http://127.0.0.1:{server_process['rest_port']}", NAME)
    np.testing.assert_allclose(rest.predict_examples(examples)["score"], score, atol=1e-5)
    assert rest.status()["model_version_status"][0]["state"] == "AVAILABLE"
    # columnar REST format
    body = {"inputs": {"examples": [{"b64": base64.b64encode(e).decode()} for e in examples]}}
    cols = rest.post(body)["outputs"]
    np.testing.assert_allclose(cols["score"], score, atol=1e-5)
    # dense `predict` signature over gRPC
    contract = F.FeatureContract.from_config(training.load_model(model_dir).config.data)
    parsed = contract.parse_examples(tf.constant(examples))
    req = predict_pb2.PredictRequest()
    req.model_spec.name = NAME
    req.model_spec.signature_name = "predict"
    for k in contract.dense_input_signature():
        req.inputs[k].CopyFrom(tf.make_tensor_proto(parsed[k].numpy()))
    np.testing.assert_allclose(client.predict(req)["score"], score, atol=1e-5)
    metrics = urllib.request.urlopen(
        f"http://127.0.0.1:{server_process['rest_port']}/monitoring/prometheus/metrics").read()
    assert b"seminar_serving_requests_total" in metrics
    from prometheus_client.parser import text_string_to_metric_families
    counts = {(s.labels["api"], s.labels["stage"]): s.value
              for f in text_string_to_metric_families(metrics.decode())
              if f.name == "seminar_serving_stage_ms" for s in f.samples
              if s.name.endswith("_count")}
    # the server's own stage timing of every successful Predict: 2 over gRPC, 2 over REST
    # (other tests may share the server, hence >=)
    for api, n in (("grpc", 2), ("rest", 2)):
        for stage in ("decode", "call", "encode"):
            assert counts[(api, stage)] >= n, (api, stage, counts)


def test_rank_over_grpc_and_rest_equals_per_candidate(trained, server_process):
    """One context + N candidates (rank) == N full Examples (serving_default)."""
    from serving.client import examples_from_events, rank_request_from_events
    model_dir, _, _, _ = trained
    model = training.load_model(model_dir, gsu="pq")
    contract = F.FeatureContract.from_config(model.config.data)
    rng = np.random.default_rng(0)
    d = model.config.data
    history = [{"item": int(i), "query": [int(rng.integers(2, d.query_vocab_size))],
                "attrs": [int(a) for a in rng.integers(2, d.attr_vocab_size, d.num_attrs)],
                "source": 2, "age_seconds": float(1000 * (30 - k))}
               for k, i in enumerate(rng.choice(np.arange(2, d.item_vocab_size), 30, False))]
    cands = [{"item": int(i), "attrs": [int(a) for a in rng.integers(2, d.attr_vocab_size,
                                                                      d.num_attrs)],
              "query": [5], "source": 2} for i in rng.integers(2, d.item_vocab_size, 12)]
    per = examples_from_events(contract, 3, history, cands)
    determined = gsu_determined(model, contract.parse_examples(tf.constant(per)))
    grpc_client = GrpcClient(f"127.0.0.1:{server_process['grpc_port']}", NAME)
    expected = grpc_client.predict_examples(per)["score"]
    context, items = rank_request_from_events(contract, 3, history, cands, query=[5], source=2)
    # two rows: the full list, and a shorter one padded with ""
    got = grpc_client.rank([context, context], [items, items[:5]])
    assert got["score"].shape == (2, 12)
    assert_paths_agree(got["score"][0], expected, determined)
    assert_paths_agree(got["score"][1, :5], expected[:5], determined[:5])
    assert got["mask"][1].tolist() == [True] * 5 + [False] * 7
    assert np.all(got["score"][1, 5:] == 0)
    rest = RestClient(f"http://127.0.0.1:{server_process['rest_port']}", NAME)
    assert_paths_agree(rest.rank([context], [items])["score"][0], expected, determined)
    # rows that disagree, and a garbage candidate: INVALID_ARGUMENT, then the server still works
    req = grpc_client.rank_request([context], [items])
    req.inputs["context"].CopyFrom(tf.make_tensor_proto([context, context], tf.string))
    code, _ = _grpc_code(lambda: grpc_client.predict(req))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, _ = _grpc_code(lambda: grpc_client.rank([context], [[b"garbage"]]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert_paths_agree(grpc_client.rank([context], [items])["score"][0], expected, determined)


def _grpc_code(fn):
    with pytest.raises(grpc.RpcError) as e:
        fn()
    return e.value.code(), e.value.details()


def test_bad_requests_then_success(trained, server_process):
    _, _, _, examples = trained
    client = GrpcClient(f"127.0.0.1:{server_process['grpc_port']}", NAME)
    rest_url = f"http://127.0.0.1:{server_process['rest_port']}"
    ok = lambda: client.predict_examples(examples)  # noqa: E731

    def req(signature="serving_default", inputs=None, name=NAME, version=None):
        r = predict_pb2.PredictRequest()
        r.model_spec.name = name
        r.model_spec.signature_name = signature
        if version is not None:
            r.model_spec.version.value = version
        for k, v in (inputs if inputs is not None else {
                "examples": tf.make_tensor_proto(examples, tf.string)}).items():
            r.inputs[k].CopyFrom(v)
        return r

    cases = [
        (req(name="nope"), grpc.StatusCode.NOT_FOUND, "nope"),
        (req(version=99), grpc.StatusCode.NOT_FOUND, "99"),
        (req(signature="nope"), grpc.StatusCode.INVALID_ARGUMENT, "nope"),
        (req(inputs={}), grpc.StatusCode.INVALID_ARGUMENT, "examples"),
        (req(inputs={"examples": tf.make_tensor_proto([1.0, 2.0])}),
         grpc.StatusCode.INVALID_ARGUMENT, "dtype"),
        (req(inputs={"examples": tf.make_tensor_proto([examples[:2]], tf.string)}),
         grpc.StatusCode.INVALID_ARGUMENT, "shape"),
        (req(inputs={"examples": tf.make_tensor_proto([b"not an example"], tf.string)}),
         grpc.StatusCode.INVALID_ARGUMENT, "InvalidArgumentError"),
        (req(inputs={"examples": tf.make_tensor_proto(examples[:1] * 1100, tf.string)}),
         grpc.StatusCode.INVALID_ARGUMENT, "exceeds"),
    ]
    for request, code, word in cases:
        got, details = _grpc_code(lambda: client.predict(request))
        assert got == code, (word, got, details)
        assert word in details, (word, details)
        assert ok()["score"].shape == (len(examples),)  # the server keeps serving

    def post(path, body):
        r = urllib.request.Request(rest_url + path, data=body if isinstance(body, bytes)
                                   else json.dumps(body).encode())
        try:
            urllib.request.urlopen(r, timeout=30)
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())["error"]
        return 200, ""

    b64 = [{"b64": base64.b64encode(e).decode()} for e in examples]
    rest_cases = [
        ("/v1/models/nope:predict", {"instances": b64}, 404),
        ("/v1/models/seminar/versions/7:predict", {"instances": b64}, 404),
        ("/v1/models/seminar:predict", {"signature_name": "x", "instances": b64}, 400),
        ("/v1/models/seminar:predict", {"instances": [{"b64": "!!"}]}, 400),
        ("/v1/models/seminar:predict", {"instances": [{"b64": base64.b64encode(
            b"garbage").decode()}]}, 400),
        ("/v1/models/seminar:predict", b"{not json", 400),
        ("/v1/models/seminar:predict", {"instances": [1.5, 2.5]}, 400),
        ("/v1/models/seminar:predict", {"signature_name": "predict", "inputs": {
            "user_id": [1]}}, 400),
    ]
    for path, body, status in rest_cases:
        code, message = post(path, body)
        assert code == status, (path, body, code, message)
        assert message
        assert ok()["score"].shape == (len(examples),)
    assert _grpc_code(lambda: client.predict_stub.Classify(
        __import__("tensorflow_serving.apis.classification_pb2",
                   fromlist=["x"]).ClassificationRequest()))[0] == grpc.StatusCode.UNIMPLEMENTED


def test_hot_reload_without_failed_calls(trained, tmp_path):
    model_dir, _, _, examples = trained
    base = str(tmp_path / "models")
    export.export_from_model_dir(model_dir, base, NAME, version=1, gsu="exact")
    server = Server(base, NAME, grpc_port=0, rest_port=0, poll_seconds=0.2).start()
    try:
        client = GrpcClient(f"127.0.0.1:{server.grpc_port}", NAME)
        seen, failures, stop = [], [], threading.Event()

        def loop():
            while not stop.is_set():
                try:
                    req = client.predict_request(examples)
                    resp = client.predict_stub.Predict(req, timeout=30)
                    seen.append(resp.model_spec.version.value)
                except grpc.RpcError as e:  # counted, the test fails on any
                    failures.append(e.code())
        threads = [threading.Thread(target=loop) for _ in range(2)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        export.export_from_model_dir(model_dir, base, NAME, version=2, gsu="pq")
        deadline = time.time() + 120
        while time.time() < deadline and (not seen or seen[-1] != 2):
            time.sleep(0.2)
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join()
        assert not failures, failures
        assert 1 in seen and seen[-1] == 2
        assert seen.index(2) > 0 and all(v == 2 for v in seen[seen.index(2) + 2:])
    finally:
        server.stop()
