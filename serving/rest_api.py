"""REST: TF Serving's `/v1/models/...` API over `http.server`.

`POST /v1/models/<name>[/versions/<v>]:predict` (row "instances" or columnar "inputs",
`{"b64": ...}` for bytes), `GET /v1/models/<name>[/versions/<v>]` (status),
`GET /v1/models/<name>[/versions/<v>]/metadata`, `GET /monitoring/prometheus/metrics`.

The body is checked before it is read: `Content-Length` missing (or chunked) → 411, not a
non-negative integer → 400, over the limit → 413 (the body is not drained; the connection is
closed). A request (line, headers and body) must arrive within `request_deadline` seconds
of its first byte being awaited, however slowly it trickles (408, connection closed), and
single reads time out after `read_timeout`. Past `max_connections` open connections a new one
is answered 503 at once and closed (`BoundedHTTPServer`): a crowd of slow clients costs
connections, never the compute of the others. Every error, including malformed request lines
and unsupported methods, is JSON in TF Serving's `{"error": "..."}` shape.
"""
from __future__ import annotations

import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Optional, Tuple

import grpc

from serving.codec import call_signature, rest_inputs, rest_response
from serving.errors import RequestError, classify, invalid
from serving.monitoring import CONTENT_TYPE, Metrics, Stages
from serving.models import ModelManager

LOG = logging.getLogger("serving")


def _not_found(path: str) -> RequestError:
    return RequestError(grpc.StatusCode.NOT_FOUND, f"unknown path {path}")


