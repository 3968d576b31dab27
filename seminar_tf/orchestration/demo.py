"""The main job end to end on built-in generated data (`make demo`, `seminar demo`).

generate -> Beam preprocessing -> PSU pretraining -> SEMINAR finetuning (and TWIN) -> PQ
codebooks -> evaluation -> export (PQ GSU) -> local TF-Serving-compatible server -> gRPC
Predict with the tensorflow-serving-api client -> summary. Finished stages are reused on a
rerun unless `force` (see `seminar_tf.orchestration.run_pipeline`).
"""
from __future__ import annotations

import time

SIZES = {
    "tiny": {"generate": {"users": 40, "items": 300, "seq_len": 60},
             "preprocess": {"max_seq_len": 30, "num_candidates": 20, "multiprocess": False},
             "model": {"embedding_dim": 16, "num_heads": 2, "top_k": 8, "short_term_len": 5,
                       "mlp_units": [16], "tower_units": [8]},
             "train": {"batch_size": 128},
             "pq": {"num_subspaces": 2, "num_codewords": 32},
             "serve": {"requests": 5, "candidates": 20},
             # 40 users, one epoch: not expected to beat popularity; the tiny demo runs every
             # stage, so its push is forced past the gate (the summary says so)
             "push": {"force": True}},
    "small": {},
}


def run_demo(run_dir: str, force: bool = False, size: str = "small", verbose: int = 1) -> int:
    """Runs the demo pipeline; `verbose` 1 shows progress lines, 2 Keras' epoch logs."""
    from seminar_tf.orchestration.run_pipeline import Pipeline
    t0 = time.time()
    pipe = Pipeline(run_dir, SIZES[size], verbose=verbose)
    m = pipe.run(force=force)
    print_summary(m, time.time() - t0)
    return 0


def print_summary(m, seconds: float) -> None:
    ev = m["evaluate"]["outputs"]
    cb = m["codebooks"]["outputs"]
    exp = m["export"]["outputs"]
    serve = m["serve"]["outputs"]
    pre = m["pretrain"]["outputs"]
    print("\n" + "=" * 72)
    print("SEMINAR-TF demo summary")
    print("=" * 72)
    print(ev["table"])
    print(f"\nPSU alignment (text-image cosine): "
          f"{pre['alignment_before'].get('mean_cosine_text_image', float('nan')):.3f} -> "
          f"{pre['alignment_after'].get('mean_cosine_text_image', float('nan')):.3f}")
    print(f"PQ: {cb['info']['lookups_per_behaviour']} lookups / "
          f"{cb['info']['bytes_per_behaviour']} bytes per behaviour "
          f"(float keys {cb['info']['float_key_bytes_per_behaviour']}); "
          f"recall@{cb['top_k']} vs exact GSU: {cb['recall_at_k']:.3f}")
    b = exp.get("blessing")
    if b:
        fig = ", ".join(f"{k} {v:.4f}" for k, v in b["figures"].items() if k != "examples")
        verdict = ("blessed" if b["blessed"] else "FAILED: " + "; ".join(b["reasons"])) + (
            " (push forced)" if b.get("forced") else "")
        print(f"Blessing gate (validation {b['metric']}: {fig}): {verdict}")
    if exp.get("published", True):
        print(f"Export: {exp['path']} (GSU {exp['gsu']}, signatures {exp['signatures']})")
    else:
        print(f"Export: not published under {exp['base']} (--force-push publishes anyway)")
    if "latency_ms_p50" in serve:
        print(f"Served over gRPC: {serve['requests']} requests x "
              f"{serve['candidates_per_request']} candidates, p50 "
              f"{serve['latency_ms_p50']:.1f} ms, p99 {serve['latency_ms_p99']:.1f} ms; "
              f"first scores {serve['first_scores']}")
    else:
        print(f"Serving: skipped ({serve.get('skipped')})")
    stage_times = ", ".join(f"{k} {v['seconds']:.0f}s" for k, v in m.items())
    print(f"Stage times: {stage_times}")
    print(f"Total {seconds:.0f} s. Report: seminar report --run <run dir>")
