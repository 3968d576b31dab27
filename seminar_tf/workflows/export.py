"""Export a trained ranker as a TF Serving SavedModel: `<base>/<name>/<version>/`.

Signatures: the table of `seminar_tf.workflows.signatures` (serving_default, predict,
retrieve, rank); each becomes a SavedModel signature, warm-up requests and an output check.

With `xla=True` the dense part of every signature (everything after parsing; ids already
mapped to OOV, since XLA gathers clamp out-of-range ids instead of failing) is a
`tf.function(jit_compile=True)`: TF Serving then needs `--xla_cpu_compilation_enabled=true`.

`assets/seminar_config.json` carries the full config; `assets.extra/tf_serving_warmup_requests`
holds PredictionLog records (gRPC PredictRequests) that TF Serving replays at load.
The export check refuses graphs with ops outside stock TensorFlow (PyFunc, EagerPyFunc, custom
ops) and verifies that every signature reproduces the Keras model's outputs.

A version is published whole: it is written under a temporary sibling (`.tmp-export-*`,
not a version number), committed with `_SUCCESS` (`seminar_tf.storage`: every file and its
size) and moved to `<version>/` (one atomic rename on local disk; file by file with
`_SUCCESS` last elsewhere). `serving.models` serves a version only once its manifest holds.
"""
from __future__ import annotations

import os
import uuid
from typing import Dict, List, Optional, Sequence

import numpy as np

import tensorflow as tf

from seminar_tf import features as F
from seminar_tf import storage
from seminar_tf.layers.retrieval import ties
from seminar_tf.workflows import raw_features
from seminar_tf.workflows.signatures import (  # noqa: F401  (rank_request re-exported)
    SIGNATURES, Check, SignatureError, rank_request)

FORBIDDEN_OPS = {"PyFunc", "PyFuncStateless", "EagerPyFunc"}


class ExportError(RuntimeError):
    """The exported graph is not servable by stock TF Serving or disagrees with the model."""


class ServingModule(tf.Module):
    """Wraps a trained ranker with one tf.function per line of `signatures.SIGNATURES`:
    the signature's parsing, then its dense part (XLA-compiled when `xla`)."""

    def __init__(self, model, config_json_path: str, xla: bool = False,
                 item_attrs: Optional[np.ndarray] = None, context_attrs: str = "request",
                 vocab_files: Optional[Dict[str, str]] = None):
        super().__init__()
        self.model = model
        # the item -> attributes table (a saved variable): `rank` reads it with
        # --context-attrs table (requests then need not carry attributes), the raw
        # signatures always
        self.item_attrs = None if item_attrs is None else tf.Variable(
            np.asarray(item_attrs, np.int64), trainable=False, name="item_attrs")
        self.context_attrs = context_attrs
        self.contract = F.FeatureContract.from_config(model.config.data)
        self.config_asset = tf.saved_model.Asset(config_json_path)
        self.tasks = tuple(model.config.model.tasks)
        self.xla = xla
        self.raw = self.raw_vocab = None
        if vocab_files is not None:  # the raw signatures: vocabularies as assets
            self.raw = raw_features.RawFeatures(vocab_files, self.contract, self.item_attrs)
            self.raw_vocab = raw_features.Vocabularies(vocab_files)
        if xla:  # XLA pads dynamic shapes to their bound: use the static formulations
            model.use_static_shapes(True)
        dense = {}  # a local, not an attribute: tf.Module would track it (its keys)
        self.signature_functions = {name: self._function(sig, dense)
                                    for name, sig in SIGNATURES.items()
                                    if self.raw is not None or not sig.raw}

    def _function(self, sig, dense_functions):
        # one dense function per `dense` of the table, keyed by the function object (two
        # lambdas never collide): a raw twin shares the compiled functions (and XLA's
        # per-shape compilations) of its integer signature
        dense = dense_functions.get(sig.dense)
        if dense is None:
            dense = dense_functions[sig.dense] = tf.function(
                lambda *args: sig.dense(self, *args), jit_compile=self.xla or None)
        spec = sig.inputs(self) if callable(sig.inputs) else sig.inputs
        finish = sig.finish or (lambda module, out, *request: out)
        return tf.function(
            lambda *request: finish(self, dense(*sig.parse(self, *request)), *request),
            input_signature=spec)


def next_version(model_base: str) -> int:
    if not storage.isdir(model_base):
        return 1
    # ASCII digits only, as the server reads version folders ("²".isdigit() is True)
    versions = [int(v) for v in storage.listdir(model_base)
                if storage.VERSION_RE.fullmatch(v)]
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


def write_warmup(version_dir: str, name: str, examples: Sequence[bytes], module) -> str:
    """`assets.extra/tf_serving_warmup_requests`: PredictionLog records of PredictRequests,
    the `warmup` requests of every signature of `module` built from the sample Examples."""
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2
    path = os.path.join(version_dir, "assets.extra", "tf_serving_warmup_requests")
    storage.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path) as w:
        for signature in module.signature_functions:
            for inputs in SIGNATURES[signature].warmup(examples, module):
                req = predict_pb2.PredictRequest()
                req.model_spec.name = name
                req.model_spec.signature_name = signature
                for key, value in inputs.items():
                    req.inputs[key].CopyFrom(tf.make_tensor_proto(value))
                log = prediction_log_pb2.PredictionLog(
                    predict_log=prediction_log_pb2.PredictLog(request=req))
                w.write(log.SerializeToString())
    return path


