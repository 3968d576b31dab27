"""A local server speaking the TensorFlow Serving API (gRPC and REST) for SavedModels in the
TF Serving layout `<base>/<name>/<version>/`.

gRPC: `tensorflow.serving.PredictionService` (Predict, GetModelMetadata; Classify, Regress and
MultiInference answer UNIMPLEMENTED: the models are rankers with their own signatures) and
`tensorflow.serving.ModelService.GetModelStatus`.
REST: `POST /v1/models/<name>[/versions/<v>]:predict` (row "instances" or columnar "inputs",
`{"b64": ...}` for bytes), `GET /v1/models/<name>[/versions/<v>]` (status),
`GET /v1/models/<name>[/versions/<v>]/metadata`, `GET /monitoring/prometheus/metrics`.

The newest version under `<base>/<name>` is served (TF Serving's default "latest" policy);
the base path is polled and a new version is loaded and warmed up (its
`assets.extra/tf_serving_warmup_requests` replayed) before it replaces the old one; requests in
flight keep the version they started with, so none fails. Bad requests get INVALID_ARGUMENT /
HTTP 400 (unknown model or version: NOT_FOUND / 404) with a message naming the problem; the
server keeps serving. Binds 127.0.0.1 unless told otherwise.
"""
from __future__ import annotations

import base64
import concurrent.futures
import json
import logging
import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, Optional, Tuple

import numpy as np

import seminar_tf  # noqa: F401  (Keras mode before TensorFlow)
import grpc
import tensorflow as tf
from google.protobuf import any_pb2
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

LOG = logging.getLogger("serving")
MAX_REQUEST_BYTES = 64 * 2**20
LATENCY_BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


