"""The serving signatures as a table: a new signature is one function and one table line.

Every line of `SIGNATURES` is a `Signature`: `parse` maps the request tensors to model inputs
(in-graph parsing, never XLA-compiled), `dense` computes the outputs from them (compiled with
XLA by `seminar export --xla`), `inputs` is the input signature, `warmup` turns the export's
sample Examples into warm-up requests and `verify` checks the served outputs against the Keras
model. `seminar_tf.workflows.export` builds the SavedModel's signatures, its warm-up file and
its output check from this table; the server reads the signatures from the SavedModel.

Signatures (all stock TF ops; item tables, PQ codebooks and codes are variables inside):
- `serving_default`: `examples` (string [B], serialized tf.Example per the feature contract)
  -> `score` (probability of the task that matches each target's source), `ctr`, `search`.
- `predict`: the dense model inputs (`FeatureContract.dense_input_signature`) -> same outputs.
- `retrieve`: `examples` -> GSU `indices` (B, K) int32, `scores` (B, K), `valid` (B, K).
- `rank`: `context` (string [B], Examples with the user, query, source and history) and
  `candidates` (string [B, N], Examples with target_item / target_attrs; "" pads a row) ->
  `score`, `ctr`, `search` (B, N) (0 at padding) and `mask` (B, N) bool. An export made with
  `--context-attrs table` looks every behaviour's and candidate's attributes up in its own
  item table by item id (attributes in the request are ignored, and may be left out).
- `rank_raw`: what a client logs (`seminar_tf.workflows.raw_features`): `user_id`, `query`
  (text), `source`, `request_time_ms` [B]; the history `hist_item_ids`,
  `hist_query_index`, `hist_source_index`, `hist_timestamps_ms` (unix ms) [B, H], oldest
  first, "" item ids pad, the indices into each row's distinct `hist_queries` [B, U] and
  `hist_sources` [B, V] (-1: none; `seminar_tf.raw_events.request_arrays` builds them);
  `candidates` [B, N] item id strings ("" pads) -> as `rank`. Ids, tokens and attributes are
  mapped in the graph with the export's own vocabularies and item table.
- `score_raw`: the same context fields and `item_id` [B] -> as `serving_default`.
  The raw signatures are in every export made with its dataset's vocabularies.

XLA exports compile the dense part once per input shape. `rank` therefore pads N (with ""
candidates, outside the compiled part) up to the next of `N_BUCKETS` (beyond the last, a
multiple of it) and slices the outputs back to N, and its warm-up requests cover every
bucket: a request with an N not seen before runs a function compiled at load. B is not
padded.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence

import numpy as np
import tensorflow as tf

from seminar_tf import features as F
from seminar_tf.layers.retrieval import ties
from seminar_tf.workflows import raw_features

EXAMPLES = [tf.TensorSpec([None], tf.string, name="examples")]
RANK_INPUTS = [tf.TensorSpec([None], tf.string, name="context"),
               tf.TensorSpec([None, None], tf.string, name="candidates")]
N_BUCKETS = (8, 32, 128, 512, 2048)  # candidates per `rank` row in an XLA export


class SignatureError(RuntimeError):
    """A served signature disagrees with the Keras model."""


class Check(NamedTuple):
    """What `verify` functions compare: the Keras model, the loaded export's signature
    function, the sample Examples, their parsed features and which of them have a GSU
    selection no float noise can change (`ties.determined_rows`)."""
    model: Any
    served: Callable
    examples: List[bytes]
    features: Dict[str, tf.Tensor]
    determined: np.ndarray
    module: Any = None  # the ServingModule (raw signatures: its tables and vocabularies)


class Signature(NamedTuple):
    """One serving signature (see the module docstring)."""
    parse: Callable  # parse(module, *request tensors) -> tuple of model inputs
    dense: Callable  # dense(module, *model inputs) -> dict of output tensors
    inputs: Any  # list of TensorSpecs, or inputs(module) -> list
    # warmup(examples, module) -> requests (dicts of input arrays) for the warm-up file
    warmup: Callable[[Sequence[bytes], Any], List[Dict]] = lambda examples, module: []
    verify: Optional[Callable[[Check], List[float]]] = None  # max |diff| per output
    # finish(module, outputs, *request tensors) -> outputs, after the dense part (not compiled)
    finish: Optional[Callable] = None
    raw: bool = False  # takes raw features: only in exports with the dataset's vocabularies


# ------------------------------------------------------------------ parsing (outside XLA)
def model_inputs(features):
    """Parsed features without the fields the model does not read."""
    return {k: v for k, v in features.items()
            if k not in (F.LABEL, F.GROUP_ID, F.TIMESTAMP, F.HIST_MASK,
                         F.TARGET_QUERY_MASK, F.HIST_QUERY_MASK)}


def parse_examples(module, examples):
    return (model_inputs(module.contract.parse_examples(examples)),)


def parse_dense(module, features):
    return (module.contract.sanitize_dense(features),)


def bucket_size(n):
    """The N an XLA `rank` compiles for: the next of `N_BUCKETS`, or a multiple of the last."""
    n = tf.convert_to_tensor(n)
    buckets = tf.constant(N_BUCKETS, n.dtype)
    last = buckets[-1]
    first_fit = tf.reduce_min(tf.where(buckets >= n, buckets, last))
    return tf.where(n <= last, first_fit, (n + last - 1) // last * last)


def parse_rank(module, context, candidates):
    candidates = pad_to_bucket(module, candidates)
    rows = tf.debugging.assert_equal(
        tf.shape(candidates)[0], tf.shape(context)[0],
        message="rank: 'candidates' must have one row per 'context' Example")
    table = module.item_attrs if module.context_attrs == "table" else None
    with tf.control_dependencies([rows]):
        ctx = model_inputs(module.contract.parse_context(context, table))
    cands = module.contract.parse_candidates(candidates)
    cands = {k: cands[k] for k in (F.TARGET_ITEM, F.TARGET_ATTRS, F.CANDIDATE_MASK)}
    if table is not None:
        cands[F.TARGET_ATTRS] = tf.gather(table, cands[F.TARGET_ITEM])
    return ctx, cands


def pad_to_bucket(module, candidates):
    """XLA exports: "" candidates up to the N bucket (masked like any padding)."""
    if not module.xla:
        return candidates
    n = tf.shape(candidates)[1]
    return tf.pad(candidates, [[0, 0], [0, bucket_size(n) - n]], constant_values="")


def parse_rank_raw(module, *request):
    """`rank_raw`: the context fields (`raw_features.CONTEXT_INPUTS`) and `candidates`
    (B, N) item id strings ("" pads) -> the `rank` model inputs."""
    *context, candidates = request
    candidates = pad_to_bucket(module, candidates)
    rows = tf.debugging.assert_equal(
        tf.shape(candidates)[0], tf.shape(context[0])[0],
        message="rank_raw: 'candidates' must have one row per 'user_id'")
    with tf.control_dependencies([rows]):
        ctx = model_inputs(module.raw.context(*context))
    return ctx, module.raw.targets(candidates)


def parse_score_raw(module, *request):
    """`score_raw`: the context fields and `item_id` (B,) -> the model's features."""
    *context, item_id = request
    features = model_inputs(module.raw.context(*context))
    target = module.raw.targets(item_id)
    features.update({k: target[k] for k in (F.TARGET_ITEM, F.TARGET_ATTRS)})
    return (features,)


