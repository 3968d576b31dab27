"""The pipeline on Kubeflow Pipelines v2: the IR compiles, and a tiny configuration runs
with kfp.local (SubprocessRunner, this environment) to the same evaluation metrics as the
same stages run by `seminar run-pipeline`."""
import json
import os
import subprocess
import sys

import numpy as np
import yaml

from seminar_tf.orchestration import kfp_pipeline

TINY = {
    "generate": {"users": 40, "items": 300, "seq_len": 50, "seed": 3},
    "preprocess": {"max_seq_len": 20, "num_candidates": 20, "multiprocess": False},
    "model": {"embedding_dim": 16, "num_heads": 2, "top_k": 8, "short_term_len": 5,
              "mlp_units": [16], "tower_units": [8]},
    "train": {"batch_size": 64, "epochs": 1, "learning_rate": 0.002},
    "pretrain": {"epochs": 1},
    "pq": {"num_subspaces": 2, "num_codewords": 16},
    "baseline": "twin",
}
STAGES = ["generate", "preprocess", "pretrain", "finetune", "baseline", "codebooks",
          "evaluate"]


def test_compile_writes_the_ir(tmp_path):
    out = kfp_pipeline.compile_pipeline(str(tmp_path / "pipeline.yaml"), "example/image:1")
    spec = yaml.safe_load(open(out))
    tasks = spec["root"]["dag"]["tasks"]
    assert {"generate-op", "preprocess-op", "pretrain-op", "finetune-op", "baseline-op",
            "codebooks-op", "evaluate-op", "export-op"} <= set(tasks)
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {"example/image:1"}
    cli = subprocess.run([sys.executable, "-m", "seminar_tf.cli", "compile-pipeline", "--out",
                          str(tmp_path / "cli.yaml")], capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr[-2000:]
    assert yaml.safe_load(open(tmp_path / "cli.yaml"))["pipelineInfo"]["name"] == "seminar-tf"


def test_local_run_matches_run_pipeline(tmp_path):
    metrics_dir = kfp_pipeline.run_local(TINY, str(tmp_path / "kfp_root"))
    kfp_metrics = json.load(open(os.path.join(metrics_dir, "metrics.json")))
    cfg = tmp_path / "pipeline.json"
    cfg.write_text(json.dumps(TINY))
    run = subprocess.run([sys.executable, "-m", "seminar_tf.cli", "run-pipeline", "--config",
                          str(cfg), "--run-dir", str(tmp_path / "run"), "--stages", *STAGES],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    ref = json.load(open(tmp_path / "run" / "evaluate" / "metrics.json"))
    assert set(kfp_metrics) == set(ref) == {"seminar", "twin", "seminar_pq"}
    for model, result in ref.items():
        for split in ("test", "candidates"):
            for key, value in result[split].items():
                np.testing.assert_allclose(kfp_metrics[model][split][key], value, rtol=1e-5,
                                           err_msg=f"{model} {split} {key}")