class RequestError(Exception):
    """A request the server rejects; `code` is a grpc.StatusCode."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code


HTTP_STATUS = {grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.NOT_FOUND: 404,
               grpc.StatusCode.UNIMPLEMENTED: 501, grpc.StatusCode.RESOURCE_EXHAUSTED: 413,
               grpc.StatusCode.INTERNAL: 500, grpc.StatusCode.UNAVAILABLE: 503}


# ------------------------------------------------------------------------------- models
class LoadedModel:
    """One loaded version: its signatures, their input specs and SignatureDefs."""

    def __init__(self, name: str, version: int, path: str):
        from tensorflow.python.saved_model import loader_impl
        self.name, self.version, self.path = name, version, path
        self.module = tf.saved_model.load(path)
        self.signatures = dict(self.module.signatures)
        saved = loader_impl.parse_saved_model(path)
        self.signature_defs = dict(saved.meta_graphs[0].signature_def)
        self.input_specs = {k: f.structured_input_signature[1]
                            for k, f in self.signatures.items()}

    def warmup(self) -> int:
        """Replays `assets.extra/tf_serving_warmup_requests`; returns the number replayed."""
        from tensorflow_serving.apis import prediction_log_pb2
        path = os.path.join(self.path, "assets.extra", "tf_serving_warmup_requests")
        if not os.path.exists(path):
            return 0
        n = 0
        for raw in tf.data.TFRecordDataset(path):
            log = prediction_log_pb2.PredictionLog.FromString(raw.numpy())
            if log.WhichOneof("log_type") != "predict_log":
                continue
            run_predict(self, log.predict_log.request)
            n += 1
        return n


class ModelManager:
    """Polls `<base>/<name>` and serves the newest version; swaps atomically."""

    def __init__(self, base: str, name: str, poll_seconds: float = 2.0):
        self.base, self.name, self.poll_seconds = base, name, poll_seconds
        self._current: Optional[LoadedModel] = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.load_errors: Dict[int, str] = {}

    def versions_on_disk(self):
        d = os.path.join(self.base, self.name)
        if not os.path.isdir(d):
            return []
        return sorted(int(v) for v in os.listdir(d) if v.isdigit() and os.path.exists(
            os.path.join(d, v, "saved_model.pb")))

    def poll_once(self) -> bool:
        """Loads a newer version if one appeared; returns True when a swap happened."""
        versions = [v for v in self.versions_on_disk() if v not in self.load_errors]
        if not versions:
            return False
        newest = versions[-1]
        cur = self._current
        if cur is not None and cur.version == newest:
            return False
        path = os.path.join(self.base, self.name, str(newest))
        t0 = time.time()
        try:
            model = LoadedModel(self.name, newest, path)
            warm = model.warmup()
        except Exception as e:  # a broken version must not take the server down
            self.load_errors[newest] = f"{type(e).__name__}: {e}"
            LOG.error(json.dumps({"event": "load_failed", "model": self.name,
                                  "version": newest, "error": str(e)[:500]}))
            return False
        with self._lock:
            old, self._current = self._current, model
        LOG.info(json.dumps({"event": "version_loaded", "model": self.name, "version": newest,
                             "warmup_requests": warm, "seconds": round(time.time() - t0, 2),
                             "unloaded": old.version if old else None}))
        return True

    def start(self) -> None:
        self.poll_once()
        self._thread = threading.Thread(target=self._loop, name="version-poller", daemon=True)
        self._thread.start()

    def _loop(self):
        while not self._stop.wait(self.poll_seconds):
            self.poll_once()

    def stop(self):
        self._stop.set()

    def get(self, name: str, version: Optional[int] = None) -> LoadedModel:
        if name != self.name:
            raise RequestError(grpc.StatusCode.NOT_FOUND,
                               f"Servable not found for request: Latest({name})")
        cur = self._current
        if cur is None:
            raise RequestError(grpc.StatusCode.UNAVAILABLE, f"model {name} has no loaded version")
        if version is not None and version != cur.version:
            raise RequestError(grpc.StatusCode.NOT_FOUND,
                               f"Servable not found for request: Specific({name}, {version})")
        return cur


# --------------------------------------------------------------------------- predicting
def _check_input(name: str, value: np.ndarray, spec: tf.TensorSpec, max_batch: int):
    if value.dtype == object and spec.dtype != tf.string:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"input '{name}' has dtype string, expected {spec.dtype.name}")
    if spec.dtype == tf.string:
        if value.dtype != object and value.dtype.kind not in "SU":
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"input '{name}' has dtype {value.dtype}, expected string")
    elif spec.dtype.is_integer:
        if value.dtype.kind not in "iu":
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"input '{name}' has dtype {value.dtype}, expected "
                               f"{spec.dtype.name}")
    elif spec.dtype.is_floating and value.dtype.kind not in "fiu":
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"input '{name}' has dtype {value.dtype}, expected {spec.dtype.name}")
    if not spec.shape.is_compatible_with(value.shape):
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"input '{name}' has shape {list(value.shape)}, expected "
                           f"{spec.shape.as_list()} (None: any size)")
    if value.ndim and value.shape[0] > max_batch:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"batch size {value.shape[0]} of input '{name}' exceeds the limit "
                           f"{max_batch}")


def call_signature(model: LoadedModel, signature: str, inputs: Dict[str, np.ndarray],
                   max_batch: int = 1024) -> Dict[str, np.ndarray]:
    """Validates and runs one signature; maps TF errors to INVALID_ARGUMENT."""
    signature = signature or "serving_default"
    if signature not in model.signatures:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"Serving signature name: \"{signature}\" not found in signature "
                           f"def; available: {sorted(model.signatures)}")
    specs = model.input_specs[signature]
    missing = sorted(set(specs) - set(inputs))
    if missing:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"missing input(s) {missing} for signature '{signature}'")
    unknown = sorted(set(inputs) - set(specs))
    if unknown:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"unknown input(s) {unknown} for signature '{signature}'; "
                           f"expected {sorted(specs)}")
    batch = {x.shape[0] for x in inputs.values() if x.ndim}
    if len(batch) > 1:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"inputs disagree on the batch size: {sorted(batch)}")
    tensors = {}
    for k, v in inputs.items():
        _check_input(k, v, specs[k], max_batch)
        tensors[k] = tf.constant(v, dtype=specs[k].dtype)
    try:
        out = model.signatures[signature](**tensors)
    except (tf.errors.InvalidArgumentError, tf.errors.OutOfRangeError) as e:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"{type(e).__name__}: {e.message.splitlines()[0][:500]}") from e
    return {k: v.numpy() for k, v in out.items()}


def run_predict(model: LoadedModel, request: predict_pb2.PredictRequest,
                max_batch: int = 1024) -> predict_pb2.PredictResponse:
    inputs = {}
    for k, proto in request.inputs.items():
        try:
            inputs[k] = tf.make_ndarray(proto)
        except Exception as e:  # malformed TensorProto (bad dtype enum, size mismatch)
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"input '{k}' is not a valid TensorProto: {e}") from e
    out = call_signature(model, request.model_spec.signature_name, inputs, max_batch)
    resp = predict_pb2.PredictResponse()
    resp.model_spec.name = model.name
    resp.model_spec.version.value = model.version
    resp.model_spec.signature_name = request.model_spec.signature_name or "serving_default"
    wanted = set(request.output_filter) or set(out)
    unknown = wanted - set(out)
    if unknown:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"output_filter names unknown outputs {sorted(unknown)}")
    for k in wanted:
        resp.outputs[k].CopyFrom(tf.make_tensor_proto(out[k]))
    return resp


# --------------------------------------------------------------------------- metrics
class Metrics:
    """Prometheus-style counters and a latency histogram."""

    def __init__(self):
        self._lock = threading.Lock()
        self.requests: Dict[Tuple[str, str, str], int] = {}
        self.latency_sum = 0.0
        self.latency_count = 0
        self.buckets = [0] * len(LATENCY_BUCKETS_MS)

    def record(self, api: str, method: str, code: str, seconds: float):
        with self._lock:
            key = (api, method, code)
            self.requests[key] = self.requests.get(key, 0) + 1
            ms = seconds * 1000.0
            self.latency_sum += ms
            self.latency_count += 1
            for i, b in enumerate(LATENCY_BUCKETS_MS):
                if ms <= b:
                    self.buckets[i] += 1

    def render(self, model: str) -> str:
        with self._lock:
            lines = ["# TYPE seminar_serving_requests_total counter"]
            for (api, method, code), n in sorted(self.requests.items()):
                lines.append(f'seminar_serving_requests_total{{model="{model}",api="{api}",'
                             f'method="{method}",code="{code}"}} {n}')
            errors = sum(n for (_, _, c), n in self.requests.items() if c != "OK")
            lines += ["# TYPE seminar_serving_errors_total counter",
                      f'seminar_serving_errors_total{{model="{model}"}} {errors}',
                      "# TYPE seminar_serving_latency_ms histogram"]
            for b, n in zip(LATENCY_BUCKETS_MS, self.buckets):
                lines.append(f'seminar_serving_latency_ms_bucket{{le="{b}"}} {n}')
            lines += [f'seminar_serving_latency_ms_bucket{{le="+Inf"}} {self.latency_count}',
                      f"seminar_serving_latency_ms_sum {self.latency_sum:.3f}",
                      f"seminar_serving_latency_ms_count {self.latency_count}"]
        return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------- gRPC
class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, manager: ModelManager, metrics: Metrics, max_batch: int):
        self.manager, self.metrics, self.max_batch = manager, metrics, max_batch

    def _guard(self, method, context, fn):
        t0 = time.time()
        code = "OK"
        try:
            return fn()
        except RequestError as e:
            code = e.code.name
            LOG.info(json.dumps({"event": "bad_request", "api": "grpc", "method": method,
                                 "code": code, "message": str(e)[:300]}))
            context.abort(e.code, str(e))
        finally:
            self.metrics.record("grpc", method, code, time.time() - t0)

    def Predict(self, request, context):
        def fn():
            spec = request.model_spec
            version = spec.version.value if spec.HasField("version") else None
            model = self.manager.get(spec.name, version)
            return run_predict(model, request, self.max_batch)
        return self._guard("Predict", context, fn)

    def GetModelMetadata(self, request, context):
        def fn():
            spec = request.model_spec
            version = spec.version.value if spec.HasField("version") else None
            model = self.manager.get(spec.name, version)
            fields = list(request.metadata_field) or ["signature_def"]
            if fields != ["signature_def"]:
                raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"metadata_field must be ['signature_def'], got {fields}")
            resp = get_model_metadata_pb2.GetModelMetadataResponse()
            resp.model_spec.name = model.name
            resp.model_spec.version.value = model.version
            sig_map = get_model_metadata_pb2.SignatureDefMap()
            for k, v in model.signature_defs.items():
                if k != "__saved_model_init_op":
                    sig_map.signature_def[k].CopyFrom(v)
            packed = any_pb2.Any()
            packed.Pack(sig_map)
            resp.metadata["signature_def"].CopyFrom(packed)
            return resp
        return self._guard("GetModelMetadata", context, fn)

    def _unimplemented(self, method, context):
        def fn():
            raise RequestError(grpc.StatusCode.UNIMPLEMENTED,
                               f"{method} is not offered: SEMINAR rankers expose Predict "
                               "signatures (serving_default, predict, retrieve)")
        return self._guard(method, context, fn)

    def Classify(self, request, context):
        return self._unimplemented("Classify", context)

    def Regress(self, request, context):
        return self._unimplemented("Regress", context)

    def MultiInference(self, request, context):
        return self._unimplemented("MultiInference", context)


def model_status(manager: ModelManager, name: str, version: Optional[int]):
    from tensorflow_serving.apis import get_model_status_pb2 as s
    if name != manager.name:
        raise RequestError(grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model "
                                                      f"{name}")
    resp = s.GetModelStatusResponse()
    cur = manager._current
    if version is not None and (cur is None or version != cur.version):
        raise RequestError(grpc.StatusCode.NOT_FOUND,
                           f"Could not find version {version} of model {name}")
    if cur is not None:
        st = resp.model_version_status.add()
        st.version = cur.version
        st.state = s.ModelVersionStatus.AVAILABLE
        st.status.error_code = 0
    return resp


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, manager: ModelManager, metrics: Metrics):
        self.manager, self.metrics = manager, metrics

    def GetModelStatus(self, request, context):
        t0 = time.time()
        code = "OK"
        try:
            spec = request.model_spec
            version = spec.version.value if spec.HasField("version") else None
            return model_status(self.manager, spec.name, version)
        except RequestError as e:
            code = e.code.name
            context.abort(e.code, str(e))
        finally:
            self.metrics.record("grpc", "GetModelStatus", code, time.time() - t0)

    def HandleReloadConfigRequest(self, request, context):
        context.abort(grpc.StatusCode.UNIMPLEMENTED,
                      "config reload is not offered: the server polls its base path")


# ------------------------------------------------------------------------------- REST
def _decode_b64(value):
    if isinstance(value, dict):
        if set(value) == {"b64"}:
            try:
                return base64.b64decode(value["b64"], validate=True)
            except (ValueError, TypeError) as e:
                raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"invalid base64 in request: {e}") from e
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"unexpected object {sorted(value)} in request (only {{'b64': ...}})")
    if isinstance(value, list):
        return [_decode_b64(v) for v in value]
    return value


def _to_array(name: str, value, spec: tf.TensorSpec) -> np.ndarray:
    value = _decode_b64(value)
    try:
        if spec.dtype == tf.string:
            arr = np.array(value, dtype=object)
        else:
            arr = np.array(value)
            if arr.dtype == object:
                raise ValueError("ragged or mixed values")
    except ValueError as e:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"input '{name}' is not a rectangular array: {e}") from e
    if spec.dtype == tf.string and arr.dtype == object and arr.size and not all(
            isinstance(x, (bytes, str)) for x in arr.ravel()):
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"input '{name}' must hold strings (or {{'b64': ...}})")
    if arr.dtype.kind == "U":
        arr = arr.astype(object)
    if arr.dtype == object and spec.dtype != tf.string:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"input '{name}' has dtype string, expected {spec.dtype.name}")
    return arr


def rest_inputs(body: dict, specs: Dict[str, tf.TensorSpec]) -> Tuple[Dict, bool]:
    """Parses a REST predict body; returns (inputs, row_format)."""
    if not isinstance(body, dict):
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, "request body must be an object")
    if ("instances" in body) == ("inputs" in body):
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           "request must have exactly one of 'instances' or 'inputs'")
    if "inputs" in body:
        raw = body["inputs"]
        if not isinstance(raw, dict):
            if len(specs) != 1:
                raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"'inputs' must name the inputs {sorted(specs)}")
            raw = {next(iter(specs)): raw}
        return {k: _to_array(k, v, specs.get(k, tf.TensorSpec(None, tf.float32)))
                for k, v in raw.items()}, False
    instances = body["instances"]
    if not isinstance(instances, list) or not instances:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           "'instances' must be a non-empty list")
    if all(isinstance(x, dict) and set(x) != {"b64"} for x in instances):
        keys = set(instances[0])
        if any(set(x) != keys for x in instances):
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               "all instances must have the same named inputs")
        return {k: _to_array(k, [x[k] for x in instances],
                             specs.get(k, tf.TensorSpec(None, tf.float32))) for k in keys}, True
    if len(specs) != 1:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"instances must be objects naming the inputs {sorted(specs)}")
    k = next(iter(specs))
    return {k: _to_array(k, instances, specs[k])}, True


def _jsonable(arr: np.ndarray):
    if arr.dtype == object or arr.dtype.kind == "S":
        return [_jsonable(x) if isinstance(x, np.ndarray) else {
            "b64": base64.b64encode(x).decode()} for x in arr]
    return arr.tolist()


class RestHandler(BaseHTTPRequestHandler):
    manager: ModelManager
    metrics: Metrics
    max_batch: int
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # structured logs instead of stderr lines
        LOG.debug(json.dumps({"event": "http", "line": fmt % args}))

    def _send(self, status: int, payload, content_type="application/json"):
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _parse_path(self):
        path = self.path.split("?")[0]
        parts = path.strip("/").split("/")
        if len(parts) < 3 or parts[0] != "v1" or parts[1] != "models":
            raise RequestError(grpc.StatusCode.NOT_FOUND, f"unknown path {path}")
        rest = parts[2:]
        name, verb = rest[0], None
        if ":" in rest[-1]:
            rest[-1], verb = rest[-1].split(":", 1)
            if len(rest) == 1:
                name = rest[0]
        version, extra = None, rest[1:]
        if extra[:1] == ["versions"]:
            if len(extra) < 2 or not extra[1].isdigit():
                raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"bad version in path {path}")
            version, extra = int(extra[1]), extra[2:]
        return name, version, verb, extra

    def _handle(self, method: str, fn):
        t0 = time.time()
        code = "OK"
        try:
            status, payload = fn()
            self._send(status, payload)
        except RequestError as e:
            code = e.code.name
            LOG.info(json.dumps({"event": "bad_request", "api": "rest", "method": method,
                                 "code": code, "message": str(e)[:300]}))
            self._send(HTTP_STATUS.get(e.code, 400), {"error": str(e)})
        except Exception as e:  # keep serving, but report it as a server error
            code = "INTERNAL"
            LOG.exception("internal error")
            self._send(500, {"error": f"internal error: {type(e).__name__}: {e}"})
        finally:
            self.metrics.record("rest", method, code, time.time() - t0)

    def do_GET(self):
        if self.path.startswith("/monitoring/prometheus/metrics"):
            return self._send(200, self.metrics.render(self.manager.name).encode(),
                              "text/plain; version=0.0.4")

        def fn():
            name, version, verb, extra = self._parse_path()
            if verb is not None or extra not in ([], ["metadata"]):
                raise RequestError(grpc.StatusCode.NOT_FOUND, f"unknown path {self.path}")
            if extra == ["metadata"]:
                model = self.manager.get(name, version)
                from google.protobuf import json_format
                sigs = {k: json_format.MessageToDict(v) for k, v in
                        model.signature_defs.items() if k != "__saved_model_init_op"}
                return 200, {"model_spec": {"name": name, "version": str(model.version)},
                             "metadata": {"signature_def": {"signature_def": sigs}}}
            resp = model_status(self.manager, name, version)
            return 200, {"model_version_status": [
                {"version": str(s.version), "state": "AVAILABLE",
                 "status": {"error_code": "OK", "error_message": ""}}
                for s in resp.model_version_status]}
        self._handle("GET", fn)

    def do_POST(self):
        def fn():
            name, version, verb, extra = self._parse_path()
            if verb != "predict" or extra:
                raise RequestError(grpc.StatusCode.INVALID_ARGUMENT if verb in (
                    "classify", "regress") else grpc.StatusCode.NOT_FOUND,
                    f"unsupported method :{verb} (only :predict)")
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_REQUEST_BYTES:
                self.rfile.read(length)
                raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"request of {length} bytes exceeds {MAX_REQUEST_BYTES}")
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw or b"null")
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"request body is not JSON: {e}") from e
            model = self.manager.get(name, version)
            signature = (body.get("signature_name") if isinstance(body, dict) else None) \
                or "serving_default"
            specs = model.input_specs.get(signature)
            if specs is None:
                raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"Serving signature name: \"{signature}\" not found; "
                                   f"available: {sorted(model.signatures)}")
            inputs, rows = rest_inputs(body, specs)
            out = call_signature(model, signature, inputs, self.max_batch)
            if rows:
                n = next(iter(out.values())).shape[0]
                if len(out) == 1:
                    preds = _jsonable(next(iter(out.values())))
                else:
                    cols = {k: _jsonable(v) for k, v in out.items()}
                    preds = [{k: cols[k][i] for k in out} for i in range(n)]
                return 200, {"predictions": preds}
            return 200, {"outputs": {k: _jsonable(v) for k, v in out.items()}
                         if len(out) > 1 else _jsonable(next(iter(out.values())))}
        self._handle("POST", fn)


# ------------------------------------------------------------------------------ server
class Server:
    """gRPC + REST servers around one ModelManager."""

    def __init__(self, base: str, name: str, host: str = "127.0.0.1", grpc_port: int = 8500,
                 rest_port: int = 8501, poll_seconds: float = 2.0, max_batch: int = 1024,
                 workers: Optional[int] = None):
        self.manager = ModelManager(base, name, poll_seconds)
        self.metrics = Metrics()
        workers = workers or max(4, 4 * (os.cpu_count() or 1))
        opts = [("grpc.max_receive_message_length", MAX_REQUEST_BYTES),
                ("grpc.max_send_message_length", MAX_REQUEST_BYTES)]
        self.grpc = grpc.server(concurrent.futures.ThreadPoolExecutor(workers), options=opts)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionServicer(self.manager, self.metrics, max_batch), self.grpc)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(
            ModelServicer(self.manager, self.metrics), self.grpc)
        self.grpc_port = self.grpc.add_insecure_port(f"{host}:{grpc_port}")
        if self.grpc_port == 0:
            raise OSError(f"cannot bind gRPC to {host}:{grpc_port}")
        handler = type("Handler", (RestHandler,), {"manager": self.manager,
                                                   "metrics": self.metrics,
                                                   "max_batch": max_batch})
        self.http = ThreadingHTTPServer((host, rest_port), handler)
        self.http.daemon_threads = True
        self.rest_port = self.http.server_address[1]
        self.host = host

    def start(self):
        self.manager.start()
        self.grpc.start()
        threading.Thread(target=self.http.serve_forever, name="rest", daemon=True).start()
        LOG.info(json.dumps({"event": "serving", "model": self.manager.name, "host": self.host,
                             "grpc_port": self.grpc_port, "rest_port": self.rest_port}))
        return self

    def stop(self):
        self.manager.stop()
        self.http.shutdown()
        self.grpc.stop(grace=2).wait()


def serve_forever(base: str, name: str, host: str = "127.0.0.1", grpc_port: int = 8500,
                  rest_port: int = 8501, poll_seconds: float = 2.0, max_batch: int = 1024) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    server = Server(base, name, host, grpc_port, rest_port, poll_seconds, max_batch).start()
    if server.manager._current is None:
        LOG.warning(json.dumps({"event": "no_version_yet", "base": base, "model": name}))
    print(json.dumps({"ready": True, "grpc_port": server.grpc_port,
                      "rest_port": server.rest_port}), flush=True)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    server.stop()
    return 0
