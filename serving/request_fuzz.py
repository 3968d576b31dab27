"""Hostile-request generators shared by the fuzz tests and `benchmarks/fuzz_serving.py`.

Each case class has its expected outcome written down (`EXPECTED`): a request the model can
answer meaningfully is OK; anything malformed is a client error (INVALID_ARGUMENT, or
RESOURCE_EXHAUSTED over a size limit); mutated serialized Examples may still be valid
Examples, so they are OK (with finite scores) or INVALID_ARGUMENT. Nothing is ever UNKNOWN,
INTERNAL or a dead server.
"""
from __future__ import annotations

import random
from typing import Dict, List, Tuple

import numpy as np

from seminar_tf.raw_events import DICTIONARY_FIELDS, dictionary_encode

OK, INVALID, EXHAUSTED = "OK", "INVALID_ARGUMENT", "RESOURCE_EXHAUSTED"
EXPECTED = {
    "valid": {OK},
    "empty_history": {OK},
    "zero_candidates": {OK},
    "ids_out_of_vocab": {OK},          # mapped to OOV, as the feature contract documents
    "too_many_candidates": {INVALID, EXHAUSTED},  # over the max batch (or message size)
    "dropped_input": {INVALID},
    "extra_input": {INVALID},
    "wrong_dtype": {INVALID},
    "wrong_shape": {INVALID},
    "batch_mismatch": {INVALID},
    "int_overflow": {INVALID},         # beyond the input dtype's range
    "non_finite": {INVALID},           # NaN / Inf time gaps, dense or inside an Example
    "garbage_example": {INVALID},
    "mutated_example": {OK, INVALID},  # byte flips / truncation may leave a valid Example
    "unknown_signature": {INVALID},
}
CASES = tuple(EXPECTED)


def make_examples(contract, rng: random.Random, n: int, hist_len: int,
                  id_scale: int = 0, time_gap: float = 1.0) -> List[bytes]:
    """`n` serialized Examples of one user with `hist_len` behaviours.

    `id_scale` > 0 draws ids from [-id_scale, id_scale] (outside any vocabulary).
    """
    def item():
        return rng.randint(-id_scale, id_scale) if id_scale else rng.randint(2, 50)
    hist = [dict(item=item(), query=[rng.randint(0, 9)], attrs=[rng.randint(2, 5)])
            for _ in range(hist_len)]
    out = []
    for _ in range(n):
        out.append(contract.make_example(
            user_id=item(), target_item=item(), label=0.0, target_query=[rng.randint(0, 9)],
            target_attrs=[rng.randint(2, 5)], hist_items=[h["item"] for h in hist],
            hist_query=[h["query"] for h in hist], hist_attrs=[h["attrs"] for h in hist],
            hist_time_gaps=[time_gap] * hist_len).SerializeToString())
    return out


