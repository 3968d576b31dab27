import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from seminar_tf import training
from seminar_tf.models.registry import MODELS

SMALL_MODEL = dict(embedding_dim=16, num_heads=2, top_k=8, short_term_len=5, mlp_units=[32],
                   tower_units=[16], qin_query_k=12)


def test_train_and_evaluate_writes_model_dir(tiny_dataset, tmp_path):
    cfg = training.config_for("twin", tiny_dataset, model=SMALL_MODEL,
                              train=dict(batch_size=64, epochs=2))
    out = str(tmp_path / "m")
    result = training.train("twin", tiny_dataset, out, cfg, verbose=0)
    assert result["steps"] > 0
    assert all(np.isfinite(v).all() for v in result["history"].values())
    metrics = training.evaluate(out)
    for key in ("auc", "gauc", "logloss"):
        assert np.isfinite(metrics["test"][key])
    for key in ("hit@1", "hit@10", "ndcg@10", "mrr"):
        assert 0.0 <= metrics["candidates"][key] <= 1.0
    assert metrics["candidates"]["groups"] > 0
    assert json.load(open(os.path.join(out, "metrics.json")))["test"]["auc"] == metrics[
        "test"]["auc"]
    for name in ("config.json", "model.json", "history.csv"):
        assert os.path.exists(os.path.join(out, name))
    assert os.listdir(os.path.join(out, "logs"))  # TensorBoard
    # the reloaded model scores exactly as the trained one
    again = training.evaluate(out, model=training.load_model(out), with_popularity=False,
                              write=False)
    assert again["test"]["auc"] == pytest.approx(metrics["test"]["auc"], abs=1e-6)


RESUME_SCRIPT = textwrap.dedent("""
    import os, sys, json
    import seminar_tf
    import tensorflow as tf
    from seminar_tf import training
    data, out, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])

    class Kill(tf.keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if kill_at and int(self.model.optimizer.iterations.numpy()) >= kill_at:
                os._exit(3)   # a hard kill: no cleanup, no final save

    cfg = training.config_for(
        "din", data, model=dict(embedding_dim=8, num_heads=2, top_k=4, short_term_len=4, mlp_units=[8],
                   tower_units=[4]),
        train=dict(batch_size=16, epochs=3, steps_per_epoch=6, shuffle_buffer=0))
    r = training.train("din", data, out, cfg, extra_callbacks=[Kill()], backup_every_steps=4,
                       verbose=0)
    print("FINAL_STEPS", r["steps"])
""")


def test_killed_training_resumes_from_its_step(tiny_dataset, tmp_path):
    script = tmp_path / "run.py"
    script.write_text(RESUME_SCRIPT)
    out = str(tmp_path / "m")
    first = subprocess.run([sys.executable, str(script), tiny_dataset, out, "10"],
                           capture_output=True, text=True, timeout=600)
    assert first.returncode == 3, first.stderr[-3000:]
    assert os.path.isdir(os.path.join(out, "backup"))
    second = subprocess.run([sys.executable, str(script), tiny_dataset, out, "0"],
                            capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    starts = [int(x) for x in open(os.path.join(out, "start_steps.txt")).read().split()]
    assert starts == [0, 8]  # the last backup before the kill was at step 8, not 0
    assert "FINAL_STEPS 18" in second.stdout  # 3 epochs x 6 steps, none repeated or lost
    assert not os.path.exists(os.path.join(out, "backup", "checkpoint"))


@pytest.fixture(scope="module")
def lifelong_dataset(tmp_path_factory):
    """L=200 histories; only the last ~25% of each timeline are targets."""
    from beam_pipelines import pipeline
    from seminar_tf.data import synthetic
    raw = str(tmp_path_factory.mktemp("ll_raw"))
    out = str(tmp_path_factory.mktemp("ll_data"))
    cfg = synthetic.SyntheticConfig(num_users=240, num_items=2000, seq_len=230, seed=11)
    synthetic.generate(raw, cfg)
    start = synthetic.START_MS + int(0.75 * cfg.days * 86_400_000)
    pipeline.run("kuaisar", raw, out, max_seq_len=200, num_candidates=50,
                 min_target_time_ms=start)
    return out


def test_every_model_trains_one_epoch_and_beats_popularity(lifelong_dataset):
    results = {}
    for name in sorted(MODELS):
        cfg = training.config_for(
            name, lifelong_dataset, model=dict(embedding_dim=32, num_heads=2, top_k=50, short_term_len=20,
                       mlp_units=[64], tower_units=[32]),
            train=dict(batch_size=256, epochs=1))
        model_dir = os.path.join(lifelong_dataset, "models", name)
        r = training.train(name, lifelong_dataset, model_dir, cfg, verbose=0)
        assert all(np.isfinite(v).all() for v in r["history"].values()), name
        m = training.evaluate(model_dir, lifelong_dataset)
        results[name] = (m["test"]["auc"], m["popularity_baseline"]["test"]["auc"])
    print(results)
    for name, (model_auc, pop_auc) in results.items():
        assert np.isfinite(model_auc), name
        assert model_auc > pop_auc, (name, model_auc, pop_auc)
