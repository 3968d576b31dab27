import os

import numpy as np
import pytest
import tensorflow as tf

from seminar_tf.workflows import training
from seminar_tf.models.psu import PretrainingSearchUnit
from seminar_tf.workflows.pretraining import pretrain, restore_into_ranker
from seminar_tf.models.registry import build_model, model_config

from helpers import random_batch, tiny_config, tiny_item_table


def test_objectives_can_be_switched_off():
    cfg = model_config("seminar", tiny_config()).replace(
        train=dict(next_pair_weight=0.0, relevance_weight=0.0))
    psu = PretrainingSearchUnit(cfg)
    psu.set_item_table(tiny_item_table(cfg))
    psu.build_all()
    assert set(psu.losses_of(random_batch(cfg))) == {"alignment"}


def test_every_psu_variable_gets_a_gradient():
    cfg = model_config("seminar", tiny_config())
    psu = PretrainingSearchUnit(cfg)
    psu.set_item_table(tiny_item_table(cfg))
    psu.build_all()
    with tf.GradientTape() as tape:
        loss = psu.compute_loss(random_batch(cfg, batch=16))
    grads = tape.gradient(loss, psu.trainable_variables)
    missing = [v.name for v, g in zip(psu.trainable_variables, grads) if g is None]
    # the time embedding does not exist in the PSU; everything it has is trained
    assert not missing, missing


@pytest.fixture(scope="module")
def psu_dir(tiny_dataset, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("psu"))
    cfg = training.config_for("seminar", tiny_dataset, model=dict(
        embedding_dim=16, num_heads=2, top_k=8, short_term_len=5, mlp_units=[16],
        tower_units=[8]), train=dict(batch_size=32, epochs=2, learning_rate=3e-3))
    result = pretrain(tiny_dataset, out, cfg, verbose=0)
    return out, cfg, result


def test_pretraining_aligns_text_and_image(psu_dir):
    _, _, result = psu_dir
    before, after = result["alignment_before"], result["alignment_after"]
    assert after["mean_cosine_text_image"] > before["mean_cosine_text_image"] + 0.1
    assert after["recall@10_text_to_image"] >= before["recall@10_text_to_image"]
    losses = result["history"]["loss"]
    assert losses[-1] < losses[0]


def test_finetune_restores_every_psu_weight(psu_dir, tiny_dataset):
    out, cfg, _ = psu_dir
    ranker = build_model(cfg, item_table=training.load_item_table(tiny_dataset))
    restored = restore_into_ranker(ranker, out)
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(os.path.join(out, "psu")))
    saved = {n for n, _ in tf.train.list_variables(tf.train.latest_checkpoint(
        os.path.join(out, "psu"))) if n.endswith("VARIABLE_VALUE")
        and not n.startswith("save_counter")}
    assert len(restored) == len(saved) > 10
    assert any("esu" in r for r in restored) and any("id_embedding" in r for r in restored)
    # the projections G_m are not in the PSU: they stay at identity
    for g in ranker.pair_encoder.item_encoder.projection_layers:
        np.testing.assert_array_equal(g.kernel.numpy(), np.eye(g.kernel.shape[0]))
    key = "esu/w_q/.ATTRIBUTES/VARIABLE_VALUE"
    np.testing.assert_array_equal(ranker.esu.w_q.numpy(), reader.get_tensor(key))


def test_restore_fails_loudly_on_a_mismatched_ranker(psu_dir, tiny_dataset):
    out, cfg, _ = psu_dir
    other = build_model(cfg.replace(model={"embedding_dim": 8, "num_heads": 2}))
    with pytest.raises((RuntimeError, ValueError, AssertionError)):
        restore_into_ranker(other, out)


def test_freeze_psu(psu_dir, tiny_dataset):
    out, cfg, _ = psu_dir
    ranker = build_model(cfg, item_table=training.load_item_table(tiny_dataset))
    restore_into_ranker(ranker, out, freeze=True)
    names = [v.name for v in ranker.trainable_variables]
    assert not any("id_embedding" in n or "esu/" in n for n in names)
    assert any("G_id" in n for n in names)  # projections still learn