# --------------------------------------------------------------------- dense parts
def probabilities(module, out):
    result = {"score": out["score"]}
    for t in module.tasks:
        result[t] = tf.sigmoid(out[t])
    return result


def score(module, features):
    return probabilities(module, module.model(features, training=False))


def retrieve(module, features):
    out = module.model.retrieve(features)
    return {"indices": out["indices"], "scores": out["scores"], "valid": out["valid"]}


def rank(module, context, candidates):
    out = probabilities(module, module.model.rank(context, candidates, training=False))
    mask = candidates[F.CANDIDATE_MASK]
    result = {k: tf.where(mask, v, tf.zeros_like(v)) for k, v in out.items()}
    result["mask"] = mask
    return result


def rank_finish(module, out, *request):
    """The request's N columns of a bucket-padded XLA `rank` (candidates: the last input)."""
    if not module.xla:
        return out
    n = tf.shape(request[-1])[1]
    return {k: v[:, :n] for k, v in out.items()}


# ----------------------------------------------------------------- warm-up requests
def examples_warmup(examples, module=None):
    """One request with one sample Example and one with all of them."""
    return [{"examples": list(examples[:1])}, {"examples": list(examples)}]


def rank_request(examples: Sequence[bytes]):
    """A `rank` request from full Examples: the first two as contexts, all of them (and one
    padding "") as every row's candidates (a candidate reads only its target fields)."""
    context = list(examples[:2])
    candidates = [list(examples) + [b""] for _ in context]
    return np.array(context, dtype=object), np.array(candidates, dtype=object)


