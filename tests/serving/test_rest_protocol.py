"""REST at the socket level: Content-Length checked before reading, bounded reads, JSON
errors in TF Serving's {"error": ...} shape for every failure; gRPC size limit."""
import json
import socket
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from serving.server import Server

NAME = "seminar"


@pytest.fixture(scope="module")
def server(trained):
    _, base, _, _ = trained
    s = Server(base, NAME, grpc_port=0, rest_port=0, poll_seconds=60, read_timeout=1.0,
               max_request_bytes=2 * 2**20).start()
    yield s
    s.stop()


def raw_http(port, head: bytes, body: bytes = b"", wait: float = 10.0):
    """Sends raw bytes; returns (status, json body, seconds until the answer)."""
    t0 = time.time()
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        s.sendall(head + body)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        header, _, rest = data.partition(b"\r\n\r\n")
        lines = header.decode().split("\r\n")
        status = int(lines[0].split()[1])
        length = next(int(ln.split(":")[1]) for ln in lines[1:]
                      if ln.lower().startswith("content-length"))
        while len(rest) < length:
            chunk = s.recv(65536)
            if not chunk:
                break
            rest += chunk
    return status, json.loads(rest[:length]), time.time() - t0


def post_head(length_header: bytes) -> bytes:
    return (b"POST /v1/models/seminar:predict HTTP/1.1\r\nHost: x\r\n" + length_header
            + b"Content-Type: application/json\r\n\r\n")


@pytest.mark.parametrize("header,status", [
    (b"Content-Length: 1000000000\r\n", 413),   # 1 GB announced: refused before reading
    (b"Content-Length: -5\r\n", 400),
    (b"Content-Length: abc\r\n", 400),
    (b"Content-Length: 99999999999999999999999\r\n", 400),
    (b"", 411),
    (b"Transfer-Encoding: chunked\r\n", 411),
])
def test_content_length_checked_before_reading(server, header, status):
    code, body, seconds = raw_http(server.rest_port, post_head(header))
    assert code == status, body
    assert set(body) == {"error"} and body["error"]
    assert seconds < 0.9  # answered at once, not after the read timeout


def test_slow_body_times_out_and_short_body_is_rejected(server):
    code, body, seconds = raw_http(server.rest_port, post_head(b"Content-Length: 100\r\n"),
                                   b'{"instances"')
    assert code == 408 and "error" in body
    assert 0.9 <= seconds < 5


def test_method_and_request_line_errors_are_json(server):
    for head, status in [(b"PUT /v1/models/seminar HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405),
                         (b"DELETE /v1/models/seminar HTTP/1.1\r\n\r\n", 405),
                         (b"GET / bad-syntax HTTP/1.1\r\n\r\n", 400),
                         (b"GET /nope HTTP/1.1\r\n\r\n", 404)]:
        code, body, _ = raw_http(server.rest_port, head)
        assert code == status and set(body) == {"error"}, (head, code, body)


def test_server_still_answers_after_protocol_abuse(server, trained):
    import base64
    _, _, _, examples = trained
    payload = json.dumps({"instances": [{"b64": base64.b64encode(e).decode()}
                                        for e in examples]}).encode()
    code, body, _ = raw_http(server.rest_port, post_head(
        f"Content-Length: {len(payload)}\r\n".encode()), payload)
    assert code == 200 and len(body["predictions"]) == len(examples)


def test_grpc_message_over_the_limit_is_resource_exhausted(server, trained):
    _, _, _, examples = trained
    stub = prediction_service_pb2_grpc.PredictionServiceStub(
        grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}"))
    req = predict_pb2.PredictRequest()
    req.model_spec.name = NAME
    req.inputs["examples"].CopyFrom(tf.make_tensor_proto(
        np.array([b"x" * 3 * 2**20], dtype=object)))
    with pytest.raises(grpc.RpcError) as e:
        stub.Predict(req, timeout=30)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    ok = predict_pb2.PredictRequest()
    ok.model_spec.name = NAME
    ok.inputs["examples"].CopyFrom(tf.make_tensor_proto(np.array(examples, dtype=object)))
    assert stub.Predict(ok, timeout=30).outputs["score"].tensor_shape.dim[0].size == len(
        examples)


def test_oversized_body_from_a_normal_client_gets_413(server):
    """http.client writes the whole body before reading: the server answers 413 at once and
    then discards the rest for a bounded time, so the client reads the answer."""
    import urllib.error
    import urllib.request
    body = b'{"instances": ["' + b"x" * (3 * 2**20) + b'"]}'
    req = urllib.request.Request(f"http://127.0.0.1:{server.rest_port}/v1/models/seminar"
                                 ":predict", body)
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=30)
    assert e.value.code == 413 and "exceeds" in json.loads(e.value.read())["error"]
