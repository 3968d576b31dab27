"""A local server speaking the TensorFlow Serving API (gRPC and REST) for SavedModels in the
TF Serving layout `<base>/<name>/<version>/`: the lifecycle around the parts.

- `serving.models`: which version is served, hot reload, retries, draining;
- `serving.codec`: request decoding and validation (shared by gRPC and REST);
- `serving.grpc_api` / `serving.rest_api`: the two APIs;
- `serving.errors`: the one mapping from failures to statuses;
- `serving.monitoring`: Prometheus counters.

Binds 127.0.0.1 unless told otherwise. Bad requests get INVALID_ARGUMENT / HTTP 400 (unknown
model or version: NOT_FOUND / 404; oversized: RESOURCE_EXHAUSTED / 413) with a message
naming the problem; the server keeps serving.
"""
from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import signal
import threading
from typing import Optional

import seminar_tf  # noqa: F401  (Keras mode before TensorFlow)
import grpc

from serving.errors import RequestError  # noqa: F401  (re-exported for callers)
from serving.grpc_api import add_services
from serving.monitoring import Metrics
from serving.models import ModelManager
from serving.rest_api import BoundedHTTPServer, make_handler

LOG = logging.getLogger("serving")
MAX_REQUEST_BYTES = 64 * 2**20


class Server:
    """gRPC + REST servers around one ModelManager.

    Args:
        base, name: the model base path and name.
        host: the address to bind (loopback by default).
        grpc_port, rest_port: 0 picks free ports (read `grpc_port` / `rest_port` after).
        poll_seconds, settle_seconds: version polling (see `serving.models`).
        max_batch: the largest batch one request may carry.
        max_request_bytes: the largest gRPC message / REST body accepted.
        workers: gRPC worker threads (the compute pool of gRPC requests); REST requests
            run their signature in a pool of the same size (a REST connection waiting
            for its body holds a connection slot, never a compute slot).
        read_timeout: seconds one REST socket read may wait.
        request_deadline: seconds a whole REST request (line, headers, body) may take to
            arrive (408 and closed past it).
        max_connections: open REST connections at most (503 at once past it).
        max_concurrent_rpcs: gRPC calls in flight at most (RESOURCE_EXHAUSTED past it).
        max_inflight_bytes: REST request bodies held at once, in bytes (default 4 x
            `max_request_bytes`; 503 before the body is read past it).

    Memory per request is bounded by `max_request_bytes` (the message or body) plus its
    decoded form (JSON objects: a few times the body) and the tensors of at most `max_batch`
    rows; at most `max_concurrent_rpcs` gRPC messages and `max_inflight_bytes` of REST
    bodies are held at once, and an idle or trickling REST connection costs one thread
    (up to `max_connections`) until the request deadline cuts it.
    """

    def __init__(self, base: str, name: str, host: str = "127.0.0.1", grpc_port: int = 8500,
                 rest_port: int = 8501, poll_seconds: float = 2.0, max_batch: int = 1024,
                 workers: Optional[int] = None, settle_seconds: float = 1.0,
                 max_request_bytes: int = MAX_REQUEST_BYTES, read_timeout: float = 30.0,
                 request_deadline: float = 10.0, max_connections: int = 512,
                 max_concurrent_rpcs: int = 64, max_inflight_bytes: Optional[int] = None):
        self.manager = ModelManager(base, name, poll_seconds, settle_seconds)
        self.metrics = Metrics(name)
        workers = workers or max(4, 4 * (os.cpu_count() or 1))
        opts = [("grpc.max_receive_message_length", max_request_bytes),
                ("grpc.max_send_message_length", max_request_bytes)]
        self.grpc = grpc.server(concurrent.futures.ThreadPoolExecutor(workers), options=opts,
                                maximum_concurrent_rpcs=max_concurrent_rpcs)
        add_services(self.grpc, self.manager, self.metrics, max_batch)
        self.grpc_port = self.grpc.add_insecure_port(f"{host}:{grpc_port}")
        if self.grpc_port == 0:
            raise OSError(f"cannot bind gRPC to {host}:{grpc_port}")
        self.http = BoundedHTTPServer((host, rest_port), make_handler(
            self.manager, self.metrics, max_batch, max_request_bytes, read_timeout,
            request_deadline, workers, max_inflight_bytes), max_connections, self.metrics)
        self.rest_port = self.http.server_address[1]
        self.host = host

    def start(self) -> "Server":
        self.manager.start()
        self.grpc.start()
        threading.Thread(target=self.http.serve_forever, name="rest", daemon=True).start()
        LOG.info(json.dumps({"event": "serving", "model": self.manager.name, "host": self.host,
                             "grpc_port": self.grpc_port, "rest_port": self.rest_port}))
        return self

    def stop(self) -> None:
        self.manager.stop()
        self.http.shutdown()
        self.http.server_close()
        self.grpc.stop(grace=2).wait()


def serve_forever(base: str, name: str, host: str = "127.0.0.1", grpc_port: int = 8500,
                  rest_port: int = 8501, poll_seconds: float = 2.0, max_batch: int = 1024,
                  **bounds) -> int:
    """Runs the server until SIGINT / SIGTERM; prints one JSON "ready" line with the ports.
    `bounds`: `Server`'s workers, max_request_bytes, request_deadline, max_connections,
    max_concurrent_rpcs."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    server = Server(base, name, host, grpc_port, rest_port, poll_seconds, max_batch,
                    **bounds).start()
    if server.manager.current is None:
        LOG.warning(json.dumps({"event": "no_version_yet", "base": base, "model": name}))
    print(json.dumps({"ready": True, "grpc_port": server.grpc_port,
                      "rest_port": server.rest_port}), flush=True)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    server.stop()
    return 0
