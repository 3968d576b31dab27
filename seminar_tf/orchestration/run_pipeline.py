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
import time
from typing import Callable, Dict, Optional

from seminar_tf import storage
from seminar_tf.orchestration import stages
from seminar_tf.orchestration.measurements import (gsu_latency_by_length, recall_sweep,
                                                   serve_and_query)

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
    # the blessing gate of the export (push) stage: `seminar_tf.workflows.blessing`
    "push": {"metric": "auc", "min_lift_over_popularity": 0.0, "max_drop_vs_published": 0.0,
             "force": False},
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
                "evaluate": [], "export": ["push"], "serve": ["serve"]}[stage]
    payload = {"stage": stage, "config": {k: cfg.get(k) for k in relevant},
               "upstream": {u: manifests[u]["fingerprint"] for u in UPSTREAM[stage]}}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


class Pipeline:
    """Runs the stages of one run directory."""

    def __init__(self, run_dir: str, config: Optional[Dict] = None, verbose: int = 1,
                 log: Callable[[str], None] = print):
        self.run_dir = os.path.abspath(run_dir) if storage.is_local(run_dir) else run_dir
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
        storage.makedirs(self.run_dir)
        storage.write_json(os.path.join(self.run_dir, "pipeline.json"), self.cfg,
                           sort_keys=True)
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
        if storage.exists(p):
            self.manifests[stage] = storage.read_json(p)

    def run_stage(self, stage: str, force: bool = False) -> Dict:
        for up in UPSTREAM[stage]:
            if up not in self.manifests:
                self._load_manifest(up)
                if up not in self.manifests:
                    raise RuntimeError(f"stage {stage} needs {up}, which has not run")
        fp = _fingerprint(stage, self.cfg, self.manifests)
        mpath = self.path(stage, "manifest.json")
        if not force and storage.exists(mpath):
            old = storage.read_json(mpath)
            if old.get("fingerprint") == fp and old.get("status") == "complete":
                self.log(f"[{stage}] skipped: inputs unchanged since {old['finished']}")
                self.manifests[stage] = old
                return old
        if force and stage in ("finetune", "baseline", "pretrain"):
            storage.rmtree(self.path(stage))
        storage.makedirs(self.path(stage))
        self.log(f"[{stage}] running ...")
        t0 = time.time()
        outputs = getattr(self, f"_stage_{stage}")()
        seconds = round(time.time() - t0, 2)
        manifest = {"stage": stage, "status": "complete", "fingerprint": fp,
                    "inputs": {u: self.manifests[u]["outputs"] for u in UPSTREAM[stage]},
                    "outputs": outputs, "config": {k: self.cfg.get(k) for k in self.cfg},
                    "versions": versions(), "seconds": seconds,
                    "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
        storage.write_text(mpath, json.dumps(manifest, indent=2, sort_keys=True, default=str))
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
        if not exp.get("published", True):
            from seminar_tf.workflows.blessing import latest_version
            if latest_version(exp["base"], exp["name"]) is None:
                self.log("[serve] skipped: the export was not blessed and no version is "
                         "published")
                return {"skipped": "no published version", "requests": 0}
        return serve_and_query(exp["base"], exp["name"], self.data_dir(),
                               self.manifests["finetune"]["outputs"]["model_dir"],
                               **self.cfg["serve"], log=self.log)
