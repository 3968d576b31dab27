"""Fixtures of the serving tests: one tiny trained SEMINAR exported with the PQ GSU."""
import pytest

from seminar_tf.workflows import export, training
from seminar_tf.workflows.codebook_build import build_for_model_dir

NAME = "seminar"


@pytest.fixture(scope="session")
def trained(tiny_dataset, tmp_path_factory):
    d = tmp_path_factory.mktemp("serving")
    model_dir = str(d / "model")
    cfg = training.config_for("seminar", tiny_dataset, model=dict(
        embedding_dim=16, num_heads=2, top_k=8, short_term_len=5, mlp_units=[16],
        tower_units=[8]), pq=dict(num_subspaces=2, num_codewords=16),
        train=dict(batch_size=64, epochs=1))
    training.train("seminar", tiny_dataset, model_dir, cfg, verbose=0)
    build_for_model_dir(model_dir)
    base = str(d / "models")
    report = export.export_from_model_dir(model_dir, base, NAME, version=1, gsu="pq")
    examples = export.sample_examples(training.load_model(model_dir), tiny_dataset, n=6)
    return model_dir, base, report, examples
