import os
import types

import numpy as np
import tensorflow as tf

from seminar_tf.data.dataset import serialized_examples

from seminar_tf.workflows.tfx_trainer import run_fn


def test_run_fn_with_fake_fn_args_writes_servable_model(tiny_dataset, tmp_path):
    fn_args = types.SimpleNamespace(
        train_files=[os.path.join(tiny_dataset, "train-*.tfrecord.gz")],
        eval_files=[os.path.join(tiny_dataset, "valid-*.tfrecord.gz")],
        serving_model_dir=str(tmp_path / "serving" / "1"),
        model_run_dir=str(tmp_path / "run"), train_steps=4, eval_steps=2,
        custom_config={"data_dir": tiny_dataset, "model": "twin", "gsu": "pq", "config": {
            "model": {"embedding_dim": 8, "num_heads": 2, "top_k": 5, "short_term_len": 5,
                      "mlp_units": [8], "tower_units": [4]},
            "pq": {"num_subspaces": 2, "num_codewords": 16},
            "train": {"batch_size": 32}}})
    summary = run_fn(fn_args)
    assert summary["train"]["steps"] == 4
    assert np.isfinite(summary["eval"]["loss"])
    loaded = tf.saved_model.load(fn_args.serving_model_dir)
    assert set(loaded.signatures) == {"serving_default", "predict", "retrieve", "rank",
                                      "rank_raw", "score_raw"}  # the dataset's vocabularies
    records = list(serialized_examples(tiny_dataset, "test", 3))
    out = loaded.signatures["serving_default"](examples=tf.constant(records))
    assert out["score"].shape == (3,)
    assert summary["export"]["gsu"] == "pq"
