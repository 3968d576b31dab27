"""Export a trained ranker as a TF Serving SavedModel: `<base>/<name>/<version>/`.

Signatures (all standard TF ops; item tables, PQ codebooks and codes are variables inside):
- `serving_default`: `examples` (string [B], serialized tf.Example per the feature contract,
  parsed in-graph with the training `feature_spec`) -> `score` (probability of the task that
  matches each target's source), `ctr`, `search` (per-task probabilities).
- `predict`: the dense model inputs (`FeatureContract.dense_input_signature`) -> same outputs.
- `retrieve`: `examples` -> GSU `indices` (B, K) int32, `scores` (B, K), `valid` (B, K).
- `rank`: one user context, N candidates (TF Ranking's ExampleListWithContext idea):
  `context` (string [B], serialized Examples with the user, query, source and history) and
  `candidates` (string [B, N], serialized Examples with target_item / target_attrs; "" pads
  a row) -> `score`, `ctr`, `search` (B, N) (0 at padding) and `mask` (B, N) bool. The history
  is encoded once per row and the GSU scores all N candidates in one op
  (`LifelongRanker.rank`).

With `xla=True` the dense part of every signature (everything after parsing; ids already
mapped to OOV, since XLA gathers clamp out-of-range ids instead of failing) is a
`tf.function(jit_compile=True)`: TF Serving then needs `--xla_cpu_compilation_enabled=true`.

`assets/seminar_config.json` carries the full config; `assets.extra/tf_serving_warmup_requests`
holds PredictionLog records (gRPC PredictRequests) that TF Serving replays at load.
The export check refuses graphs with ops outside stock TensorFlow (PyFunc, EagerPyFunc, custom
ops) and verifies that every signature reproduces the Keras model's outputs.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Dict, List, Optional, Sequence

import numpy as np

import tensorflow as tf

from seminar_tf import features as F
from seminar_tf.layers.retrieval import ties

FORBIDDEN_OPS = {"PyFunc", "PyFuncStateless", "EagerPyFunc"}


class ExportError(RuntimeError):
    """The exported graph is not servable by stock TF Serving or disagrees with the model."""


class ServingModule(tf.Module):
    """Wraps a trained ranker with the three serving signatures."""

    def __init__(self, model, config_json_path: str, xla: bool = False):
        super().__init__()
        self.model = model
        self.contract = F.FeatureContract.from_config(model.config.data)
        self.config_asset = tf.saved_model.Asset(config_json_path)
        self.tasks = tuple(model.config.model.tasks)
        self.xla = xla
        if xla:  # XLA pads dynamic shapes to their bound: use the static formulations
            model.gsu.use_static_shapes(True)
        # the dense parts (after parsing), compiled with XLA when asked
        self._dense = tf.function(self._outputs, jit_compile=xla or None)
        self._dense_rank = tf.function(self._rank_outputs, jit_compile=xla or None)
        self._dense_retrieve = tf.function(self._retrieve_outputs, jit_compile=xla or None)

    def _probabilities(self, out):
        result = {"score": out["score"]}
        for t in self.tasks:
            result[t] = tf.sigmoid(out[t])
        return result

    def _outputs(self, features):
        return self._probabilities(self.model(features, training=False))

    def _rank_outputs(self, context, candidates):
        out = self._probabilities(self.model.rank(context, candidates, training=False))
        mask = candidates[F.CANDIDATE_MASK]
        result = {k: tf.where(mask, v, tf.zeros_like(v)) for k, v in out.items()}
        result["mask"] = mask
        return result

    def _retrieve_outputs(self, features):
        out = self.model.retrieve(features)
        return {"indices": out["indices"], "scores": out["scores"], "valid": out["valid"]}

    @staticmethod
    def _model_inputs(features):
        return {k: v for k, v in features.items()
                if k not in (F.LABEL, F.GROUP_ID, F.TIMESTAMP, F.HIST_MASK,
                             F.TARGET_QUERY_MASK, F.HIST_QUERY_MASK)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(self, examples):
        return self._dense(self._model_inputs(self.contract.parse_examples(examples)))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def retrieve_examples(self, examples):
        return self._dense_retrieve(self._model_inputs(self.contract.parse_examples(examples)))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="context"),
                                  tf.TensorSpec([None, None], tf.string, name="candidates")])
    def rank_examples(self, context, candidates):
        rows = tf.debugging.assert_equal(
            tf.shape(candidates)[0], tf.shape(context)[0],
            message="rank: 'candidates' must have one row per 'context' Example")
        with tf.control_dependencies([rows]):
            ctx = self._model_inputs(self.contract.parse_context(context))
        cands = self.contract.parse_candidates(candidates)
        cands = {k: cands[k] for k in (F.TARGET_ITEM, F.TARGET_ATTRS, F.CANDIDATE_MASK)}
        return self._dense_rank(ctx, cands)

    def predict_fn(self):
        spec = self.contract.dense_input_signature()

        @tf.function(input_signature=[spec])
        def predict(features):
            return self._dense(self.contract.sanitize_dense(features))
        return predict


def next_version(model_base: str) -> int:
    if not os.path.isdir(model_base):
        return 1
    versions = [int(v) for v in os.listdir(model_base) if v.isdigit()]
    return max(versions, default=0) + 1


def graph_ops(saved_model_dir: str) -> set:
    """Every op type in the SavedModel's graph and function library."""
    from tensorflow.python.saved_model import loader_impl
    sm = loader_impl.parse_saved_model(saved_model_dir)
    ops = set()
    for mg in sm.meta_graphs:
        ops.update(n.op for n in mg.graph_def.node)
        for fn in mg.graph_def.library.function:
            ops.update(n.op for n in fn.node_def)
    return ops


