"""Fuzzing the server over gRPC and REST for every signature: each case class gets its
written-down status (serving.request_fuzz.EXPECTED), the server stays up, and a good request right
after each bad one succeeds."""
import random

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seminar_tf import features as F
from seminar_tf.workflows import training
from serving import request_fuzz as fuzz
from serving.server import Server

NAME = "seminar"
MAX_BATCH = 64
SIGNATURES = ("serving_default", "predict", "retrieve", "rank", "rank_raw", "score_raw")


@pytest.fixture(scope="module")
def served(trained):
    model_dir, base, _, examples = trained
    contract = F.FeatureContract.from_config(training.load_model(model_dir).config.data)
    server = Server(base, NAME, grpc_port=0, rest_port=0, max_batch=MAX_BATCH,
                    poll_seconds=60).start()
    channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    from tensorflow_serving.apis import prediction_service_pb2_grpc
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    yield server, stub, contract, examples
    channel.close()
    server.stop()


def grpc_call(stub, signature, inputs):
    return fuzz.grpc_call(stub, NAME, signature, inputs)


def rest_call(port, signature, inputs):
    return fuzz.rest_call(port, NAME, signature, inputs)


def check(status, out, case, signature, good):
    assert status in fuzz.EXPECTED[case], (case, signature, status, out)
    if status == "OK":
        for k, v in out.items():
            if v.dtype.kind == "f":
                assert np.all(np.isfinite(v)), (case, signature, k)
    else:
        assert isinstance(out, str) and out, (case, status)
    assert good()[0] == "OK"  # the server keeps serving


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=st.sampled_from(fuzz.CASES), signature=st.sampled_from(SIGNATURES),
       seed=st.integers(0, 2**31 - 1))
def test_grpc_fuzz(served, case, signature, seed):
    server, stub, contract, examples = served
    sig, inputs = fuzz.build_case(case, signature, contract, random.Random(seed), MAX_BATCH)
    status, out = grpc_call(stub, sig, inputs)
    good = {"examples": np.array(examples, dtype=object)}
    check(status, out, case, sig, lambda: grpc_call(stub, "serving_default", good))


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=st.sampled_from(fuzz.CASES), signature=st.sampled_from(SIGNATURES),
       seed=st.integers(0, 2**31 - 1))
def test_rest_fuzz(served, case, signature, seed):
    server, _, contract, examples = served
    sig, inputs = fuzz.build_case(case, signature, contract, random.Random(seed), MAX_BATCH)
    status, out = rest_call(server.rest_port, sig, inputs)
    good = {"examples": np.array(examples, dtype=object)}
    check(status, out, case, sig, lambda: rest_call(server.rest_port, "serving_default", good))


@pytest.mark.parametrize("case", fuzz.CASES)
@pytest.mark.parametrize("signature", SIGNATURES)
def test_every_case_class_has_its_status_over_grpc(served, case, signature):
    """Each (case class, signature) at least once, so no class depends on hypothesis' draw."""
    server, stub, contract, examples = served
    sig, inputs = fuzz.build_case(case, signature, contract, random.Random(1), MAX_BATCH)
    status, out = grpc_call(stub, sig, inputs)
    good = {"examples": np.array(examples, dtype=object)}
    check(status, out, case, sig, lambda: grpc_call(stub, "serving_default", good))


def test_ids_out_of_vocab_score_like_oov(served):
    """Out-of-vocabulary ids in dense inputs are mapped to OOV exactly as parsing does."""
    server, stub, contract, _ = served
    rng = random.Random(3)
    examples = fuzz.make_examples(contract, rng, 3, 7, id_scale=2**40)
    dense = fuzz.dense_inputs(contract, examples)
    raw = dict(dense)
    raw["target_item"] = np.array([-5, 2**40, 10**12], np.int64)
    status_a, a = grpc_call(stub, "predict", raw)
    mapped = dict(raw)
    mapped["target_item"] = np.array([F.OOV_ID] * 3, np.int64)
    status_b, b = grpc_call(stub, "predict", mapped)
    assert status_a == status_b == "OK"
    np.testing.assert_allclose(a["score"], b["score"], atol=1e-6)
