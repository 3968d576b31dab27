"""TFX-style stages with files in between: generate -> preprocess -> pretrain -> finetune
(+ baseline) -> codebooks -> evaluate -> export -> serve.

Each stage reads and writes its own directory under the run directory and leaves a
`manifest.json` (inputs, outputs, config, versions, timings, fingerprint). A stage whose
fingerprint (its config plus the fingerprints of the stages it reads) matches its manifest is
skipped; a killed run therefore resumes at the first unfinished stage (and training stages
resume mid-run through BackupAndRestore).

`seminar run-pipeline --config pipeline.json` and `seminar demo` drive it. The pipeline JSON
holds the sections below (all optional; see `DEFAULTS`).
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional

from seminar_tf import stages

STAGES = ("generate", "preprocess", "pretrain", "finetune", "baseline", "codebooks",
          "evaluate", "export", "serve")
UPSTREAM = {"generate": (), "preprocess": ("generate",), "pretrain": ("preprocess",),
            "finetune": ("preprocess", "pretrain"), "baseline": ("preprocess",),
            "codebooks": ("finetune",), "evaluate": ("finetune", "baseline", "codebooks"),
            "export": ("finetune", "codebooks"), "serve": ("export",)}

DEFAULTS = {
    "generate": {"users": 300, "items": 3000, "seq_len": 150, "seed": 0},
    "preprocess": {"max_seq_len": 100, "num_candidates": 100, "multiprocess": True},
    "model": {"embedding_dim": 32, "num_heads": 2, "top_k": 20, "short_term_len": 10,
              "mlp_units": [64], "tower_units": [32]},
    "train": {"batch_size": 256, "epochs": 1, "learning_rate": 0.002},
    "pretrain": {"epochs": 1},
    "pq": {"num_subspaces": 4, "num_codewords": 256},
    "baseline": "twin",
    "serve": {"requests": 20, "candidates": 50},
}


def merge(base: Dict, override: Dict) -> Dict:
    out = copy.deepcopy(base)
    for k, v in (override or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def versions() -> Dict[str, str]:
    import apache_beam
    import tensorflow as tf
    import seminar_tf
    return {"seminar_tf": seminar_tf.__version__, "tensorflow": tf.__version__,
            "apache_beam": apache_beam.__version__, "python": platform.python_version()}


def _fingerprint(stage: str, cfg: Dict, manifests: Dict[str, Dict]) -> str:
    relevant = {"generate": ["generate"], "preprocess": ["preprocess"],
                "pretrain": ["model", "train", "pretrain"], "finetune": ["model", "train"],
                "baseline": ["model", "train", "baseline"], "codebooks": ["pq"],
                "evaluate": [], "export": [], "serve": ["serve"]}[stage]
    payload = {"stage": stage, "config": {k: cfg.get(k) for k in relevant},
               "upstream": {u: manifests[u]["fingerprint"] for u in UPSTREAM[stage]}}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


class Pipeline:
    """Runs the stages of one run directory."""

    def __init__(self, run_dir: str, config: Optional[Dict] = None, verbose: int = 1,
                 log: Callable[[str], None] = print):
        self.run_dir = os.path.abspath(run_dir)
        self.cfg = merge(DEFAULTS, config or {})
        self.verbose, self.log = verbose, log
        self.manifests: Dict[str, Dict] = {}
        self.validate()

    def validate(self) -> None:
        """Checks the model / train / pq sections before any stage runs.

        Raises:
            ConfigError: naming the field.
        """
        from seminar_tf.config import SeminarConfig
        from seminar_tf.models.registry import registry_changes
        for name, train in (("seminar", {**self.cfg["train"], **self.cfg["pretrain"]}),
                            (self.cfg["baseline"], self.cfg["train"])):
            SeminarConfig.from_dict({
                "data": {"max_seq_len": self.cfg["preprocess"]["max_seq_len"]},
                "model": {**registry_changes(name), **self.cfg["model"]},
                "train": train, "pq": self.cfg["pq"]})

    def path(self, stage: str, *rest: str) -> str:
        return os.path.join(self.run_dir, stage, *rest)

    def run(self, stages=STAGES, force: bool = False) -> Dict[str, Dict]:
        os.makedirs(self.run_dir, exist_ok=True)
        with open(os.path.join(self.run_dir, "pipeline.json"), "w", encoding="utf-8") as f:
            json.dump(self.cfg, f, indent=2, sort_keys=True)
        total = time.time()
        for stage in STAGES:
            if stage not in stages:
                self._load_manifest(stage)
                continue
            self.run_stage(stage, force)
        self.log(f"[pipeline] finished in {time.time() - total:.1f} s")
        return self.manifests

    def _load_manifest(self, stage):
        p = self.path(stage, "manifest.json")
        if os.path.exists(p):
            with open(p, encoding="utf-8") as f:
                self.manifests[stage] = json.load(f)

    def run_stage(self, stage: str, force: bool = False) -> Dict:
        for up in UPSTREAM[stage]:
            if up not in self.manifests:
                self._load_manifest(up)
                if up not in self.manifests:
                    raise RuntimeError(f"stage {stage} needs {up}, which has not run")
        fp = _fingerprint(stage, self.cfg, self.manifests)
        mpath = self.path(stage, "manifest.json")
        if not force and os.path.exists(mpath):
            with open(mpath, encoding="utf-8") as f:
                old = json.load(f)
            if old.get("fingerprint") == fp and old.get("status") == "complete":
                self.log(f"[{stage}] skipped: inputs unchanged since {old['finished']}")
                self.manifests[stage] = old
                return old
        if force and stage in ("finetune", "baseline", "pretrain"):
            shutil.rmtree(self.path(stage), ignore_errors=True)
        os.makedirs(self.path(stage), exist_ok=True)
        self.log(f"[{stage}] running ...")
        t0 = time.time()
        outputs = getattr(self, f"_stage_{stage}")()
        seconds = round(time.time() - t0, 2)
        manifest = {"stage": stage, "status": "complete", "fingerprint": fp,
                    "inputs": {u: self.manifests[u]["outputs"] for u in UPSTREAM[stage]},
                    "outputs": outputs, "config": {k: self.cfg.get(k) for k in self.cfg},
                    "versions": versions(), "seconds": seconds,
                    "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
        with open(mpath, "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=2, sort_keys=True, default=str)
        self.manifests[stage] = manifest
        self.log(f"[{stage}] done in {seconds:.1f} s")
        return manifest

    # --------------------------------------------------------------------- helpers
    def data_dir(self) -> str:
        return self.manifests["preprocess"]["outputs"]["data"]

    def out(self, stage: str) -> str:
        return self.manifests[stage]["outputs"]

    # ---------------------------------------------------------------------- stages
    def _stage_generate(self):
        return stages.generate(self.cfg, self.path("generate", "raw"))

    def _stage_preprocess(self):
        return stages.preprocess(self.cfg, self.out("generate")["raw"],
                                 self.path("preprocess", "data"))

    def _stage_pretrain(self):
        return stages.pretrain(self.cfg, self.data_dir(), self.path("pretrain", "psu"),
                               verbose=self.verbose)

    def _stage_finetune(self):
        return stages.train(self.cfg, self.data_dir(), self.path("finetune", "model"),
                            "seminar", init_from=self.out("pretrain")["psu"],
                            verbose=self.verbose)

    def _stage_baseline(self):
        return stages.train(self.cfg, self.data_dir(), self.path("baseline", "model"),
                            self.cfg["baseline"], verbose=self.verbose)

    def _stage_codebooks(self):
        model_dir = self.out("finetune")["model_dir"]
        out = stages.codebooks(self.cfg, model_dir)
        out["recall_sweep"] = recall_sweep(model_dir, self.cfg["pq"])
        out["gsu_latency"] = gsu_latency_by_length(self.path("codebooks"))
        return out

    def _stage_evaluate(self):
        return stages.evaluate(self.cfg, self.data_dir(), self.out("finetune")["model_dir"],
                               self.out("baseline")["model_dir"], self.path("evaluate"))

    def _stage_export(self):
        return stages.export(self.cfg, self.out("finetune")["model_dir"], self.data_dir(),
                             self.path("export", "models"))

    def _stage_serve(self):
        exp = self.manifests["export"]["outputs"]
        return serve_and_query(exp["base"], exp["name"], self.data_dir(),
                               self.manifests["finetune"]["outputs"]["model_dir"],
                               **self.cfg["serve"], log=self.log)


# ---------------------------------------------------------------------- measurements
def recall_sweep(model_dir: str, pq_cfg: Dict) -> List[Dict]:
    """recall@K of PQ vs exact for several sub-space counts (codebooks rebuilt each time,
    the configured ones restored at the end)."""
    from seminar_tf.codebooks import build_for_model_dir, pq_recall
    rows = []
    base_s = pq_cfg.get("num_subspaces", 4)
    for s in sorted({1, 2, base_s, 8}):
        info = build_for_model_dir(model_dir, **{**pq_cfg, "num_subspaces": s})
        r = pq_recall(model_dir, with_metrics=False, max_batches=4)
        rows.append({"S": s, "bytes_per_behaviour": info["bytes_per_behaviour"],
                     "recall_at_k": r["recall_at_k"]})
    build_for_model_dir(model_dir, **pq_cfg)
    return rows


def gsu_latency_by_length(work: str, lengths=(100, 1000, 10000), batch: int = 32,
                          d: int = 64, S: int = 16) -> List[Dict]:
    """Median ms of exact (cached fused keys) vs PQ (fused codebook, XLA) scoring + top-100."""
    import numpy as np
    import tensorflow as tf
    from seminar_tf.layers.retrieval.pq import pq_item_scores
    rng = np.random.default_rng(0)
    rows = []
    for L in lengths:
        u = tf.constant(rng.normal(size=(batch, d)).astype(np.float32))
        keys = tf.constant(rng.normal(size=(batch, L, d)).astype(np.float32))
        books = tf.constant(rng.normal(size=(1, S, 256, d // S)).astype(np.float32))
        codes = tf.constant(rng.integers(0, 256, size=(batch, L, 1, S)).astype(np.uint8))
        k = min(100, L)
        exact = tf.function(lambda: tf.math.top_k(tf.einsum("bd,bld->bl", u, keys), k))
        pq = tf.function(lambda: tf.math.top_k(pq_item_scores(u, books, codes), k),
                         jit_compile=True)
        row = {"L": L, "batch": batch}
        for name, fn in (("exact_ms", exact), ("pq_ms", pq)):
            for _ in range(2):
                fn()[1].numpy()
            times = []
            for _ in range(7):
                t0 = time.perf_counter()
                fn()[1].numpy()
                times.append(time.perf_counter() - t0)
            row[name] = round(1000 * float(np.median(times)), 3)
        rows.append(row)
    return rows


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_and_query(base: str, name: str, data_dir: str, model_dir: str, requests: int = 20,
                    candidates: int = 50, log: Callable[[str], None] = print) -> Dict:
    """Starts `seminar serve` in a subprocess, sends gRPC Predict requests of candidate
    Examples with the tensorflow-serving-api client, compares with the in-process model,
    measures latency, and stops the server."""
    import numpy as np
    import tensorflow as tf
    from seminar_tf import features as F
    from seminar_tf import training
    from seminar_tf.data.dataset import serialized_examples
    from serving.client import GrpcClient
    grpc_port, rest_port = _free_port(), _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "seminar_tf.cli", "serve", "--model-base",
                             base, "--name", name, "--grpc-port", str(grpc_port),
                             "--rest-port", str(rest_port)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        line = ""
        deadline = time.time() + 300
        while time.time() < deadline and '"ready"' not in line:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                raise RuntimeError("the server exited before it was ready")
        log(f"[serve] server up: gRPC 127.0.0.1:{grpc_port}, REST 127.0.0.1:{rest_port}")
        records = list(serialized_examples(data_dir, "candidates", requests * candidates))
        client = GrpcClient(f"127.0.0.1:{grpc_port}", name)
        lat, scores = [], []
        for i in range(requests):
            batch = records[i * candidates:(i + 1) * candidates]
            if not batch:
                break
            t0 = time.perf_counter()
            out = client.predict_examples(batch)
            lat.append((time.perf_counter() - t0) * 1000)
            scores.append(out["score"])
        model = training.load_model(model_dir, gsu="pq")
        contract = F.FeatureContract.from_config(model.config.data)
        first = records[:candidates]
        local = model(contract.parse_examples(tf.constant(first)))["score"].numpy()
        max_diff = float(np.max(np.abs(local - scores[0])))
        client.close()
        sample = [round(float(x), 4) for x in scores[0][:5]]
        log(f"[serve] {len(lat)} gRPC Predict requests x {candidates} candidates; first "
            f"scores {sample}; p50 {np.percentile(lat, 50):.1f} ms, p99 "
            f"{np.percentile(lat, 99):.1f} ms; |served - in-process| <= {max_diff:.2e}")
        return {"requests": len(lat), "candidates_per_request": candidates,
                "latency_ms_p50": float(np.percentile(lat, 50)),
                "latency_ms_p99": float(np.percentile(lat, 99)),
                "first_scores": sample, "max_abs_diff_vs_in_process": max_diff,
                "grpc_port": grpc_port}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log("[serve] server stopped")
