"""Candidate evaluation through the shared-history path equals per-candidate evaluation."""
import glob
import os

import numpy as np
import pytest

from seminar_tf import evaluation, training

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
    a, b = keyed(shared), keyed(per)
    for k in ("label", "item", "group", "user", "timestamp", "source"):
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    np.testing.assert_allclose(a["score"], b["score"], atol=1e-5)
    m_shared = evaluation.evaluate(out, model=model, with_popularity=False, write=False)
    m_per = evaluation.evaluate(out, model=model, with_popularity=False, write=False,
                                shared_history=False)
    assert m_shared["candidates"]["groups"] == m_per["candidates"]["groups"] > 0
    for key, value in m_per["candidates"].items():
        assert m_shared["candidates"][key] == pytest.approx(value, abs=1e-6), key
