"""A small client for the SEMINAR serving API over gRPC (tensorflow-serving-api) and REST.

    client = GrpcClient("127.0.0.1:8500", "seminar")
    scores = client.predict_examples([example, ...])      # {"score": ..., "ctr": ..., ...}
    rest = RestClient("http://127.0.0.1:8501", "seminar")
    rest.predict_examples([example, ...])

    # one user, N candidates: the history travels once (the `rank` signature)
    context, candidates = rank_request_from_events(contract, user_id, history, items)
    client.rank([context], [candidates])["score"]          # (1, N)
    rest.rank([context], [candidates])["score"]

    # raw features (`rank_raw`): what the client logs, no vocabulary file needed
    row = raw_rank_row(events, "user-47", ["sku-150", "sku-7"], request_time=1.7e12,
                       query="red running shoes")
    client.rank_raw([row])["score"]                          # (1, 2)

Examples are built with the feature contract (`seminar_tf.features.FeatureContract`), e.g.
from events with `examples_from_events`; raw-feature rows from event dicts with
`raw_rank_row` (the shape of the `events` source's JSON lines).
"""
from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

import grpc
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

from seminar_tf.raw_events import label_of, request_arrays, source_id, timestamp_ms
from seminar_tf.text import words

ExampleLike = Union[bytes, "tf.train.Example"]  # noqa: F821


def _serialize(examples: Iterable[ExampleLike]) -> List[bytes]:
    return [e if isinstance(e, bytes) else e.SerializeToString() for e in examples]


def examples_from_events(contract, user_id: int, history: Sequence[Dict],
                         candidates: Sequence[Dict]) -> List[bytes]:
    """Serialized Examples scoring `candidates` for one user.

    Args:
        contract: the model's FeatureContract.
        user_id: user vocabulary id.
        history: behaviours oldest first, dicts with item, query (token ids), attrs, source,
            age_seconds (time before the request).
        candidates: dicts with item, query, attrs, source.
    """
    out = []
    for c in candidates:
        out.append(contract.make_example(
            user_id=user_id, target_item=c["item"], label=0.0,
            target_query=c.get("query", ()), target_attrs=c.get("attrs", ()),
            target_source=c.get("source", 1),
            hist_items=[h["item"] for h in history],
            hist_query=[h.get("query", ()) for h in history],
            hist_attrs=[h.get("attrs", ()) for h in history],
            hist_sources=[h.get("source", 1) for h in history],
            hist_time_gaps=[float(h.get("age_seconds", 0.0)) for h in history],
            record=f"user {user_id}").SerializeToString())
    return out


def rank_request_from_events(contract, user_id: int, history: Sequence[Dict],
                             candidates: Sequence[Dict], query: Sequence[int] = (),
                             source: int = 1) -> Tuple[bytes, List[bytes]]:
    """One `rank` row: the context Example (user, query, source, history; arguments as in
    `examples_from_events`) and one small Example per candidate (item, attrs)."""
    context = contract.make_example(
        user_id=user_id, target_item=0, label=0.0, target_query=query, target_source=source,
        hist_items=[h["item"] for h in history],
        hist_query=[h.get("query", ()) for h in history],
        hist_attrs=[h.get("attrs", ()) for h in history],
        hist_sources=[h.get("source", 1) for h in history],
        hist_time_gaps=[float(h.get("age_seconds", 0.0)) for h in history],
        record=f"user {user_id}").SerializeToString()
    cands = [contract.make_example(user_id=0, target_item=c["item"], label=0.0,
                                   target_attrs=c.get("attrs", ())).SerializeToString()
             for c in candidates]
    return context, cands


def _query_text(query) -> str:
    """A logged query (text, a token list or None) as text."""
    if query is None:
        return ""
    return " ".join(str(t) for t in query) if isinstance(query, (list, tuple)) else str(query)


