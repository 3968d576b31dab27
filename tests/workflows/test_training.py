import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from seminar_tf.workflows import training
from seminar_tf.models.registry import MODELS

SMALL_MODEL = dict(embedding_dim=16, num_heads=2, top_k=8, short_term_len=5, mlp_units=[32],
                   tower_units=[16], gsu_options={"qin": {"first_k": 12}})


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
    from seminar_tf import features as F
    from seminar_tf.workflows import training
    data, out, kill_at, log = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    mode = sys.argv[5]

    class Kill(tf.keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if kill_at and int(self.model.optimizer.iterations.numpy()) >= kill_at:
                os._exit(3)   # a hard kill: no cleanup, no final save

    cfg = training.config_for(
        "din", data, model=dict(embedding_dim=8, num_heads=2, top_k=4, short_term_len=4,
                                mlp_units=[8], tower_units=[4]),
        train=dict(batch_size=16, epochs=3, steps_per_epoch=6, shuffle_buffer=0,
                   input_mode=mode, targets_per_timeline=4))
    model = training.build_model(cfg, item_table=training.load_item_table(data))
    step_fn = model.train_step

    def logged_step(batch):  # records the ids of every batch the optimizer is applied to
        t = batch["targets"] if "t_mask" in batch else batch  # timeline batches' targets
        ids = tf.strings.format("{},{},{},{}", (model.optimizer.iterations,
                                                 *(tf.reshape(t[k], [-1]) for k in (
                                                     F.USER_ID, F.TIMESTAMP,
                                                     F.TARGET_ITEM))), summarize=-1)
        tf.print(ids, output_stream="file://" + log)
        return step_fn(batch)
    model.train_step = logged_step
    r = training.train("din", data, out, cfg, extra_callbacks=[Kill()], backup_every_steps=4,
                       verbose=0, model=model)
    print("FINAL_STEPS", r["steps"])
""")


def _logged_batches(path):
    """step -> list of (user, timestamp, item) ids, from the script's tf.print lines."""
    import ast
    out = {}
    for line in open(path, encoding="utf-8"):
        step, users, times, items = line.strip().split(",")
        ids = list(zip(*(ast.literal_eval(x.replace(" ", ",")) for x in (users, times, items))))
        out.setdefault(int(step), []).append(ids)
    return out


@pytest.mark.parametrize("mode", ["auto", "examples"])
def test_killed_training_resumes_without_repeating_or_losing_examples(tiny_dataset, tmp_path,
                                                                      mode):
    """Default (timeline batches over the store) and per-example batches."""
    from seminar_tf import features as F
    from seminar_tf.data.dataset import make_dataset, split_pattern
    from seminar_tf.data.timelines import timeline_dataset
    script = tmp_path / "run.py"
    script.write_text(RESUME_SCRIPT)
    out = str(tmp_path / "m")
    log1, log2 = str(tmp_path / "ids1.txt"), str(tmp_path / "ids2.txt")
    first = subprocess.run([sys.executable, str(script), tiny_dataset, out, "10", log1, mode],
                           capture_output=True, text=True, timeout=600)
    assert first.returncode == 3, first.stderr[-3000:]
    assert os.path.isdir(os.path.join(out, "backup"))
    second = subprocess.run([sys.executable, str(script), tiny_dataset, out, "0", log2, mode],
                            capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    starts = [int(x) for x in open(os.path.join(out, "start_steps.txt")).read().split()]
    assert starts == [0, 8]  # the last backup before the kill was at step 8, not 0
    assert "FINAL_STEPS 18" in second.stdout  # 3 epochs x 6 steps
    assert not os.path.exists(os.path.join(out, "backup", "checkpoint"))
    # The updates that survive: steps 0-7 of the first run (backed up at 8), 8-17 of the
    # second. Together they must be exactly the first 18 batches of the data, in order:
    # no example repeated (the iterator must not restart) and none lost.
    b1, b2 = _logged_batches(log1), _logged_batches(log2)
    assert sorted(b1) == list(range(10)) and sorted(b2) == list(range(8, 18))
    applied = [ids for s in range(8) for ids in b1[s]] + [ids for s in range(8, 18)
                                                          for ids in b2[s]]
    cfg = training.load_model(out).config
    # the stream training reads (several shards interleaved, in a fixed order)
    pattern, contract = split_pattern(tiny_dataset, "train"), training.contract_of(cfg)
    if mode == "auto":
        ds = (b["targets"] for b in timeline_dataset(
            pattern, contract, targets_per_timeline=4, batch_size=16, repeat=True).take(18))
    else:
        ds = make_dataset(pattern, contract, batch_size=16, repeat=True).take(18)
    expected = [list(zip(*(b[k].numpy().reshape(-1).tolist() for k in (
        F.USER_ID, F.TIMESTAMP, F.TARGET_ITEM)))) for b in ds]
    # (user, timestamp in s, item) is not unique in the data (repeated impressions within a
    # second), so the identity of an example is its position in the stream: compare in order
    assert applied == expected
    assert applied[8:10] != expected[:2]  # what a restarted iterator would have fed


@pytest.fixture(scope="module")
def lifelong_dataset(tmp_path_factory):
    """L=100 histories; only the last ~25% of each timeline are targets."""
    from beam_pipelines import pipeline
    from seminar_tf.data import synthetic
    raw = str(tmp_path_factory.mktemp("ll_raw"))
    out = str(tmp_path_factory.mktemp("ll_data"))
    cfg = synthetic.SyntheticConfig(num_users=160, num_items=1500, seq_len=130, seed=11)
    synthetic.generate(raw, cfg)
    start = synthetic.START_MS + int(0.75 * cfg.days * 86_400_000)
    pipeline.run("kuaisar", raw, out, max_seq_len=100, num_candidates=50,
                 min_target_time_ms=start)
    return out


def test_every_model_trains_one_epoch_and_beats_popularity(lifelong_dataset):
    results = {}
    for name in sorted(MODELS):
        cfg = training.config_for(
            name, lifelong_dataset, model=dict(embedding_dim=32, num_heads=2, top_k=30, short_term_len=20,
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


def test_training_defaults_to_timeline_batches_over_the_store(tiny_dataset, tmp_path):
    """The default input (`auto`) trains on the store's windows (the loss equality itself is
    in tests/models/test_timeline_training.py) and validates on per-example batches."""
    cfg = training.config_for("seminar", tiny_dataset, model=SMALL_MODEL,
                              train=dict(batch_size=32, epochs=1, steps_per_epoch=4,
                                         targets_per_timeline=8))
    assert cfg.train.input_mode == "auto"
    out = str(tmp_path / "m")
    result = training.train("seminar", tiny_dataset, out, cfg, verbose=0)
    assert result["input_mode"] == "timelines"
    assert result["steps"] == 4
    assert all(np.isfinite(v).all() for v in result["history"].values())
    assert np.isfinite(result["history"]["val_auc"]).all()  # validation reads examples
    with pytest.raises(Exception, match="input_mode"):
        cfg.replace(train=dict(input_mode="per_user")).validate()


def test_input_mode_rule(tiny_dataset, tmp_path):
    """auto: timelines over the store, examples over Example files and under the
    parameter-server strategy; an explicit impossible choice is refused naming the way out."""
    store_files = training.split_pattern(tiny_dataset, "train")
    examples = tmp_path / "train-00000-of-00001.tfrecord.gz"
    examples.write_bytes(b"")
    assert training.input_mode("auto", store_files) == "timelines"
    assert training.input_mode("auto", store_files, "mirrored") == "timelines"
    assert training.input_mode("auto", store_files, "parameter_server") == "examples"
    assert training.input_mode("auto", str(examples)) == "examples"
    assert training.input_mode("examples", store_files) == "examples"
    with pytest.raises(ValueError, match="'examples' or 'auto'"):
        training.input_mode("timelines", store_files, "parameter_server")
    with pytest.raises(ValueError, match="--format store"):
        training.input_mode("timelines", str(examples))
