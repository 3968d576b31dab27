"""Codebooks for a trained ranker: key parts of every item -> a FAISS-trained quantizer
(`seminar_tf.pq.quantizer`, `pq.method`) -> codes.

`build_codebooks(model, item_table)` quantizes the keys the trained ESU actually scores
(rebuild after every finetuning). The result is saved under `<model_dir>/pq/` and loaded into
a ranker whose GSU is `PQLookupAttention` (`load_model(model_dir, gsu="pq")`).
"""
from __future__ import annotations

import os
import weakref
from typing import Dict, Optional, Tuple

import numpy as np

import tensorflow as tf

from seminar_tf import storage
from seminar_tf.pq.quantizer import Quantizer, make_quantizer


_KEY_PARTS_FNS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def sample_ids(num_items: int, sample_size: int, seed: int) -> np.ndarray:
    """Ids of the items (2..V-1; 0 padding and 1 OOV excluded) the codebooks train on."""
    real = np.arange(2, num_items)
    if len(real) <= sample_size:
        return real
    rng = np.random.default_rng(seed)
    return real[rng.choice(len(real), sample_size, replace=False)]


def item_key_parts(model, item_attrs: np.ndarray, batch: int = 8192,
                   combine: bool = False) -> np.ndarray:
    """The GSU key parts `(1-a) g_m G_m e_m(item)` of every item id: (V, M, d) float32
    (or (V, 1, d) summed over modalities when `combine`)."""
    return item_key_parts_of(model, np.arange(item_attrs.shape[0]), item_attrs, batch,
                             combine)


def item_key_parts_of(model, ids: np.ndarray, attrs: np.ndarray, batch: int = 8192,
                      combine: bool = False) -> np.ndarray:
    """The key parts of the item ids `ids` (N,) with their attribute rows `attrs` (N, A):
    (N, M, d) float32, or (N, 1, d) when `combine` (a slice of `item_key_parts`)."""
    enc = model.pair_encoder
    fn = _KEY_PARTS_FNS.get(model)
    if fn is None:
        @tf.function(reduce_retracing=True)
        def fn(ids, attrs):
            encoded = enc.item_encoder(ids, attrs)
            item_parts, _ = enc.key_parts({**encoded,
                                           "query": tf.zeros_like(encoded["fused"])})
            return item_parts
        _KEY_PARTS_FNS[model] = fn
    out = [fn(tf.constant(ids[s:s + batch], tf.int64),
              tf.constant(attrs[s:s + batch], tf.int64)).numpy()
           for s in range(0, len(ids), batch)]
    allp = np.concatenate(out) if out else np.zeros((0, 0, 0), np.float32)
    return allp.sum(1, keepdims=True) if combine else allp


def target_queries(model, item_attrs: np.ndarray, data_dir: Optional[str] = None,
                   n: int = 4096, seed: int = 0) -> np.ndarray:
    """Query vectors u (n, d) of training targets, for score-aware (whitened) codebooks:
    `u = query_in_key_space(pair(target item, its query))` of the first training examples
    of `data_dir`, or (no dataset, or one without a training split) of `n` sampled items
    without a query."""
    from seminar_tf import features as F
    batches = []
    files = []
    if data_dir:
        from seminar_tf.data.dataset import make_dataset, split_pattern
        try:
            files = split_pattern(data_dir, "train")
        except FileNotFoundError:  # a dataset of items only: the fallback below
            files = []
    if files:
        ds = make_dataset(files,
                          F.FeatureContract.from_config(model.config.data),
                          batch_size=min(n, 1024), deterministic=True)
        for batch in ds:
            batches.append((batch[F.TARGET_ITEM], batch[F.TARGET_ATTRS],
                            batch[F.TARGET_QUERY]))
            if sum(len(b[0]) for b in batches) >= n:
                break
    if not batches:
        ids = sample_ids(len(item_attrs), n, seed)
        Q = model.config.data.max_query_tokens
        batches = [(ids, item_attrs[ids], np.zeros((len(ids), Q), np.int64))]
    out = []
    for items, attrs, query in batches:
        pair = model.pair_encoder(tf.constant(items, tf.int64), tf.constant(attrs, tf.int64),
                                  tf.constant(query, tf.int64))["pair"]
        out.append(model.esu.query_in_key_space(pair).numpy())
    return np.concatenate(out)[:n]


