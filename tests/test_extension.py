"""Adding a variant is one new module plus one table line, for each family: a GSU, a data
source, a PSU objective and a serving signature (the modules live in
tests/extension_fixtures)."""
import json
import os

import numpy as np

from beam_pipelines import pipeline
from beam_pipelines.sources import SOURCES
from beam_pipelines.sources import Entry as SourceEntry
from seminar_tf.workflows import evaluation, training
from seminar_tf.layers.retrieval import RETRIEVERS
from seminar_tf.layers.retrieval import Entry as GsuEntry
from seminar_tf.workflows.pretraining import pretrain
from seminar_tf.tasks.objectives import OBJECTIVES
from seminar_tf.tasks.objectives import Entry as ObjectiveEntry

SMALL = dict(embedding_dim=8, num_heads=2, top_k=4, short_term_len=4, mlp_units=[8],
             tower_units=[4])


def test_new_gsu(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.setitem(RETRIEVERS, "oldest",
                        GsuEntry("extension_fixtures.oldest_gsu", "OldestRetrieval", {}))
    cfg = training.config_for("twin", tiny_dataset, model={**SMALL, "gsu": "oldest"},
                              train=dict(batch_size=64, epochs=1))
    out = str(tmp_path / "m")
    training.train("twin", tiny_dataset, out, cfg, verbose=0)
    model = training.load_model(out)
    assert type(model.gsu).__name__ == "OldestRetrieval"
    assert np.isfinite(evaluation.evaluate(out, tiny_dataset)["test"]["auc"])


def test_new_source(tmp_path, monkeypatch):
    monkeypatch.setitem(SOURCES, "tsv", SourceEntry("extension_fixtures.tsv_source",
                                                    "TsvClicks"))
    raw = tmp_path / "raw"
    raw.mkdir()
    rng = np.random.default_rng(0)
    with open(raw / "clicks-0.tsv", "w") as f:
        for u in range(12):
            for k in range(8):
                f.write(f"{u}\t{rng.integers(1, 40)}\t{1_600_000_000 + 3600 * k}\n")
        f.write("broken line\n")
    stats = pipeline.run("tsv", str(raw), str(tmp_path / "out"), max_seq_len=5,
                         num_candidates=5)
    assert stats["events"] == 96 and stats["dead_letters_total"] == 1
    assert stats["examples"]["train"] > 0 and stats["synth_queries"] is True


def test_new_objective(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.setitem(OBJECTIVES, "item_norm", ObjectiveEntry(
        "extension_fixtures.item_norm_objective", "ItemNormObjective", 0.5))
    cfg = training.config_for("seminar", tiny_dataset, model=SMALL,
                              train=dict(batch_size=32, epochs=1))
    assert cfg.train.weights()["item_norm"] == 0.5
    result = pretrain(tiny_dataset, str(tmp_path / "psu"), cfg, verbose=0, steps=3)
    assert "item_norm_loss" in result["history"]
    assert np.isfinite(result["history"]["item_norm_loss"]).all()
    saved = json.load(open(os.path.join(tmp_path, "psu", "pretrain.json")))
    assert "item_norm_loss" in saved["history"]


def test_new_serving_signature(tiny_dataset, tmp_path, monkeypatch):
    """One function + one table line: exported, warmed up, served over gRPC."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    from extension_fixtures.embed_signature import SIGNATURE
    from seminar_tf.workflows import export
    from seminar_tf.workflows.signatures import SIGNATURES
    from serving.client import GrpcClient
    from serving.server import Server
    monkeypatch.setitem(SIGNATURES, "embed", SIGNATURE)
    cfg = training.config_for("twin", tiny_dataset, model=SMALL,
                              train=dict(batch_size=64, epochs=1))
    out = str(tmp_path / "m")
    training.train("twin", tiny_dataset, out, cfg, verbose=0)
    base = str(tmp_path / "models")
    report = export.export_from_model_dir(out, base, "ext", version=1)
    assert "embed" in report["signatures"]
    v1 = os.path.join(base, "ext", "1")
    warm = [prediction_log_pb2.PredictionLog.FromString(r.numpy()).predict_log.request
            for r in tf.data.TFRecordDataset(os.path.join(v1, "assets.extra",
                                                         "tf_serving_warmup_requests"))]
    assert "embed" in [r.model_spec.signature_name for r in warm]
    model = training.load_model(out)
    examples = export.sample_examples(model, tiny_dataset, n=4)
    contract = export.F.FeatureContract.from_config(model.config.data)
    expected = model.encode_target(contract.parse_examples(tf.constant(examples)))["pair"]
    server = Server(base, "ext", grpc_port=0, rest_port=0, poll_seconds=0.2).start()
    try:
        client = GrpcClient(f"127.0.0.1:{server.grpc_port}", "ext")
        assert "embed" in client.metadata().signature_def
        got = client.predict_examples(examples, signature="embed")["target"]
        np.testing.assert_allclose(got, expected, atol=1e-5)
        client.close()
    finally:
        server.stop()