def raw_rank_row(events: Iterable[Dict], user_id: str, candidates: Sequence[str],
                 request_time=None, query="", source: str = "", unit: str = "ms",
                 max_history: Optional[int] = None) -> Dict[str, object]:
    """One `rank_raw` row from logged events, as the Beam job builds a history.

    Args:
        events: dicts in the `events` source's JSON-lines shape: user_id, item_id,
            timestamp, and optionally query (text or token list), label, source.
        user_id: the user's raw id; only their events are read.
        candidates: raw item ids to score.
        request_time: the request's timestamp in `unit` (default: now).
        query, source: the request's query text and source ("" infers it from the query).
        unit: "ms" or "s", the unit of every timestamp here.
        max_history: keep only the most recent behaviours (the model reads its last L).

    The history is the user's positive events (label missing or > 0) strictly before the
    request, oldest first, ordered as the Beam job orders them.
    """
    now = timestamp_ms(time.time() * 1000 if request_time is None else request_time,
                       "ms" if request_time is None else unit)
    hist = []
    for e in events:
        if str(e.get("user_id", "")).strip() != str(user_id) or label_of(e.get("label")) <= 0:
            continue
        ts = timestamp_ms(e["timestamp"], unit)
        if ts < now:
            text = _query_text(e.get("query"))
            tokens = words(text)
            hist.append((ts, source_id(e.get("source"), tokens), str(e["item_id"]).strip(),
                         tokens, text, "" if e.get("source") is None else str(e["source"])))
    hist.sort(key=lambda h: h[:4])
    hist = hist[-max_history:] if max_history else hist
    return {"user_id": str(user_id), "query": _query_text(query), "source": source,
            "request_time_ms": now, "hist_item_ids": [h[2] for h in hist],
            "hist_queries": [h[4] for h in hist], "hist_sources": [h[5] for h in hist],
            "hist_timestamps_ms": [h[0] for h in hist], "candidates": [str(c) for c in candidates]}


def raw_rank_arrays(rows: Sequence[Dict], target: str = "candidates") -> Dict[str, np.ndarray]:
    """The `rank_raw` inputs of B rows (`raw_rank_row`): histories and candidate lists
    padded with "" (timestamps with 0), each row's distinct query texts and sources sent once
    with a per-behaviour index (`seminar_tf.raw_events.request_arrays`). `target="item_id"`
    gives `score_raw` inputs from rows with one candidate each."""
    return request_arrays(rows, target)


def rank_arrays(contexts: Sequence[ExampleLike], candidates: Sequence[Sequence[ExampleLike]]):
    """(context [B], candidates [B, N]) object arrays; short rows padded with b""."""
    rows = [_serialize(c) for c in candidates]
    if len(rows) != len(contexts):
        raise ValueError(f"{len(contexts)} contexts but {len(rows)} candidate lists")
    n = max((len(r) for r in rows), default=0)
    grid = np.full((len(rows), n), b"", dtype=object)
    for i, r in enumerate(rows):
        grid[i, :len(r)] = r
    return np.array(_serialize(contexts), dtype=object), grid