def export_model(model, base: str, name: str, version: Optional[int] = None,
                 data_dir: Optional[str] = None, atol: float = 1e-5, xla: bool = False,
                 context_attrs: str = "request", raw: Optional[bool] = None) -> Dict:
    """Writes `<base>/<name>/<version>/`, checks it, and returns a report."""
    model_base = os.path.join(base, name)
    version = version or next_version(model_base)
    report = export_to(model, os.path.join(model_base, str(version)), name, data_dir, atol,
                       xla=xla, context_attrs=context_attrs, raw=raw)
    report["version"] = version
    storage.write_json(os.path.join(model_base, f"export-{version}.json"), report)
    return report


def export_to(model, final: str, name: str, data_dir: Optional[str] = None,
              atol: float = 1e-5, xla: bool = False, context_attrs: str = "request",
              raw: Optional[bool] = None) -> Dict:
    """Writes a checked SavedModel exactly at `final` (e.g. TFX's serving_model_dir).

    Args:
        xla: compile the dense part of every signature with XLA (`jit_compile=True`).
        context_attrs: "request" (the `rank` request carries every behaviour's and
            candidate's attributes) or "table" (the export holds the dataset's item ->
            attributes table and `rank` looks them up by item id: requests carry none;
            needs `data_dir`).
        raw: the raw-feature signatures `rank_raw` and `score_raw` (the dataset's
            vocabularies and item table go into the export); None: whenever `data_dir` has
            vocabularies. True without them is an error.
    """
    if context_attrs not in ("request", "table"):
        raise ValueError(f"context_attrs must be 'request' or 'table', not {context_attrs!r}")
    if raw is None:
        raw = raw_features.vocab_paths(data_dir) is not None
    item_attrs = None
    if context_attrs == "table" or raw:
        if not data_dir:
            raise ValueError(f"{'the raw signatures' if raw else '--context-attrs table'} "
                             f"need the dataset (its item table and vocabularies)")
        from seminar_tf.workflows.model_dir import load_item_table
        item_attrs = load_item_table(data_dir)["attrs"]
    if storage.exists(final):
        raise FileExistsError(f"{final} exists: choose another --version")
    final = os.path.abspath(final) if storage.is_local(final) else final.rstrip("/")
    parent = os.path.dirname(final)
    storage.makedirs(parent)
    # a temporary sibling a polling server ignores (not a version number), then committed
    tmp = os.path.join(parent, f".tmp-export-{uuid.uuid4().hex[:12]}")
    try:
        cfg_path = os.path.join(tmp, "seminar_config.json")
        storage.write_text(cfg_path, model.config.to_json())
        vocab = raw_features.copy_vocabularies(data_dir, tmp) if raw else None
        module = ServingModule(model, cfg_path, xla=xla, item_attrs=item_attrs,
                               context_attrs=context_attrs, vocab_files=vocab)
        sigs = module.signature_functions
        out_dir = os.path.join(tmp, "model")
        tf.saved_model.save(module, out_dir, signatures=sigs)
        ops = check_stock_ops(out_dir)
        examples = sample_examples(model, data_dir)
        write_warmup(out_dir, name, examples, module)
        max_diff = verify_outputs(model, out_dir, examples, atol, module)
        storage.commit(out_dir, "export", model_gsu=model.config.model.gsu, xla=xla)
        if storage.is_local(final):
            os.rename(out_dir, final)  # atomic
        else:
            storage.move_tree(out_dir, final, last=(storage.MANIFEST,))
    finally:
        storage.rmtree(tmp)
    return {"path": final, "name": name, "gsu": model.config.model.gsu, "ops": len(ops),
            "context_attrs": context_attrs, "raw_features": bool(raw),
            "signatures": sorted(sigs), "xla": xla, "max_abs_diff_vs_keras": max_diff}


def verify_outputs(model, saved_dir: str, examples: Sequence[bytes], atol: float,
                   module=None) -> float:
    """Every signature's `verify` against the Keras model on the sample Examples; returns
    the max |diff| over the rows whose GSU selection float noise cannot change (the others
    are bounded by `ties.UNDETERMINED_BOUND`: the export may break a near-tie differently)."""
    loaded = tf.saved_model.load(saved_dir)
    contract = F.FeatureContract.from_config(model.config.data)
    features = contract.parse_examples(tf.constant(list(examples)))
    determined = model.selection_determined(features, ties.GSU_NOISE)
    diffs = []
    try:
        for name, sig in SIGNATURES.items():
            if sig.verify is not None and name in loaded.signatures:
                diffs += sig.verify(Check(model, loaded.signatures[name], list(examples),
                                          features, determined, module))
    except SignatureError as e:
        raise ExportError(str(e)) from e
    max_diff = max(diffs, default=0.0)
    if not max_diff <= atol:
        raise ExportError(f"served outputs differ from the Keras model by {max_diff} > {atol}")
    return max_diff


def export_from_model_dir(model_dir: str, base: str, name: str, version: Optional[int] = None,
                          gsu: Optional[str] = None, data_dir: Optional[str] = None,
                          xla: bool = False, context_attrs: str = "request",
                          raw: Optional[bool] = None) -> Dict:
    from seminar_tf.workflows.model_dir import data_dir_of, load_model
    model = load_model(model_dir, gsu=gsu)
    return export_model(model, base, name, version, data_dir_of(model_dir, data_dir), xla=xla,
                        context_attrs=context_attrs, raw=raw)
