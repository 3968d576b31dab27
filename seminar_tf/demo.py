"""The main job end to end on built-in generated data (`make demo`, `seminar demo`).

Each stage writes its outputs into its own directory under the run directory together with a
`manifest.json` (config, outputs, timings); a rerun skips stages whose manifest exists unless
`force` is given.
"""
from __future__ import annotations

import json
import os
import time
from typing import Callable, Dict

SIZES = {
    "tiny": dict(users=60, items=400, seq_len=60),
    "small": dict(users=600, items=5000, seq_len=200),
}


def _stage(run_dir: str, name: str, config: Dict, fn: Callable[[str], Dict],
           force: bool) -> Dict:
    out = os.path.join(run_dir, name)
    manifest_path = os.path.join(out, "manifest.json")
    if not force and os.path.exists(manifest_path):
        with open(manifest_path, encoding="utf-8") as f:
            manifest = json.load(f)
        if manifest.get("config") == config:
            print(f"[{name}] skipped: finished earlier with the same config ({out})")
            return manifest
    print(f"[{name}] running ...", flush=True)
    os.makedirs(out, exist_ok=True)
    t0 = time.time()
    outputs = fn(out)
    manifest = {"stage": name, "config": config, "outputs": outputs,
                "seconds": round(time.time() - t0, 2)}
    with open(manifest_path, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
    print(f"[{name}] done in {manifest['seconds']} s")
    return manifest


def run_demo(run_dir: str, force: bool = False, size: str = "small") -> int:
    """Runs every stage that exists so far and prints a summary."""
    from seminar_tf.data import synthetic
    os.makedirs(run_dir, exist_ok=True)
    gen_cfg = dict(SIZES[size], seed=0)

    def generate(out):
        return synthetic.generate(out, synthetic.SyntheticConfig(
            num_users=gen_cfg["users"], num_items=gen_cfg["items"],
            seq_len=gen_cfg["seq_len"], seed=gen_cfg["seed"]))

    t0 = time.time()
    gen = _stage(run_dir, "generate", gen_cfg, generate, force)
    print("\n== Summary ==")
    print(json.dumps({"generated": gen["outputs"]}, indent=2))
    print(f"total {time.time() - t0:.1f} s")
    return 0
