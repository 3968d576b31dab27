"""Shared fixtures. Importing seminar_tf first selects Keras 2 for the whole test process."""
import os
import sys

import seminar_tf  # noqa: F401  (must precede any TensorFlow import)

sys.path.insert(0, os.path.dirname(__file__))


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """A small generated KuaiSAR-schema dataset preprocessed by the Beam pipeline (L=20)."""
    from beam_pipelines import pipeline
    from seminar_tf.data import synthetic
    raw = str(tmp_path_factory.mktemp("tiny_raw"))
    out = str(tmp_path_factory.mktemp("tiny_data"))
    synthetic.generate(raw, synthetic.SyntheticConfig(num_users=40, num_items=300, seq_len=60,
                                                      seed=7))
    pipeline.run("kuaisar", raw, out, max_seq_len=20, num_candidates=20)
    return out
