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
        tower_units=[8]), train=dict(batch_size=32, epochs=2, learning_rate=3e-3,
                                     shuffle_buffer=0))
    # unshuffled: the same batches every epoch, so the epoch losses compare (shuffled, the
    # in-batch negatives of this tiny data move an epoch's mean InfoNCE loss by ~0.5)
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


def _one_target_windows(cfg, U=4, seed=0):
    """Timeline windows of one target each (W = L + 1), the target's history being all of
    the window's behaviours: the PSU's window rows then hold exactly the per-example rows."""
    from seminar_tf import features as F
    from seminar_tf.data import timelines
    rng = np.random.default_rng(seed)
    d = cfg.data
    L, Q, A, W = d.max_seq_len, d.max_query_tokens, d.num_attrs, d.max_seq_len + 1
    fill = rng.integers(L // 2, L + 1, size=U)
    real = np.arange(W)[None] < fill[:, None]
    times = np.sort(rng.integers(0, 10**9, size=(U, W)), 1) * real
    c = tf.constant
    batch = {
        "tl_items": c(rng.integers(2, d.item_vocab_size, size=(U, W)) * real),
        "tl_query": c(rng.integers(0, d.query_vocab_size, size=(U, W, Q))
                      * (rng.random((U, W, 1)) < 0.5) * real[..., None]),
        "tl_attrs": c(rng.integers(1, d.attr_vocab_size, size=(U, W, A)) * real[..., None]),
        "tl_sources": c(rng.integers(1, 3, size=(U, W)) * real),
        "tl_time_ms": c(times.astype(np.int64)),
        "user_id": c(np.arange(2, 2 + U)[:, None]), "t_time_ms": c(times.max(1)[:, None] + 1),
        "t_item": c(rng.integers(2, d.item_vocab_size, size=(U, 1))),
        "t_query": c(np.zeros((U, 1, Q), np.int64)),
        "t_attrs": c(rng.integers(1, d.attr_vocab_size, size=(U, 1, A))),
        "t_source": c(np.ones((U, 1), np.int64)), "t_label": c(np.ones((U, 1), np.float32)),
        "t_group": c(np.zeros((U, 1), np.int64)), "t_start": c(np.zeros((U, 1), np.int64)),
        "t_end": c(fill[:, None].astype(np.int64)), "t_mask": c(np.ones((U, 1), bool))}
    contract = F.FeatureContract.from_config(cfg.data)
    batch = timelines.finish(contract, batch)
    return batch, contract.finish(timelines.to_examples(batch, L))


def test_psu_window_rows_equal_per_example_rows():
    """One target per window: the shared-window PSU losses equal the per-example ones (same
    rows right-aligned, same scored positions, the same sampled negatives)."""
    cfg = model_config("seminar", tiny_config(dropout=0.0))
    psu = PretrainingSearchUnit(cfg)
    psu.set_item_table(tiny_item_table(cfg))
    psu.build_all()
    windows, examples = _one_target_windows(cfg)
    tf.random.set_seed(3)
    got = {k: v.numpy() for k, v in psu.losses_of(windows).items()}
    tf.random.set_seed(3)
    want = {k: v.numpy() for k, v in psu.losses_of(examples).items()}
    assert set(got) == set(want) == {"alignment", "next_pair", "relevance"}
    for k in got:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, err_msg=k)


def test_psu_window_rows_score_positions_per_real_target():
    from seminar_tf.models.psu import window_rows
    W, P = 12, 3
    items = np.zeros((1, W), np.int64)
    items[0, :9] = np.arange(2, 11)  # 9 behaviours, left-aligned
    batch = {"tl_items": tf.constant(items), "tl_attrs": tf.zeros((1, W, 2), tf.int64),
             "tl_query": tf.zeros((1, W, 2), tf.int64), "tl_sources": tf.ones((1, W), tf.int64),
             "t_end": tf.constant([[6, 8, 9, 0]], tf.int64),
             "t_mask": tf.constant([[True, True, True, False]])}
    rows, first = window_rows(batch, P)
    np.testing.assert_array_equal(rows["items"].numpy()[0], [0, 0, 0] + list(range(2, 11)))
    # 3 real targets x 3 positions: the 9 most recent behaviours, columns 3..11
    assert int(first[0]) == W - 9