class GrpcClient:
    """PredictionService / ModelService client."""

    def __init__(self, target: str, model: str, timeout: float = 30.0):
        self.channel = grpc.insecure_channel(target, options=[
            ("grpc.max_receive_message_length", 64 * 2**20),
            ("grpc.max_send_message_length", 64 * 2**20)])
        self.predict_stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.model_stub = model_service_pb2_grpc.ModelServiceStub(self.channel)
        self.model, self.timeout = model, timeout

    def predict_request(self, examples: Iterable[ExampleLike],
                        signature: str = "serving_default",
                        version: Optional[int] = None) -> predict_pb2.PredictRequest:
        return self.inputs_request(signature, {
            "examples": np.array(_serialize(examples), dtype=object)}, version)

    def predict(self, request: predict_pb2.PredictRequest) -> Dict[str, np.ndarray]:
        import tensorflow as tf
        resp = self.predict_stub.Predict(request, timeout=self.timeout)
        return {k: tf.make_ndarray(v) for k, v in resp.outputs.items()}

    def predict_examples(self, examples, signature="serving_default", version=None):
        return self.predict(self.predict_request(examples, signature, version))

    def rank_request(self, contexts, candidates,
                     version: Optional[int] = None) -> predict_pb2.PredictRequest:
        context, grid = rank_arrays(contexts, candidates)
        return self.inputs_request("rank", {"context": context, "candidates": grid}, version)

    def rank(self, contexts, candidates, version=None) -> Dict[str, np.ndarray]:
        """Scores (B, N) of B users' candidate lists (`rank` signature)."""
        return self.predict(self.rank_request(contexts, candidates, version))

    def inputs_request(self, signature: str, inputs: Dict[str, np.ndarray],
                       version: Optional[int] = None) -> predict_pb2.PredictRequest:
        """A PredictRequest of named input arrays (strings as UTF-8)."""
        import tensorflow as tf
        req = predict_pb2.PredictRequest()
        req.model_spec.name = self.model
        req.model_spec.signature_name = signature
        if version is not None:
            req.model_spec.version.value = version
        for key, value in inputs.items():
            value = np.asarray(value)
            req.inputs[key].CopyFrom(tf.make_tensor_proto(
                value, tf.string if value.dtype == object else None))
        return req

    def rank_raw(self, rows: Sequence[Dict], version=None) -> Dict[str, np.ndarray]:
        """Scores (B, N) of raw-feature rows (`raw_rank_row`; the `rank_raw` signature)."""
        return self.predict(self.inputs_request("rank_raw", raw_rank_arrays(rows), version))

    def metadata(self) -> get_model_metadata_pb2.SignatureDefMap:
        req = get_model_metadata_pb2.GetModelMetadataRequest()
        req.model_spec.name = self.model
        req.metadata_field.append("signature_def")
        resp = self.predict_stub.GetModelMetadata(req, timeout=self.timeout)
        sig = get_model_metadata_pb2.SignatureDefMap()
        resp.metadata["signature_def"].Unpack(sig)
        return sig

    def status(self) -> get_model_status_pb2.GetModelStatusResponse:
        req = get_model_status_pb2.GetModelStatusRequest()
        req.model_spec.name = self.model
        return self.model_stub.GetModelStatus(req, timeout=self.timeout)

    def close(self):
        self.channel.close()


class RestClient:
    """REST client (`/v1/models/<name>:predict`)."""

    def __init__(self, base_url: str, model: str, timeout: float = 30.0):
        self.base_url, self.model, self.timeout = base_url.rstrip("/"), model, timeout

    def _url(self, version: Optional[int], verb: str = "") -> str:
        v = f"/versions/{version}" if version is not None else ""
        return f"{self.base_url}/v1/models/{self.model}{v}{verb}"

    def post(self, body: dict, version: Optional[int] = None) -> dict:
        req = urllib.request.Request(self._url(version, ":predict"),
                                     data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:
            return json.loads(resp.read())

    def predict_examples(self, examples, signature: str = "serving_default",
                         version: Optional[int] = None) -> Dict[str, np.ndarray]:
        body = {"signature_name": signature, "instances": [
            {"b64": base64.b64encode(e).decode()} for e in _serialize(examples)]}
        preds = self.post(body, version)["predictions"]
        keys = preds[0].keys() if preds and isinstance(preds[0], dict) else ["output"]
        if preds and isinstance(preds[0], dict):
            return {k: np.array([p[k] for p in preds]) for k in keys}
        return {"output": np.array(preds)}

    def rank(self, contexts, candidates, version=None) -> Dict[str, np.ndarray]:
        """Scores (B, N) of B users' candidate lists (`rank` signature, columnar body)."""
        context, grid = rank_arrays(contexts, candidates)
        b64 = lambda x: {"b64": base64.b64encode(x).decode()}  # noqa: E731
        body = {"signature_name": "rank", "inputs": {
            "context": [b64(c) for c in context],
            "candidates": [[b64(c) for c in row] for row in grid]}}
        return {k: np.array(v) for k, v in self.post(body, version)["outputs"].items()}

    def rank_raw(self, rows: Sequence[Dict], version=None) -> Dict[str, np.ndarray]:
        """Scores (B, N) of raw-feature rows (`rank_raw`, columnar JSON: plain strings)."""
        inputs = {k: v.tolist() for k, v in raw_rank_arrays(rows).items()}
        body = {"signature_name": "rank_raw", "inputs": inputs}
        return {k: np.array(v) for k, v in self.post(body, version)["outputs"].items()}

    def status(self, version: Optional[int] = None) -> dict:
        with urllib.request.urlopen(self._url(version), timeout=self.timeout) as resp:
            return json.loads(resp.read())
