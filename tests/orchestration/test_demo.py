"""The demo end to end at a small size: killed mid-way, resumed, rerun with every stage
skipped; the report's plots exist."""
import os
import subprocess
import sys
import time

from seminar_tf.orchestration.run_pipeline import STAGES


def _demo(run_dir):
    return [sys.executable, "-m", "seminar_tf.cli", "demo", "--out", run_dir, "--size", "tiny"]


def test_demo_kill_resume_skip_and_report(tmp_path):
    run_dir = str(tmp_path / "run")
    first_err = open(tmp_path / "first.stderr", "w")
    proc = subprocess.Popen(_demo(run_dir), stdout=subprocess.DEVNULL, stderr=first_err)
    deadline = time.time() + 600
    marker = os.path.join(run_dir, "pretrain", "manifest.json")
    while time.time() < deadline and not os.path.exists(marker) and proc.poll() is None:
        time.sleep(0.2)
    proc.kill()  # a hard kill in the middle of the run
    proc.wait()
    assert os.path.exists(marker)
    first_err.close()
    progress = open(tmp_path / "first.stderr").read()
    assert "[preprocess] started: Beam job on" in progress
    assert "[pretrain] step 1/" in progress and "steps/s" in progress

    second = subprocess.run(_demo(run_dir), capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stderr[-3000:]
    out = second.stdout
    for stage in ("generate", "preprocess", "pretrain"):
        assert f"[{stage}] skipped" in out
    assert "[finetune] done" in out and "[serve] done" in out
    assert "gRPC Predict requests" in out and "first scores [" in out
    assert "| seminar |" in out and "| twin |" in out
    # quiet by default: no TensorFlow C++ / absl / Beam log lines, one progress line per
    # training at least
    noise = [ln for ln in (out + second.stderr).splitlines() if ln.startswith(
        ("I0000", "W0000", "E0000", "INFO:", "WARNING:", "WARNING: All log messages"))]
    assert not noise, noise[:5]
    assert "[seminar] step 1/" in second.stderr and "[twin] step 1/" in second.stderr

    t0 = time.time()
    third = subprocess.run(_demo(run_dir), capture_output=True, text=True, timeout=300)
    assert third.returncode == 0, third.stderr[-3000:]
    for stage in STAGES:
        assert f"[{stage}] skipped" in third.stdout
    assert time.time() - t0 < 120

    for png in ("training_curves.png", "model_comparison.png", "pq_recall_vs_bytes.png",
                "gsu_latency.png"):
        path = os.path.join(run_dir, "report", png)
        assert os.path.getsize(path) > 5000, png
    assert "## Product quantization" in open(os.path.join(run_dir, "report.md")).read()