def check_stock_ops(saved_model_dir: str) -> List[str]:
    """Raises ExportError if an op is a Python function or not a registered stock op."""
    from tensorflow.python.framework import op_def_registry
    ops = graph_ops(saved_model_dir)
    bad = sorted(op for op in ops if op in FORBIDDEN_OPS or op_def_registry.get(op) is None)
    if bad:
        raise ExportError(f"graph contains ops outside stock TensorFlow: {bad}")
    return sorted(ops)


def sample_examples(model, data_dir: Optional[str], n: int = 8) -> List[bytes]:
    """Serialized Examples for warmup and checks: from the test split if available."""
    if data_dir:
        from seminar_tf.data.dataset import serialized_examples
        try:
            recs = list(serialized_examples(data_dir, "test", n))
            if recs:
                return recs
        except FileNotFoundError:
            pass
    contract = F.FeatureContract.from_config(model.config.data)
    rng = np.random.default_rng(0)
    d = model.config.data
    out = []
    for i in range(n):
        h = int(rng.integers(0, d.max_seq_len + 1))
        out.append(contract.make_example(
            user_id=int(rng.integers(2, d.user_vocab_size)), target_item=int(
                rng.integers(2, d.item_vocab_size)), label=0.0,
            target_source=F.SOURCE_SEARCH if i % 2 else F.SOURCE_REC,
            target_query=[int(rng.integers(2, d.query_vocab_size))] if i % 2 else [],
            hist_items=list(rng.integers(2, d.item_vocab_size, size=h)),
            hist_time_gaps=list(np.sort(rng.random(h) * 1e6)[::-1])).SerializeToString())
    return out


def rank_request(examples: Sequence[bytes]):
    """A `rank` request from full Examples: the first two as contexts, all of them (and one
    padding "") as every row's candidates (a candidate reads only its target fields)."""
    context = list(examples[:2])
    candidates = [list(examples) + [b""] for _ in context]
    return np.array(context, dtype=object), np.array(candidates, dtype=object)


def write_warmup(version_dir: str, name: str, examples: Sequence[bytes]) -> str:
    """`assets.extra/tf_serving_warmup_requests`: PredictionLog records of PredictRequests
    (serving_default with one and with all sample Examples, and one `rank` request)."""
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2
    path = os.path.join(version_dir, "assets.extra", "tf_serving_warmup_requests")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    context, candidates = rank_request(examples)
    requests = [("serving_default", {"examples": list(examples[:1])}),
                ("serving_default", {"examples": list(examples)}),
                ("rank", {"context": context, "candidates": candidates})]
    with tf.io.TFRecordWriter(path) as w:
        for signature, inputs in requests:
            req = predict_pb2.PredictRequest()
            req.model_spec.name = name
            req.model_spec.signature_name = signature
            for key, value in inputs.items():
                req.inputs[key].CopyFrom(tf.make_tensor_proto(value, tf.string))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=req))
            w.write(log.SerializeToString())
    return path