class RestHandler(BaseHTTPRequestHandler):
    """One HTTP connection; the class attributes are bound by `make_handler`."""
    manager: ModelManager
    metrics: Metrics
    max_batch: int
    max_body: int
    protocol_version = "HTTP/1.1"
    timeout = 30.0  # socket timeout: a client that stops sending cannot hold a thread
    request_deadline = 10.0  # the whole request, however slowly it trickles in
    _held = 0  # bytes of `body_budget` this connection's current request holds

    def handle_one_request(self):
        """One request under the whole-request deadline: if its line, headers and body have
        not all arrived in `request_deadline` seconds, the reading side is shut down (the
        pending read ends) and the request is answered 408 if it got that far."""
        self._received, self._expired = threading.Event(), False
        timer = threading.Timer(self.request_deadline, self._expire)
        timer.daemon = True
        timer.start()
        try:
            super().handle_one_request()
        finally:
            timer.cancel()

    def _expire(self):
        if not self._received.is_set():
            self._expired = True
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RD)
            except OSError:
                pass  # already closed

    def log_message(self, fmt, *args):  # structured logs instead of stderr lines
        LOG.debug(json.dumps({"event": "http", "line": fmt % args}))

    def _send(self, status: int, payload, content_type="application/json"):
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def send_error(self, code, message=None, explain=None):
        """http.server's own errors (bad request line, unsupported method) as JSON too."""
        self.close_connection = True
        try:
            self._send(code, {"error": message or self.responses.get(code, ("error",))[0]})
        except OSError:
            pass  # the client is gone; nothing to answer

    def _parse_path(self) -> Tuple[str, int, str, list]:
        path = self.path.split("?")[0]
        parts = path.strip("/").split("/")
        if len(parts) < 3 or parts[0] != "v1" or parts[1] != "models":
            raise _not_found(path)
        rest = parts[2:]
        name, verb = rest[0], None
        if ":" in rest[-1]:
            rest[-1], verb = rest[-1].split(":", 1)
            if len(rest) == 1:
                name = rest[0]
        version, extra = None, rest[1:]
        if extra[:1] == ["versions"]:
            if len(extra) < 2 or not extra[1].isdigit() or len(extra[1]) > 18:
                raise invalid(f"bad version in path {path}")
            version, extra = int(extra[1]), extra[2:]
        return name, version, verb, extra

    def _handle(self, method: str, fn: Callable):
        t0 = time.time()
        code = grpc.StatusCode.OK
        try:
            status, payload = fn()
        except Exception as e:  # mapped to a status and answered as JSON
            code, message, status = classify(e)
            if code == grpc.StatusCode.INTERNAL:
                LOG.exception("internal error")
            else:
                LOG.info(json.dumps({"event": "bad_request", "api": "rest", "method": method,
                                     "code": code.name, "message": message[:300]}))
            payload = {"error": message}
        finally:
            self.metrics.record("rest", method, code.name, time.time() - t0)
        try:
            self._send(status, payload)
        except OSError:
            self.close_connection = True  # the client went away while we answered
            return
        if status in (411, 413) and self.close_connection:
            self._linger()

    def _linger(self, seconds: float = 2.0, max_bytes: int = 256 * 2**20) -> None:
        """After answering without reading the body: discard what the client still sends
        for a bounded time, so that a client that writes its whole body before reading
        (most HTTP libraries) gets the answer instead of a broken pipe."""
        deadline, seen = time.time() + seconds, 0
        try:
            self.connection.settimeout(0.2)
            while time.time() < deadline and seen < max_bytes:
                chunk = self.connection.recv(1 << 20)
                if not chunk:
                    break
                seen += len(chunk)
        except OSError:
            pass  # timeout or reset: the client stopped sending; we close either way

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self.close_connection = True
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               "chunked request bodies are not accepted: send Content-Length",
                               http_status=411)
        raw = self.headers.get("Content-Length")
        if raw is None:
            self.close_connection = True
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               "a POST needs a Content-Length header", http_status=411)
        raw = raw.strip()
        if not raw.isdigit() or len(raw) > 18:
            self.close_connection = True
            raise invalid(f"Content-Length must be a non-negative integer, got {raw[:40]!r}")
        length = int(raw)
        if length > self.max_body:
            self.close_connection = True  # the body is not drained: the connection ends
            raise RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                               f"request of {length} bytes exceeds the limit {self.max_body}",
                               http_status=413)
        if not self.body_budget.take(length):
            self.close_connection = True
            raise RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                               f"server busy: {self.body_budget.limit} bytes of request bodies "
                               "in flight; retry later", http_status=503)
        self._held = length
        try:
            body = self.rfile.read(length)
        except (socket.timeout, TimeoutError, OSError) as e:
            self.close_connection = True
            raise RequestError(grpc.StatusCode.DEADLINE_EXCEEDED,
                               f"request body not received within {self.timeout} s",
                               http_status=408) from e
        if self._expired:
            raise RequestError(grpc.StatusCode.DEADLINE_EXCEEDED,
                               f"request not received within {self.request_deadline} s",
                               http_status=408)
        self._received.set()
        if len(body) != length:
            self.close_connection = True
            raise invalid(f"request body has {len(body)} of the announced {length} bytes")
        return body

    def do_GET(self):
        self._received.set()
        if self.path.split("?")[0] == "/monitoring/prometheus/metrics":
            return self._send(200, self.metrics.render(), CONTENT_TYPE)
        self._handle("GET", self._get)

    def _get(self):
        name, version, verb, extra = self._parse_path()
        if verb is not None or extra not in ([], ["metadata"]):
            raise _not_found(self.path)
        if extra == ["metadata"]:
            from google.protobuf import json_format
            model = self.manager.get(name, version)
            sigs = {k: json_format.MessageToDict(v) for k, v in model.signature_defs.items()
                    if k != "__saved_model_init_op"}
            return 200, {"model_spec": {"name": name, "version": str(model.version)},
                         "metadata": {"signature_def": {"signature_def": sigs}}}
        resp = self.manager.status(name, version)
        return 200, {"model_version_status": [
            {"version": str(s.version), "state": "AVAILABLE",
             "status": {"error_code": "OK", "error_message": ""}}
            for s in resp.model_version_status]}

    def do_POST(self):
        self._handle("POST", self._post)

    def _post(self):
        try:
            return self._post_held()
        finally:
            self.body_budget.give(self._held)
            self._held = 0

    def _post_held(self):
        name, version, verb, extra = self._parse_path()
        body = self._read_body()  # before anything else: the connection must stay in sync
        if verb != "predict" or extra:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT if verb in (
                "classify", "regress") else grpc.StatusCode.NOT_FOUND,
                f"unsupported method :{verb} (only :predict)")
        try:
            body = json.loads(body or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
            raise invalid(f"request body is not JSON: {type(e).__name__}: {e}") from e
        with self.manager.acquire(name, version) as model:
            signature = (body.get("signature_name") if isinstance(body, dict) else None) \
                or "serving_default"
            if not isinstance(signature, str) or signature not in model.input_specs:
                raise invalid(f"Serving signature name: \"{signature}\" not found; available: "
                              f"{sorted(model.signatures)}")
            stages = Stages()
            inputs, rows = rest_inputs(body, model.input_specs[signature])
            stages.mark("decode")
            with self.compute_slots:  # the bounded compute pool: connections only wait here
                stages.skip()  # the wait for a slot is no stage of the request
                out = call_signature(model, signature, inputs, self.max_batch, stages)
        payload = rest_response(out, rows)
        stages.mark("encode")  # JSON text is written by _send
        self.metrics.record_stages("rest", stages)
        return 200, payload

    def _method_not_allowed(self):
        self.close_connection = True
        self._handle(self.command, lambda: (_ for _ in ()).throw(RequestError(
            grpc.StatusCode.UNIMPLEMENTED, f"method {self.command} is not allowed",
            http_status=405)))

    do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _method_not_allowed


class ByteBudget:
    """Bytes of request bodies held at once across connections (taken before a body is
    read, given back when its request is answered)."""

    def __init__(self, limit: int):
        self.limit, self.used, self._lock = limit, 0, threading.Lock()

    def take(self, n: int) -> bool:
        with self._lock:
            if self.used + n > self.limit and n > 0:
                return False
            self.used += n
            return True

    def give(self, n: int) -> None:
        with self._lock:
            self.used -= n


def make_handler(manager: ModelManager, metrics: Metrics, max_batch: int, max_body: int,
                 read_timeout: float = 30.0, request_deadline: float = 10.0,
                 compute_workers: int = 4, max_inflight_bytes: Optional[int] = None):
    """A RestHandler class bound to one manager (http.server instantiates per connection);
    at most `compute_workers` of its requests run a signature at once, and request bodies
    of at most `max_inflight_bytes` (default 4 x `max_body`) are held at once: past it a
    request is refused with 503 before its body is read."""
    return type("Handler", (RestHandler,), {"manager": manager, "metrics": metrics,
                                            "max_batch": max_batch, "max_body": max_body,
                                            "timeout": read_timeout,
                                            "request_deadline": request_deadline,
                                            "compute_slots": threading.BoundedSemaphore(
                                                compute_workers),
                                            "body_budget": ByteBudget(
                                                max_inflight_bytes or 4 * max_body)})


class BoundedHTTPServer(ThreadingHTTPServer):
    """A thread per connection, at most `max_connections` at once: past that a new
    connection is answered 503 (JSON error) at once and closed, without a thread."""
    daemon_threads = True
    # the listen backlog: http.server's 5 makes a burst of connects wait for SYN retries
    # (1 s, 3 s, ...) before the server even sees them
    request_queue_size = 1024

    def __init__(self, address, handler, max_connections: int, metrics: Metrics):
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(max_connections)
        self.max_connections, self.metrics = max_connections, metrics

    def process_request(self, request, client_address):
        if not self._slots.acquire(blocking=False):
            body = json.dumps({"error": f"server busy: {self.max_connections} connections "
                                        "open; retry later"}).encode()
            try:
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: "
                                b"application/json\r\nConnection: close\r\nContent-Length: "
                                + str(len(body)).encode() + b"\r\n\r\n" + body)
            except OSError:
                pass  # the client is gone
            self.metrics.record("rest", "connect", grpc.StatusCode.UNAVAILABLE.name, 0.0)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()