def _mutate(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    if rng.random() < 0.5 and len(b) > 1:
        return bytes(b[:rng.randint(0, len(b) - 1)])  # truncated
    for _ in range(rng.randint(1, 4)):
        if b:
            b[rng.randrange(len(b))] = rng.randrange(256)  # byte flips
    return bytes(b)


def dense_inputs(contract, examples: List[bytes]) -> Dict[str, np.ndarray]:
    """The `predict` signature's inputs for serialized Examples (parsed by the contract)."""
    import tensorflow as tf
    parsed = contract.parse_examples(tf.constant(examples))
    return {k: parsed[k].numpy() for k in contract.dense_input_signature()}


RAW_SIGNATURES = ("rank_raw", "score_raw")
_TEXT_POOLS = ("abcXYZ 019-!,", "éüßİK日本語😀́", "\x00\t\n ")


def _text(rng: random.Random, longest: int = 40) -> str:
    """Query text or an id: ASCII, Latin, CJK, emoji, combining marks, controls; sometimes
    empty or huge (100k characters)."""
    if rng.random() < 0.05:
        return "" if rng.random() < 0.5 else "Huge query " * 10_000
    pool = rng.choice(_TEXT_POOLS) + "abc "
    return "".join(rng.choice(pool) for _ in range(rng.randint(0, longest)))


def raw_inputs(case: str, signature: str, rng: random.Random, n: int, hist_len: int,
               max_batch: int) -> Dict[str, np.ndarray]:
    """Inputs of the raw signatures (`rank_raw`, `score_raw`): logged ids (known-looking,
    unknown, unicode), query text, sources and timestamps. An unknown source value is their
    "garbage"; a mutated request holds invalid UTF-8 bytes."""
    if case == "too_many_candidates":
        n = max_batch + 1 + rng.randint(0, 500)
    rows = 0 if case == "zero_candidates" and signature == "score_raw" else n
    h = 0 if case == "empty_history" else hist_len
    ident = (lambda: _text(rng, 12)) if case == "ids_out_of_vocab" else (
        lambda: f"{rng.choice(['sku-', 'user-', ''])}{rng.randint(0, 60)}")
    sources = ["", "search", "rec", "recommendation", "1", "2"]

    def grid(fn, width):
        return np.array([[fn() for _ in range(width)] for _ in range(rows)],
                        dtype=object).reshape(rows, width)
    out = {"user_id": grid(ident, 1)[:, 0], "query": grid(lambda: _text(rng), 1)[:, 0],
           "source": grid(lambda: rng.choice(sources), 1)[:, 0],
           "request_time_ms": np.full([rows], 1_700_000_000_000, np.int64),
           "hist_item_ids": grid(lambda: ident() if rng.random() < 0.9 else "", h),
           "hist_timestamps_ms": np.array(grid(lambda: rng.randint(0, 2**41), h), np.int64)}
    for key in ("hist_queries", "hist_sources"):  # each row's distinct values + an index
        values = grid((lambda: _text(rng)) if key == "hist_queries" else
                      (lambda: rng.choice(sources)), h)
        out[key], out[DICTIONARY_FIELDS[key]] = dictionary_encode(values.tolist(), h)
    if case == "garbage_example" and rows:
        where = rng.choice(["source", "hist_sources", "index"] if h else ["source"])
        if h:
            out["hist_item_ids"][0, -1] = "sku-1"  # row 0's last behaviour is read
        if where == "source":
            out["source"][0] = "radio"
        elif where == "hist_sources":  # every behaviour's source unknown
            out["hist_sources"] = np.full((rows, 1), "radio", object)
            out["hist_source_index"][:] = 0
        else:  # indices past the row's distinct values (or below -1)
            index = out[rng.choice(sorted(DICTIONARY_FIELDS.values()))]
            index[0] = rng.choice([-2, index.shape[1] + 1 + rng.randint(0, 2**20)])
    if case == "mutated_example" and rows:
        out["query"][0] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 30)))
        out["user_id"][0] = b"\xff\xfe" + out["user_id"][0].encode()
    if case == "non_finite":  # NaN timestamps (a float where integers go)
        out["request_time_ms"] = np.full([rows], np.nan)
    if signature == "score_raw":
        out["item_id"] = grid(ident, 1)[:, 0]
    else:
        out["candidates"] = grid(ident, 0 if case == "zero_candidates" else rng.randint(1, 9))
    return out


def build_case(case: str, signature: str, contract, rng: random.Random,
               max_batch: int) -> Tuple[str, Dict[str, np.ndarray]]:
    """(signature name, inputs) of one request of case class `case`."""
    n = rng.randint(1, 5)
    hist_len = rng.randint(1, contract.max_seq_len + 5)
    if signature in RAW_SIGNATURES:
        return _generic_case(case, signature, rng, n, max_batch,
                             raw_inputs(case, signature, rng, n, hist_len, max_batch))
    examples = make_examples(contract, rng, n, hist_len)
    if case == "empty_history":
        examples = make_examples(contract, rng, n, 0)
    elif case == "zero_candidates":
        examples = []
    elif case == "too_many_candidates":
        examples = examples[:1] * (max_batch + 1 + rng.randint(0, 9000))
    elif case == "ids_out_of_vocab":
        examples = make_examples(contract, rng, n, hist_len, id_scale=2**40)
    elif case == "non_finite":
        examples = make_examples(contract, rng, n, hist_len,
                                 time_gap=rng.choice([np.nan, np.inf, -np.inf]))
    elif case == "garbage_example":
        examples = [bytes(rng.randrange(256) for _ in range(rng.randint(1, 60))) + b"\xff"
                    for _ in range(n)]
    elif case == "mutated_example":
        examples = [_mutate(e, rng) for e in examples]
    if signature == "rank":
        inputs = rank_inputs(case, examples)
    elif signature == "predict":
        if case in ("garbage_example", "mutated_example"):
            signature = "serving_default"
            inputs = {"examples": np.array(examples, dtype=object)}
        elif case == "zero_candidates":
            inputs = {k: np.zeros([0] + list(s.shape[1:]), s.dtype.as_numpy_dtype)
                      for k, s in contract.dense_input_signature().items()}
        elif case == "non_finite":
            inputs = dense_inputs(contract, make_examples(contract, rng, n, hist_len))
            gaps = inputs["hist_time_gaps"]
            gaps.flat[rng.randrange(gaps.size)] = rng.choice([np.nan, np.inf])
        else:
            inputs = dense_inputs(contract, examples)
    else:
        inputs = {"examples": np.array(examples, dtype=object)}
    return _generic_case(case, signature, rng, n, max_batch, inputs)


