import numpy as np
import pytest
import tensorflow as tf

from seminar_tf import features as F
from seminar_tf.models.registry import MODELS, build_model, model_config

from helpers import assert_nested_close, random_batch, tiny_config, tiny_item_table


def _model(name, **model_kw):
    cfg = model_config(name, tiny_config(**model_kw))
    return build_model(cfg, item_table=tiny_item_table(cfg)), cfg


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_trainable_variable_gets_a_gradient(name):
    model, cfg = _model(name)
    batch = random_batch(cfg, batch=16)
    with tf.GradientTape() as tape:
        loss = model.compute_loss(batch, training=True)
    grads = tape.gradient(loss, model.trainable_variables)
    missing = [v.name for v, g in zip(model.trainable_variables, grads) if g is None]
    assert not missing, f"{name}: no gradient for {missing}"
    zero = [v.name for v, g in zip(model.trainable_variables, grads)
            if float(tf.norm(tf.convert_to_tensor(g))) == 0.0]
    assert not zero, f"{name}: zero gradient for {zero}"
    refs = {v.ref() for v in model.trainable_variables}
    for w in (model.esu.w_q, model.esu.w_k, model.esu.w_v, model.esu.w_o):
        assert w.ref() in refs, w.name
    assert np.isfinite(float(loss))


@pytest.mark.parametrize("name", ["twin", "seminar", "sim_soft", "eta"])
def test_save_reload_identical_outputs(name, tmp_path):
    model, cfg = _model(name)
    batch = random_batch(cfg)
    expected = model(batch)
    model.save_weights(str(tmp_path / "w" / "model"))
    again = build_model(cfg)  # fresh variables, item tables zero until restored
    again.load_weights(str(tmp_path / "w" / "model")).expect_partial()
    assert_nested_close(expected, again(batch))

    class Serve(tf.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        @tf.function(input_signature=[{k: tf.TensorSpec.from_tensor(v)
                                       for k, v in batch.items()}])
        def __call__(self, x):
            return self.m(x)

    tf.saved_model.save(Serve(model), str(tmp_path / "sm"))
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    assert_nested_close(expected, loaded(batch))


def test_item_tables_are_saved_variables():
    model, cfg = _model("seminar")
    names = [v.name for v in model.non_trainable_variables]
    assert any("text_encoder/table" in n for n in names)
    assert any("image_encoder/present" in n for n in names)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_padding_content_does_not_change_scores(name):
    model, cfg = _model(name)
    batch = random_batch(cfg, batch=8)
    base = model(batch)["logit"].numpy()
    mask = batch[F.HIST_ITEMS].numpy() != 0
    noisy = dict(batch)
    noisy[F.HIST_TIME_GAPS] = tf.where(mask, batch[F.HIST_TIME_GAPS], 12345.0)
    noisy[F.HIST_SOURCES] = tf.where(mask, batch[F.HIST_SOURCES], 2)
    noisy[F.HIST_ATTRS] = tf.where(mask[..., None], batch[F.HIST_ATTRS], 3)
    noisy[F.HIST_QUERY] = tf.where(mask[..., None], batch[F.HIST_QUERY], 4)
    np.testing.assert_allclose(model(noisy)["logit"].numpy(), base, atol=1e-5)


def test_retrieval_is_top_k_of_real_behaviours():
    model, cfg = _model("twin")
    batch = random_batch(cfg, batch=8)
    out = model.retrieve(batch)
    mask = batch[F.HIST_ITEMS].numpy() != 0
    idx, valid = out["indices"].numpy(), out["valid"].numpy()
    for b in range(8):
        assert mask[b][idx[b][valid[b]]].all()
        assert valid[b].sum() == min(cfg.model.top_k, mask[b].sum())


def test_routing_by_source():
    model, cfg = _model("twin")
    batch = random_batch(cfg, batch=8)
    out = model(batch)
    src = batch[F.TARGET_SOURCE].numpy()
    np.testing.assert_allclose(out["logit"].numpy(),
                               np.where(src == F.SOURCE_SEARCH, out["search"], out["ctr"]))


def test_gsu_pq_builds_an_empty_pq_layer_to_restore_into():
    from seminar_tf.layers.retrieval.pq import PQLookupAttention
    model = build_model(tiny_config(gsu="pq"))
    assert isinstance(model.gsu, PQLookupAttention)
    assert not model.gsu.needs_keys
    assert float(tf.reduce_sum(tf.abs(model.gsu.codebooks))) == 0.0  # until set_codebooks
