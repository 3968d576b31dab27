"""The server's bounds: slow clients cut at the whole-request deadline, connections past the
limit refused with 503 at once, TensorFlow's status codes passed through as TF Serving does,
version folders of ASCII digits only."""
import json
import os
import shutil
import socket
import time

import grpc
import pytest
import tensorflow as tf

from serving.errors import classify
from serving.models import ModelManager
from serving.server import Server

NAME = "seminar"


@pytest.fixture()
def bounded(tmp_path):
    s = Server(str(tmp_path / "none"), NAME, grpc_port=0, rest_port=0, poll_seconds=60,
               read_timeout=5.0, request_deadline=1.0, max_connections=2).start()
    yield s
    s.stop()


def _read_answer(sock, wait=5.0):
    sock.settimeout(wait)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    return data


def test_a_trickling_request_is_cut_at_the_deadline(bounded):
    """A body sent a byte every 0.3 s: answered 408 and closed about when the 1 s deadline
    passes (a per-read timeout alone would wait forever)."""
    t0 = time.time()
    with socket.create_connection(("127.0.0.1", bounded.rest_port)) as s:
        s.sendall(b"POST /v1/models/seminar:predict HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Length: 100\r\n\r\n")
        got = b""
        for _ in range(20):
            try:
                s.sendall(b"x")
            except OSError:
                break
            s.settimeout(0.3)
            try:
                got += s.recv(65536)
            except socket.timeout:
                continue
            if got:
                break
        got += _read_answer(s, 2.0)
    assert got.startswith(b"HTTP/1.1 408"), got[:200]
    assert time.time() - t0 < 3.0


def test_trickling_headers_lose_the_connection(bounded):
    """Request-line bytes every 0.3 s for 2.1 s: the server has closed the connection (EOF
    or reset) instead of waiting for the rest."""
    with socket.create_connection(("127.0.0.1", bounded.rest_port)) as s:
        try:
            for b in b"GET /mon":
                s.sendall(bytes([b]))
                time.sleep(0.3)
        except OSError:
            return  # already cut
        s.settimeout(2.0)
        try:
            assert s.recv(65536) == b""
        except ConnectionResetError:
            pass


def test_connections_past_the_limit_get_503_at_once(bounded):
    port = bounded.rest_port
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
    try:
        time.sleep(0.2)
        t0 = time.time()
        with socket.create_connection(("127.0.0.1", port)) as extra:
            got = _read_answer(extra, 2.0)
        assert got.startswith(b"HTTP/1.1 503"), got[:200]
        assert time.time() - t0 < 1.0
        assert "connections open" in json.loads(got.partition(b"\r\n\r\n")[2])["error"]
        # gRPC is not behind the REST limit: it answers at once (no model is loaded here)
        with grpc.insecure_channel(f"127.0.0.1:{bounded.grpc_port}") as ch:
            from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc
            req = get_model_status_pb2.GetModelStatusRequest()
            req.model_spec.name = NAME
            t0 = time.time()
            try:
                model_service_pb2_grpc.ModelServiceStub(ch).GetModelStatus(req, timeout=5)
            except grpc.RpcError as e:
                assert e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.NOT_FOUND)
            assert time.time() - t0 < 2.0
    finally:
        for s in held:
            s.close()
    time.sleep(1.5)  # the held connections are released (closed, or cut at the deadline)
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"GET /monitoring/prometheus/metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _read_answer(s).startswith(b"HTTP/1.1 200")
    assert bounded.metrics.count("UNAVAILABLE") >= 1