def rank_warmup(examples, module=None):
    """The padded two-row request; for XLA exports also one row at every N bucket."""
    context, candidates = rank_request(examples)
    out = [{"context": context, "candidates": candidates}]
    if module is not None and module.xla:
        for n in N_BUCKETS:
            row = [examples[i % len(examples)] for i in range(n)]
            out.append({"context": np.array(context[:1], dtype=object),
                        "candidates": np.array([row], dtype=object)})
    return out


def raw_requests(examples, module):
    """`rank` requests of `rank_warmup` as `rank_raw` requests (the export's vocabularies)."""
    return [module.raw_vocab.raw_rank_inputs(module.contract, r["context"], r["candidates"])
            for r in rank_warmup(examples, module)]


def rank_raw_warmup(examples, module):
    return raw_requests(examples, module)


def score_raw_inputs(examples, module):
    """`score_raw` inputs scoring each Example's own target (the export's vocabularies)."""
    examples = np.array(list(examples), dtype=object)
    inputs = module.raw_vocab.raw_rank_inputs(module.contract, examples, examples[:, None])
    inputs["item_id"] = inputs.pop("candidates")[:, 0]
    return inputs


def score_raw_warmup(examples, module):
    return [score_raw_inputs(examples[:1], module), score_raw_inputs(examples, module)]


# ------------------------------------------------------------------ output checks
def compare(got, expected, determined, label) -> float:
    """max |got - expected| over determined rows (compared to `atol` by the caller); rows
    with near-tied GSU selections must stay within `ties.UNDETERMINED_BOUND`."""
    err = np.abs(np.asarray(got).reshape(-1) - np.asarray(expected).reshape(-1))
    determined = np.asarray(determined).reshape(-1)
    if np.any(err[~determined] > ties.UNDETERMINED_BOUND):
        raise SignatureError(f"{label}: rows with near-tied GSU selections differ from the "
                             f"Keras model by {err[~determined].max()}")
    return float(np.max(err[determined], initial=0.0))


def _score_diffs(check, out, label):
    expected = check.model(check.features, training=False)
    diffs = [compare(out["score"], expected["score"], check.determined, label)]
    for t in check.model.config.model.tasks:
        diffs.append(compare(out[t], tf.sigmoid(expected[t]), check.determined, label))
    return diffs


def verify_examples(check):
    return _score_diffs(check, check.served(examples=tf.constant(check.examples)),
                        "serving_default")


def verify_predict(check):
    contract = F.FeatureContract.from_config(check.model.config.data)
    dense = {k: check.features[k] for k in contract.dense_input_signature()}
    return _score_diffs(check, check.served(**dense), "predict")


def verify_retrieve(check):
    got = check.served(examples=tf.constant(check.examples))
    ref = check.model.retrieve(check.features)
    for a, b, got_valid, valid, ok in zip(got["indices"].numpy(), ref["indices"].numpy(),
                                          got["valid"].numpy(), ref["valid"].numpy(),
                                          check.determined):
        if ok and not (np.array_equal(got_valid, valid)
                       and set(a[valid].tolist()) == set(b[valid].tolist())):
            raise SignatureError("retrieve signature disagrees with the Keras model's GSU")
    return []


