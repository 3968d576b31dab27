"""The whole pipeline off local disk, in one process: TensorFlow's `ram://` filesystem (Beam
reaches it through `beam_pipelines.tf_filesystem`) holds the raw input, the dataset, the
model directory, its codebooks and the export; the server's version scan loads from it.
Any `open()`, `os.*`, `glob.glob` or `np.load` on one of these paths fails here."""
import os

import numpy as np
import tensorflow as tf

from seminar_tf import storage

NAME = "seminar"


def test_generate_preprocess_train_evaluate_export_serve_on_ram_filesystem():
    from beam_pipelines import pipeline
    from seminar_tf.data import synthetic
    from seminar_tf.workflows import export, training
    from seminar_tf.workflows.codebook_build import build_for_model_dir
    from serving.codec import run_predict
    from serving.models import ModelManager
    from tensorflow_serving.apis import predict_pb2

    root = "ram://e2e"  # the generator writes there too
    synthetic.generate(f"{root}/raw", synthetic.SyntheticConfig(num_users=24, num_items=120,
                                                                seq_len=30, seed=11))
    data, model_dir, base = f"{root}/data", f"{root}/model", f"{root}/models"
    stats = pipeline.run("kuaisar", f"{root}/raw", data, max_seq_len=10, num_candidates=8,
                         shards=2)
    assert stats["events"] > 0
    assert storage.manifest(data, "dataset")["files"]

    cfg = training.config_for("seminar", data, model=dict(
        embedding_dim=8, num_heads=2, top_k=4, short_term_len=3, mlp_units=[8],
        tower_units=[4]), pq=dict(num_subspaces=2, num_codewords=8, sample_size=50),
        train=dict(batch_size=32, epochs=1))
    result = training.train("seminar", data, model_dir, cfg, verbose=0)
    assert result["steps"] > 0
    assert storage.manifest(model_dir, "model")["fingerprint"]
    metrics = training.evaluate(model_dir)
    assert np.isfinite(metrics["test"]["auc"])
    assert storage.exists(f"{model_dir}/metrics.json")

    build_for_model_dir(model_dir)
    report = export.export_from_model_dir(model_dir, base, NAME, version=1, gsu="pq")
    assert report["path"] == f"{base}/{NAME}/1"
    assert storage.manifest(report["path"], "export")
    assert not [p for p in storage.listdir(f"{base}/{NAME}") if p.startswith(".tmp")]

    manager = ModelManager(base, NAME, settle_seconds=0.0)
    assert manager.poll_once() and manager.current.version == 1
    examples = export.sample_examples(training.load_model(model_dir, gsu="pq"), data, n=4)
    req = predict_pb2.PredictRequest()
    req.model_spec.name = NAME
    req.inputs["examples"].CopyFrom(tf.make_tensor_proto(examples))
    with manager.acquire(NAME) as model:
        resp = run_predict(model, req)
    scores = tf.make_ndarray(resp.outputs["score"])
    assert scores.shape == (4,) and np.all(np.isfinite(scores))
    # nothing reached the local working directory under the scheme's name
    assert not os.path.exists("ram:") and not os.path.exists(os.path.join(os.getcwd(), "e2e"))