def test_request_bodies_past_the_memory_budget_get_503_before_they_are_read(tmp_path):
    s = Server(str(tmp_path / "none"), NAME, grpc_port=0, rest_port=0, poll_seconds=60,
               request_deadline=3.0, max_request_bytes=1000, max_inflight_bytes=1500).start()
    head = (b"POST /v1/models/seminar:predict HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 1000\r\n\r\n")
    try:
        with socket.create_connection(("127.0.0.1", s.rest_port)) as first:
            first.sendall(head + b"{")  # 1000 bytes announced and held while they arrive
            time.sleep(0.3)
            t0 = time.time()
            with socket.create_connection(("127.0.0.1", s.rest_port)) as second:
                second.sendall(head)
                got = _read_answer(second, 2.0)
                assert time.time() - t0 < 1.0
                got += second.recv(4096)  # the JSON body after the headers
            assert got.startswith(b"HTTP/1.1 503"), got[:200]
            assert "bytes of request bodies in flight" in got.decode()
        time.sleep(3.5)  # the first is cut at the deadline and gives its bytes back
        with socket.create_connection(("127.0.0.1", s.rest_port)) as third:
            third.sendall(head + b" " * 1000)
            got = _read_answer(third, 5.0)
        assert got.startswith(b"HTTP/1.1 400"), got[:200]  # read and answered: bad JSON
    finally:
        s.stop()


def test_grpc_calls_past_the_limit_get_resource_exhausted(trained, monkeypatch):
    """`max_concurrent_rpcs`: with one call in flight (held in compute), the next ones are
    refused with RESOURCE_EXHAUSTED at once, and served again once it finished."""
    import threading
    from serving import grpc_api
    from serving.client import GrpcClient
    gate = threading.Event()
    real = grpc_api.run_predict

    def held(*args, **kwargs):
        gate.wait(10)
        return real(*args, **kwargs)
    monkeypatch.setattr(grpc_api, "run_predict", held)
    s = Server(trained[1], NAME, grpc_port=0, rest_port=0, poll_seconds=60,
               max_concurrent_rpcs=1).start()
    try:
        client = GrpcClient(f"127.0.0.1:{s.grpc_port}", NAME)
        req = client.predict_request(trained[3][:2])
        first = client.predict_stub.Predict.future(req, timeout=20)
        time.sleep(0.5)
        t0 = time.time()
        with pytest.raises(grpc.RpcError) as e:
            client.predict_stub.Predict(req, timeout=5)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert time.time() - t0 < 1.0
        gate.set()
        assert tf.make_ndarray(first.result().outputs["score"]).shape == (2,)
        again = client.predict_stub.Predict(req, timeout=20)
        assert tf.make_ndarray(again.outputs["score"]).shape == (2,)
    finally:
        gate.set()
        s.stop()


@pytest.mark.parametrize("error,code,http", [
    (tf.errors.InvalidArgumentError, grpc.StatusCode.INVALID_ARGUMENT, 400),
    (tf.errors.NotFoundError, grpc.StatusCode.NOT_FOUND, 404),
    (tf.errors.FailedPreconditionError, grpc.StatusCode.FAILED_PRECONDITION, 400),
    (tf.errors.DataLossError, grpc.StatusCode.DATA_LOSS, 500),
    (tf.errors.UnknownError, grpc.StatusCode.UNKNOWN, 500),
    (tf.errors.ResourceExhaustedError, grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
    (tf.errors.OutOfRangeError, grpc.StatusCode.OUT_OF_RANGE, 400)])
def test_tensorflow_status_codes_pass_through(error, code, http):
    got, message, status = classify(error(None, None, "kernel said no"), "signature 'x'")
    assert (got, status) == (code, http) and "kernel said no" in message


def test_version_folders_must_be_ascii_digits(trained, tmp_path):
    base = tmp_path / "models"
    shutil.copytree(os.path.join(trained[1], NAME, "1"), base / NAME / "3")
    for bad in ("²", "v4", "٥"):  # isdigit() is True for the first and the last
        (base / NAME / bad).mkdir()
    m = ModelManager(str(base), NAME, settle_seconds=0.0).start()
    try:
        assert m.versions_on_disk() == [3]
        deadline = time.time() + 30
        while m.current is None and time.time() < deadline:
            m.poll_once()
            time.sleep(0.05)
        assert m.current.version == 3
    finally:
        m.stop()


def test_export_numbers_versions_by_the_same_rule(tmp_path):
    from seminar_tf.workflows.export import next_version
    for name in ("1", "3", "²", "v9"):
        (tmp_path / name).mkdir()
    assert next_version(str(tmp_path)) == 4
