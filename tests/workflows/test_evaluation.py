"""Candidate evaluation through the shared-history path equals per-candidate evaluation.

The generated histories repeat items, so GSU scores tie at the K-th place in about one
candidate row in eight (exact copies of one behaviour). The tie rule makes those selections
equal on both paths; rows whose selection float noise could still flip (`gsu_determined`)
are compared within `UNDETERMINED_BOUND`, the rest to 1e-5.
"""
import glob
import os

import numpy as np
import pytest

from helpers import assert_paths_agree, gsu_determined
from seminar_tf.workflows import evaluation, training
from seminar_tf.data.dataset import make_dataset, split_pattern
from seminar_tf.workflows.model_dir import contract_of

SMALL_MODEL = dict(embedding_dim=16, num_heads=2, top_k=8, short_term_len=5, mlp_units=[16],
                   tower_units=[8])


@pytest.mark.parametrize("name", ["seminar", "sim_soft"])
def test_shared_history_evaluation_equals_per_candidate(name, tiny_dataset, tmp_path):
    assert glob.glob(os.path.join(tiny_dataset, "candidate_lists-*"))
    cfg = training.config_for(name, tiny_dataset, model=SMALL_MODEL,
                              train=dict(batch_size=64, epochs=1))
    out = str(tmp_path / "m")
    training.train(name, tiny_dataset, out, cfg, verbose=0)
    model = training.load_model(out)
    shared = evaluation.predict_groups(model, tiny_dataset)
    per = evaluation.predict_split(model, tiny_dataset, "candidates")
    assert len(shared["score"]) == len(per["score"]) > 0

    def keyed(p):
        order = np.lexsort((p["label"], p["item"], p["group"]))
        return {k: v[order] for k, v in p.items()}
    ds = make_dataset(split_pattern(tiny_dataset, "candidates"), contract_of(model.config),
                      batch_size=512, deterministic=True)  # predict_split's order
    per["determined"] = np.concatenate([gsu_determined(model, batch) for batch in ds])
    a, b = keyed(shared), keyed(per)
    for k in ("label", "item", "group", "user", "timestamp", "source"):
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert_paths_agree(a["score"], b["score"], b["determined"])
    m_shared = evaluation.evaluate(out, model=model, with_popularity=False, write=False)
    m_per = evaluation.evaluate(out, model=model, with_popularity=False, write=False,
                                shared_history=False)
    assert m_shared["candidates"]["groups"] == m_per["candidates"]["groups"] > 0
    # per-group means of [0, 1] metrics: only groups with an undetermined row may move
    touched = len(np.unique(b["group"][~b["determined"]]))
    tol = 1e-6 + touched / m_per["candidates"]["groups"]
    for key, value in m_per["candidates"].items():
        assert m_shared["candidates"][key] == pytest.approx(value, abs=tol), key
