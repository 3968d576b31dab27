"""The push step's blessing gate, the model directory's commit and the codebook fingerprint."""
import os

import numpy as np
import pytest

from seminar_tf import storage
from seminar_tf.models.registry import build_model
from seminar_tf.orchestration import stages
from seminar_tf.pq.build import CodebookMismatchError
from seminar_tf.workflows import training
from seminar_tf.workflows.codebook_build import build_for_model_dir
from seminar_tf.workflows.model_dir import save_model_dir

NAME = "seminar"
SMALL = dict(embedding_dim=8, num_heads=2, top_k=4, short_term_len=3, mlp_units=[8],
             tower_units=[4])


def _constant_model(data):
    """A SEMINAR whose logit layers are zero: every score 0.5, validation AUC exactly 0.5
    (worse than the popularity baseline on this data)."""
    cfg = training.config_for("seminar", data, model=SMALL,
                              pq=dict(num_subspaces=2, num_codewords=8, sample_size=100))
    model = build_model(cfg, item_table=training.load_item_table(data))
    zeroed = 0
    for v in model.variables:
        if "_logit/" in v.name:
            v.assign(np.zeros(v.shape, v.dtype.as_numpy_dtype))
            zeroed += 1
    assert zeroed >= 2  # kernel and bias of every task's logit layer
    return model


@pytest.fixture(scope="module")
def constant_dir(tiny_dataset, tmp_path_factory):
    d = str(tmp_path_factory.mktemp("bless") / "model")
    save_model_dir(_constant_model(tiny_dataset), d, "seminar", tiny_dataset)
    build_for_model_dir(d)
    return d


def test_a_model_worse_than_popularity_is_not_published_unless_forced(
        tiny_dataset, constant_dir, tmp_path):
    base = str(tmp_path / "models")
    out = stages.export({"push": {}}, constant_dir, tiny_dataset, base, NAME)
    b = out["blessing"]
    assert b["figures"]["model"] == pytest.approx(0.5)
    assert b["figures"]["popularity"] > 0.51  # the precondition: popularity is better
    assert not out["published"] and not b["blessed"] and "popularity" in b["reasons"][0]
    assert not [v for v in os.listdir(os.path.join(base, NAME)) if v.isdigit()]
    assert storage.read_json(b["record"])["blessed"] is False  # the decision is kept

    forced = stages.export({"push": {"force": True}}, constant_dir, tiny_dataset, base, NAME)
    assert forced["published"] and forced["blessing"]["forced"]
    assert storage.manifest(os.path.join(base, NAME, "1"), "export")

    # against the published version: scored through its SavedModel on the same Examples
    lenient = {"min_lift_over_popularity": -1.0}
    again = stages.export({"push": lenient}, constant_dir, tiny_dataset, base, NAME)
    assert again["blessing"]["figures"]["published"] == pytest.approx(0.5, abs=1e-6)
    assert again["published"] and again["version"] == 2
    stricter = {**lenient, "max_drop_vs_published": -0.01}  # must beat it by 0.01
    refused = stages.export({"push": stricter}, constant_dir, tiny_dataset, base, NAME)
    assert not refused["published"] and "published version" in refused["blessing"]["reasons"][0]


def test_codebooks_from_other_weights_are_refused(tiny_dataset, constant_dir, tmp_path):
    import shutil
    from seminar_tf.workflows.export import export_from_model_dir
    d = str(tmp_path / "retrained")
    shutil.copytree(constant_dir, d)
    training.load_model(d, gsu="pq")  # same weights: fine
    model = training.load_model(d)
    for v in model.trainable_variables[:3]:
        v.assign_add(np.ones(v.shape, v.dtype.as_numpy_dtype))
    save_model_dir(model, d, "seminar", tiny_dataset)  # "retrained" in place, pq/ kept
    with pytest.raises(CodebookMismatchError, match="build-codebooks"):
        training.load_model(d, gsu="pq")
    with pytest.raises(CodebookMismatchError):
        export_from_model_dir(d, str(tmp_path / "models"), NAME, gsu="pq")
    build_for_model_dir(d)
    training.load_model(d, gsu="pq")


def test_an_unfinished_model_directory_is_refused(tiny_dataset, tmp_path):
    d = str(tmp_path / "m")
    save_model_dir(_constant_model(tiny_dataset), d, "seminar", tiny_dataset, commit=False)
    with pytest.raises(storage.UncommittedError, match="finish \\(or resume\\) training"):
        training.load_model(d)