def export_model(model, base: str, name: str, version: Optional[int] = None,
                 data_dir: Optional[str] = None, atol: float = 1e-5, xla: bool = False) -> Dict:
    """Writes `<base>/<name>/<version>/`, checks it, and returns a report."""
    model_base = os.path.join(base, name)
    version = version or next_version(model_base)
    report = export_to(model, os.path.join(model_base, str(version)), name, data_dir, atol,
                       xla=xla)
    report["version"] = version
    with open(os.path.join(model_base, f"export-{version}.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    return report


def export_to(model, final: str, name: str, data_dir: Optional[str] = None,
              atol: float = 1e-5, xla: bool = False) -> Dict:
    """Writes a checked SavedModel exactly at `final` (e.g. TFX's serving_model_dir).

    Args:
        xla: compile the dense part of every signature with XLA (`jit_compile=True`).
    """
    if os.path.exists(final):
        raise FileExistsError(f"{final} exists: choose another --version")
    parent = os.path.dirname(os.path.abspath(final))
    os.makedirs(parent, exist_ok=True)
    # write into a temporary sibling and rename: a polling server never sees a partial dir
    tmp = tempfile.mkdtemp(prefix=".tmp-export-", dir=parent)
    try:
        cfg_path = os.path.join(tmp, "seminar_config.json")
        with open(cfg_path, "w", encoding="utf-8") as f:
            f.write(model.config.to_json())
        module = ServingModule(model, cfg_path, xla=xla)
        sigs = {"serving_default": module.serve_examples, "predict": module.predict_fn(),
                "retrieve": module.retrieve_examples, "rank": module.rank_examples}
        out_dir = os.path.join(tmp, "model")
        tf.saved_model.save(module, out_dir, signatures=sigs)
        ops = check_stock_ops(out_dir)
        examples = sample_examples(model, data_dir)
        write_warmup(out_dir, name, examples)
        max_diff = verify_outputs(model, out_dir, examples, atol)
        os.rename(out_dir, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"path": final, "name": name, "gsu": model.config.model.gsu, "ops": len(ops),
            "signatures": sorted(sigs), "xla": xla, "max_abs_diff_vs_keras": max_diff}


def _rank_as_examples(context, candidates):
    """`rank` inputs (B rows, N candidates) as the B*N per-candidate feature rows."""
    n = tf.shape(candidates[F.TARGET_ITEM])[1]
    flat = {k: tf.repeat(v, n, axis=0) for k, v in context.items()}
    for k in (F.TARGET_ITEM, F.TARGET_ATTRS):
        v = candidates[k]
        flat[k] = tf.reshape(v, tf.concat([[-1], tf.shape(v)[2:]], 0))
    return flat


def _compare(diffs, got, expected, determined, label):
    """Appends max |got - expected| over determined rows (compared to `atol` by the caller);
    undetermined rows (a near-tie at the GSU's K-th place, `ties.determined_rows`) must stay
    within `ties.UNDETERMINED_BOUND`."""
    err = np.abs(np.asarray(got).reshape(-1) - np.asarray(expected).reshape(-1))
    determined = np.asarray(determined).reshape(-1)
    diffs.append(float(np.max(err[determined], initial=0.0)))
    if np.any(err[~determined] > ties.UNDETERMINED_BOUND):
        raise ExportError(f"{label}: rows with near-tied GSU selections differ from the Keras "
                          f"model by {err[~determined].max()}")


def verify_outputs(model, saved_dir: str, examples: Sequence[bytes], atol: float) -> float:
    """Every signature vs the Keras model on the same inputs; returns the max |diff| over
    the rows whose GSU selection float noise cannot change (the others are bounded by
    `ties.UNDETERMINED_BOUND`: the export's formulation may break a near-tie differently)."""
    loaded = tf.saved_model.load(saved_dir)
    contract = F.FeatureContract.from_config(model.config.data)
    batch = contract.parse_examples(tf.constant(list(examples)))
    determined = model.selection_determined(batch, ties.GSU_NOISE)
    keras_out = model(batch, training=False)
    served = loaded.signatures["serving_default"](examples=tf.constant(list(examples)))
    dense = {k: batch[k] for k in contract.dense_input_signature()}
    predicted = loaded.signatures["predict"](**dense)
    diffs = []
    for label, out in (("serving_default", served), ("predict", predicted)):
        _compare(diffs, out["score"], keras_out["score"], determined, label)
        for t in model.config.model.tasks:
            _compare(diffs, out[t], tf.sigmoid(keras_out[t]), determined, label)
    ret = loaded.signatures["retrieve"](examples=tf.constant(list(examples)))
    ref = model.retrieve(batch)
    valid = ref["valid"].numpy()
    if not all(np.array_equal(rv, v) and set(a[v].tolist()) == set(b[v].tolist())
               for a, b, rv, v, ok in zip(ret["indices"].numpy(), ref["indices"].numpy(),
                                          ret["valid"].numpy(), valid, determined) if ok):
        raise ExportError("retrieve signature disagrees with the Keras model's GSU")
    context, candidates = rank_request(examples)
    ranked = loaded.signatures["rank"](context=tf.constant(context),
                                       candidates=tf.constant(candidates))
    ctx = contract.parse_context(tf.constant(context))
    cands = contract.parse_candidates(tf.constant(candidates))
    ref = model.rank(ctx, cands)
    mask = ranked["mask"].numpy()
    if not mask[:, :-1].all() or mask[:, -1].any():
        raise ExportError("rank signature: wrong candidate mask for a padded request")
    rank_determined = model.selection_determined(
        _rank_as_examples(ctx, cands), ties.GSU_NOISE).reshape(mask.shape)
    _compare(diffs, ranked["score"].numpy()[mask], ref["score"].numpy()[mask],
             rank_determined[mask], "rank")
    max_diff = max(diffs)
    if not max_diff <= atol:
        raise ExportError(f"served outputs differ from the Keras model by {max_diff} > {atol}")
    return max_diff


def export_from_model_dir(model_dir: str, base: str, name: str, version: Optional[int] = None,
                          gsu: Optional[str] = None, data_dir: Optional[str] = None,
                          xla: bool = False) -> Dict:
    from seminar_tf import training
    if data_dir is None:
        with open(os.path.join(model_dir, "model.json"), encoding="utf-8") as f:
            data_dir = json.load(f)["data_dir"]
    model = training.load_model(model_dir, gsu=gsu)
    return export_model(model, base, name, version, data_dir, xla=xla)
