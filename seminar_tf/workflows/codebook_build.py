"""Codebook building for a trained model directory (`seminar build-codebooks`) and the PQ
recall check (`seminar pq-recall`): a workflow over `seminar_tf.pq`."""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable, Dict, Optional

import numpy as np

import tensorflow as tf

from seminar_tf import storage
from seminar_tf.data.dataset import make_dataset, split_pattern
from seminar_tf.pq.build import item_key_parts, quantize_parts, save_codebooks, target_queries
from seminar_tf.workflows.model_dir import data_dir_of, model_manifest


def build_for_model_dir(model_dir: str, data_dir: Optional[str] = None, *,
                        encoder: Optional[Callable] = None, **pq_overrides) -> Dict:
    """Trains codebooks on the trained model's item key parts; writes `<model_dir>/pq/`.

    Args:
        model_dir: a trained model directory.
        data_dir: its dataset (default: the one it was trained on); its training targets
            give the query vectors of score-aware codebooks (`pq.whiten`).
        encoder: optional `f(model_dir, data_dir, out_dir, pq_cfg, queries) -> (quantizer,
            codes, stats)` that computes key parts, trains and encodes elsewhere, e.g. the
            Beam job of `beam_pipelines.codebooks` for vocabularies that do not fit one
            process (`seminar build-codebooks --beam` passes it; `stats`: quantization_mse
            and mean_part_sq_norm); by default the in-process builder (same result).
        **pq_overrides: changes to the model's `pq` config section (e.g. `method`).
    """
    from seminar_tf.workflows import training
    data_dir = data_dir_of(model_dir, data_dir)
    model = training.load_model(model_dir, gsu="exact")
    pq_cfg = model.config.replace(pq=pq_overrides).pq if pq_overrides else model.config.pq
    t0 = time.time()
    table = training.load_item_table(data_dir)
    queries = target_queries(model, table["attrs"], data_dir, seed=pq_cfg.seed) \
        if pq_cfg.whiten else None
    if encoder is None:
        all_parts = item_key_parts(model, table["attrs"], combine=pq_cfg.combine_parts)
        pq, codes = quantize_parts(all_parts, pq_cfg, queries=queries)  # parts computed once
        parts = all_parts[2:]
        stats = {"quantization_mse": pq.quantization_error(parts),
                 "mean_part_sq_norm": float(np.mean(np.sum(parts.astype(np.float64) ** 2,
                                                           -1)))}
    else:  # no key part leaves the workers
        out = os.path.join(model_dir, "pq")
        storage.uncommit(out)
        storage.makedirs(out)
        pq, codes, stats = encoder(model_dir, data_dir, out, pq_cfg, queries)
    P, S = codes.shape[1:]
    info = {"pq_config": dataclasses.asdict(pq_cfg), "num_items": int(codes.shape[0]),
            "method": pq_cfg.method, "whiten": pq_cfg.whiten,
            "layout": list(pq.codebooks.shape), "parts": int(P),
            "lookups_per_behaviour": int(P * S), "bytes_per_behaviour": int(P * S),
            "float_key_bytes_per_behaviour": int(4 * model.config.model.embedding_dim),
            "quantization_mse": float(stats["quantization_mse"]),
            "mean_part_sq_norm": float(stats["mean_part_sq_norm"]),
            "seconds": round(time.time() - t0, 2)}
    save_codebooks(model_dir, pq, codes, info,
                   model_fingerprint=model_manifest(model_dir).get("fingerprint"))
    return info


def pq_recall(model_dir: str, data_dir: Optional[str] = None, split: str = "test",
              max_batches: Optional[int] = None, with_metrics: bool = True) -> Dict:
    """recall@K of the PQ top-K against the exact GSU top-K, and the ranker's end metrics
    with the PQ GSU versus the exact GSU."""
    from seminar_tf.workflows import training
    data_dir = data_dir_of(model_dir, data_dir)
    exact = training.load_model(model_dir, gsu="exact")
    pq = training.load_model(model_dir, gsu="pq")
    contract = training.contract_of(exact.config)
    ds = make_dataset(split_pattern(data_dir, split), contract, batch_size=256,
                      deterministic=True)
    hits = total = 0

    @tf.function(reduce_retracing=True)
    def both(batch):
        a, b = exact.retrieve(batch), pq.retrieve(batch)
        return a["indices"], a["valid"], b["indices"], b["valid"]

    for k, batch in enumerate(ds):
        if max_batches is not None and k >= max_batches:
            break
        ei, ev, pi, pv = (x.numpy() for x in both(batch))
        for row in range(len(ei)):
            ref = set(ei[row][ev[row]].tolist())
            got = set(pi[row][pv[row]].tolist())
            hits += len(ref & got)
            total += len(ref)
    result = {"split": split, "top_k": int(exact.top_k),
              "recall_at_k": hits / total if total else float("nan"),
              "retrieved_behaviours": int(total)}
    if with_metrics:
        m_exact = training.evaluate(model_dir, data_dir, model=exact, with_popularity=False,
                                    write=False)
        m_pq = training.evaluate(model_dir, data_dir, model=pq, with_popularity=False,
                                 write=False)
        for name, m in (("exact", m_exact), ("pq", m_pq)):
            result[f"auc_{name}"] = m["test"]["auc"]
            if "candidates" in m:
                result[f"ndcg@10_{name}"] = m["candidates"]["ndcg@10"]
        result["auc_delta"] = result["auc_pq"] - result["auc_exact"]
    storage.write_json(os.path.join(model_dir, "pq", "recall.json"), result, sort_keys=True)
    return result
