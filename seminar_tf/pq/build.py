"""Codebooks for a trained ranker: key parts of every item -> ProductQuantizer -> codes.

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
from seminar_tf.pq.quantizer import ProductQuantizer


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


def build_codebooks(model, item_attrs: np.ndarray, pq_cfg=None,
                    sample_size: Optional[int] = None) -> Tuple[ProductQuantizer, np.ndarray]:
    """Trains codebooks on (a sample of) all items' key parts and encodes every item.

    Returns:
        (quantizer, item codes (V, P, S) uint8).
    """
    pq_cfg = pq_cfg or model.config.pq
    return quantize_parts(item_key_parts(model, item_attrs, combine=pq_cfg.combine_parts),
                          pq_cfg, sample_size)


def quantize_parts(parts: np.ndarray, pq_cfg, sample_size: Optional[int] = None
                   ) -> Tuple[ProductQuantizer, np.ndarray]:
    """Trains codebooks on a sample of key parts (V, P, d) and encodes every item: the
    second half of `build_codebooks`, for callers that already hold the parts."""
    ids = sample_ids(len(parts), sample_size or pq_cfg.sample_size, pq_cfg.seed)
    pq = ProductQuantizer(pq_cfg.num_subspaces, pq_cfg.num_codewords, pq_cfg.kmeans_iters,
                          pq_cfg.seed).fit(parts[np.sort(ids)])
    return pq, pq.encode(parts)


def save_codebooks(model_dir: str, pq: ProductQuantizer, codes: np.ndarray,
                   info: Dict, model_fingerprint: Optional[str] = None) -> str:
    """Writes `<model_dir>/pq/` and commits it (`seminar_tf.storage`) with the fingerprint
    of the weights the key parts came from."""
    out = os.path.join(model_dir, "pq")
    storage.uncommit(out)
    storage.save_npy(os.path.join(out, "codebooks.npy"), pq.codebooks)
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