def build_codebooks(model, item_attrs: np.ndarray, pq_cfg=None,
                    sample_size: Optional[int] = None, data_dir: Optional[str] = None
                    ) -> Tuple[Quantizer, np.ndarray]:
    """Trains codebooks on (a sample of) all items' key parts and encodes every item
    (whitened by the query vectors of `data_dir`'s training targets if `pq.whiten`).

    Returns:
        (quantizer, item codes (V, P', S') uint8).
    """
    pq_cfg = pq_cfg or model.config.pq
    queries = target_queries(model, item_attrs, data_dir, seed=pq_cfg.seed) \
        if pq_cfg.whiten else None
    return quantize_parts(item_key_parts(model, item_attrs, combine=pq_cfg.combine_parts),
                          pq_cfg, sample_size, queries)


def quantize_parts(parts: np.ndarray, pq_cfg, sample_size: Optional[int] = None,
                   queries: Optional[np.ndarray] = None) -> Tuple[Quantizer, np.ndarray]:
    """Trains codebooks on a sample of key parts (V, P, d) and encodes every item: the
    second half of `build_codebooks`, for callers that already hold the parts."""
    ids = sample_ids(len(parts), sample_size or pq_cfg.sample_size, pq_cfg.seed)
    quantizer = make_quantizer(pq_cfg).fit(parts[np.sort(ids)], queries)
    return quantizer, quantizer.encode(parts)


def save_codebooks(model_dir: str, pq: Quantizer, codes: np.ndarray,
                   info: Dict, model_fingerprint: Optional[str] = None) -> str:
    """Writes `<model_dir>/pq/` (served codebooks, item codes, the quantizer's state that
    re-encodes new items identically, pq.json) and commits it (`seminar_tf.storage`) with the
    fingerprint of the weights the key parts came from."""
    out = os.path.join(model_dir, "pq")
    storage.uncommit(out)
    storage.save_npy(os.path.join(out, "codebooks.npy"), pq.codebooks)
    storage.save_npz(os.path.join(out, "quantizer.npz"), **pq.state())
    storage.save_npy(os.path.join(out, "item_codes.npy"), codes)
    storage.write_json(os.path.join(out, "pq.json"), info, sort_keys=True)
    storage.commit(out, "codebooks", model_fingerprint=model_fingerprint,
                   exclude=("recall.json", "key_parts*", "codes-*"))
    return out


class CodebookMismatchError(ValueError):
    """Codebooks built from other weights than the model's."""


def load_codebooks(model_dir: str, model_fingerprint: Optional[str] = None
                   ) -> Tuple[np.ndarray, np.ndarray, Dict]:
    """(codebooks, item codes, pq.json) of a committed `<model_dir>/pq/`.

    Raises:
        UncommittedError: no (complete) codebooks. CodebookMismatchError: they were built
            from weights whose fingerprint is not `model_fingerprint`.
    """
    d = os.path.join(model_dir, "pq")
    m = storage.manifest(d, "codebooks", hint=(
        f": run `seminar build-codebooks --model-dir {model_dir}` first"))
    if model_fingerprint is not None and m.get("model_fingerprint") != model_fingerprint:
        raise CodebookMismatchError(
            f"{d} was built from other weights (fingerprint {m.get('model_fingerprint')}) "
            f"than {model_dir} holds ({model_fingerprint}): the model was retrained since; "
            f"rerun `seminar build-codebooks --model-dir {model_dir}`")
    return (storage.load_npy(os.path.join(d, "codebooks.npy")),
            storage.load_npy(os.path.join(d, "item_codes.npy")),
            storage.read_json(os.path.join(d, "pq.json")))