def rank_as_examples(context, candidates):
    """`rank` inputs (B rows, N candidates) as the B*N per-candidate feature rows."""
    n = tf.shape(candidates[F.TARGET_ITEM])[1]
    flat = {k: tf.repeat(v, n, axis=0) for k, v in context.items()}
    for k in (F.TARGET_ITEM, F.TARGET_ATTRS):
        v = candidates[k]
        flat[k] = tf.reshape(v, tf.concat([[-1], tf.shape(v)[2:]], 0))
    return flat


def verify_rank(check):
    contract = F.FeatureContract.from_config(check.model.config.data)
    context, candidates = rank_request(check.examples)
    got = check.served(context=tf.constant(context), candidates=tf.constant(candidates))
    ctx = contract.parse_context(tf.constant(context))
    cands = contract.parse_candidates(tf.constant(candidates))
    return _rank_diffs(check, got, ctx, cands, "rank")


def _rank_diffs(check, got, ctx, cands, label):
    """`got` (a served rank's outputs) against the Keras model's `rank` of ctx, cands."""
    ref = check.model.rank(ctx, cands)
    mask = got["mask"].numpy()
    if not mask[:, :-1].all() or mask[:, -1].any():
        raise SignatureError(f"{label} signature: wrong candidate mask for a padded request")
    determined = check.model.selection_determined(
        rank_as_examples(ctx, cands), ties.GSU_NOISE).reshape(mask.shape)
    return [compare(got["score"].numpy()[mask], ref["score"].numpy()[mask],
                    determined[mask], label)]


def table_features(check, context, candidates):
    """Parsed `rank` inputs with every attribute from the export's item table."""
    table = check.module.item_attrs
    contract = check.module.contract
    ctx = contract.parse_context(tf.constant(context), table)
    cands = contract.parse_candidates(tf.constant(candidates))
    cands[F.TARGET_ATTRS] = tf.gather(table, cands[F.TARGET_ITEM])
    return ctx, cands


def verify_rank_raw(check):
    context, candidates = rank_request(check.examples)
    inputs = check.module.raw_vocab.raw_rank_inputs(check.module.contract, context, candidates)
    got = check.served(**{k: tf.constant(v) for k, v in inputs.items()})
    ctx, cands = table_features(check, context, candidates)
    return _rank_diffs(check, got, ctx, cands, "rank_raw")


def verify_score_raw(check):
    examples = np.array(check.examples, dtype=object)
    inputs = score_raw_inputs(examples, check.module)
    got = check.served(**{k: tf.constant(v) for k, v in inputs.items()})
    ctx, cands = table_features(check, examples, examples[:, None])
    features = rank_as_examples(model_inputs(ctx), cands)
    expected = check.model(features, training=False)
    determined = check.model.selection_determined(features, ties.GSU_NOISE)
    return [compare(got["score"], expected["score"], determined, "score_raw")]


SIGNATURES: Dict[str, Signature] = {
    "serving_default": Signature(parse_examples, score, EXAMPLES, examples_warmup,
                                 verify_examples),
    "predict": Signature(parse_dense, score,
                         lambda module: [module.contract.dense_input_signature()],
                         verify=verify_predict),
    "retrieve": Signature(parse_examples, retrieve, EXAMPLES, examples_warmup,
                          verify_retrieve),
    "rank": Signature(parse_rank, rank, RANK_INPUTS, rank_warmup, verify_rank,
                      finish=rank_finish),
    "rank_raw": Signature(parse_rank_raw, rank, raw_features.RANK_RAW_INPUTS, rank_raw_warmup,
                          verify_rank_raw, finish=rank_finish, raw=True),
    "score_raw": Signature(parse_score_raw, score, raw_features.SCORE_RAW_INPUTS,
                           score_raw_warmup, verify_score_raw, raw=True),
}