def _generic_case(case, signature, rng, n, max_batch, inputs):
    """The case classes every signature shares (dropped, extra, wrong dtype / shape / batch,
    integer overflow, unknown signature) applied to a request's inputs."""
    keys = sorted(inputs)
    if case == "dropped_input":
        inputs.pop(rng.choice(keys))
    elif case == "extra_input":
        inputs[rng.choice(["extra", "examples2", "user"])] = np.zeros([max(n, 1)], np.int64)
    elif case == "wrong_dtype":
        k = rng.choice(keys)
        v = inputs[k]
        if v.dtype == object:
            inputs[k] = np.full(v.shape, rng.choice([1.5, 7]))
        else:
            inputs[k] = np.full(v.shape, "x", dtype=object) if rng.random() < 0.5 or \
                v.dtype.kind == "f" else np.full(v.shape, 0.5, np.float32)
    elif case == "wrong_shape":
        k = rng.choice(keys)
        v = inputs[k]
        inputs[k] = v.reshape(-1)[:1].reshape([1] * (v.ndim + 1)) if v.size else \
            np.zeros([1] * (v.ndim + 1), v.dtype)
    elif case == "batch_mismatch":
        if len(keys) == 1:
            inputs["examples"] = inputs["examples"]  # one input: mismatch needs two
            inputs["extra"] = np.zeros([n + 1], np.int64)
        else:
            k = rng.choice(keys)
            inputs[k] = np.concatenate([inputs[k], inputs[k][:1]])
    elif case == "int_overflow":
        if signature in RAW_SIGNATURES:
            k = rng.choice([k for k in keys if inputs[k].dtype.kind in "iu"])
            inputs[k] = np.full(inputs[k].shape, 2**63 + 5, np.uint64)
        elif signature == "rank":
            k = rng.choice(keys)
            inputs[k] = np.full(inputs[k].shape, 2**63 + 5, np.uint64)
        elif signature == "predict":
            k = rng.choice([k for k in keys if inputs[k].dtype.kind in "iu"])
            v = inputs[k].astype(np.uint64)
            v.flat[0] = np.uint64(2**63 + rng.randint(0, 2**20))
            inputs[k] = v
        else:
            inputs["examples"] = np.full([n], 2**63 + 5, np.uint64)
    elif case == "unknown_signature":
        signature = rng.choice(["nope", "serving", "predict2"])
    return signature, inputs


def rank_inputs(case: str, examples: List[bytes]) -> Dict[str, np.ndarray]:
    """The `rank` signature's inputs for a case: one context (the first Example) and the
    Examples as its candidates (a candidate reads only its target fields); zero candidates is
    one context with an empty list; too many is one row per Example (over the max batch)."""
    if case == "too_many_candidates":
        grid = np.empty((len(examples), 1), dtype=object)
        grid[:, 0] = examples
        return {"context": np.array(examples, dtype=object), "candidates": grid}
    context = examples[:1] or [b""]  # "": a context Example with defaults (no history)
    grid = np.empty((1, len(examples)), dtype=object)
    grid[0, :] = examples
    return {"context": np.array(context, dtype=object), "candidates": grid}


# ----------------------------------------------------------------------- calling a server
def grpc_call(stub, name: str, signature: str, inputs: Dict[str, np.ndarray]):
    """(status name, outputs dict or error message) of one Predict call."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2
    req = predict_pb2.PredictRequest()
    req.model_spec.name = name
    req.model_spec.signature_name = signature
    for k, v in inputs.items():
        req.inputs[k].CopyFrom(tf.make_tensor_proto(v))
    try:
        resp = stub.Predict(req, timeout=60)
    except grpc.RpcError as e:
        return e.code().name, e.details()
    return OK, {k: tf.make_ndarray(v) for k, v in resp.outputs.items()}


def _json_value(v: np.ndarray):
    import base64
    if v.dtype == object:
        return [_json_value(x) if isinstance(x, np.ndarray) else
                {"b64": base64.b64encode(x if isinstance(x, bytes) else str(x).encode())
                 .decode()} if isinstance(x, (bytes, str)) else x for x in v]
    return v.tolist()


HTTP_TO_STATUS = {400: INVALID, 413: EXHAUSTED, 404: "NOT_FOUND", 500: "INTERNAL",
                  503: "UNAVAILABLE"}


def rest_call(port: int, name: str, signature: str, inputs: Dict[str, np.ndarray]):
    """(status name, outputs dict or error message) of one REST :predict call (columnar)."""
    import json
    import urllib.error
    import urllib.request
    body = json.dumps({"signature_name": signature,
                       "inputs": {k: _json_value(v) for k, v in inputs.items()}}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/models/{name}:predict", body)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            out = json.loads(r.read())["outputs"]
            return OK, {k: np.asarray(v) for k, v in out.items()}
    except urllib.error.HTTPError as e:
        return HTTP_TO_STATUS.get(e.code, str(e.code)), json.loads(e.read())["error"]
