"""Timeline batches: the same loss and gradients as per-example batches on the same targets."""
import numpy as np
import pytest
import tensorflow as tf

from helpers import gsu_determined, tiny_config, tiny_item_table
from seminar_tf import features as F
from seminar_tf.data import timelines
from seminar_tf.models import windows
from seminar_tf.models.registry import MODELS, build_model, model_config


def timeline_batch(cfg, U=3, T=4, seed=0):
    """Random windows (W = L + T behaviours, time-sorted) and T targets each with their
    causal history ends (spans < T); the last window has padding targets."""
    rng = np.random.default_rng(seed)
    d = cfg.data
    L, Q, A, W = d.max_seq_len, d.max_query_tokens, d.num_attrs, d.max_seq_len + T
    fill = rng.integers(L // 2, W + 1, size=U)  # real behaviours per window
    real = np.arange(W)[None] < fill[:, None]
    times = np.sort(rng.integers(0, 10**9, size=(U, W)), 1) * real
    ends = np.stack([np.sort(rng.integers(max(0, f - T + 1), f + 1, size=T)) for f in fill])
    mask = np.ones((U, T), bool)
    mask[-1, T // 2:] = False
    ends = ends * mask
    start = np.maximum(ends - L, 0) * mask
    t_time = np.where(mask, times.max(1, keepdims=True) + 1000, 0)
    return {
        "tl_items": tf.constant(rng.integers(2, d.item_vocab_size, size=(U, W)) * real),
        "tl_query": tf.constant(rng.integers(0, d.query_vocab_size, size=(U, W, Q))
                                * real[..., None]),
        "tl_attrs": tf.constant(rng.integers(1, d.attr_vocab_size, size=(U, W, A))
                                * real[..., None]),
        "tl_sources": tf.constant(rng.integers(1, 3, size=(U, W)) * real),
        "tl_time_ms": tf.constant(times.astype(np.int64)),
        "user_id": tf.constant(rng.integers(2, d.user_vocab_size, size=(U, T)) * mask),
        "t_time_ms": tf.constant(t_time.astype(np.int64)),
        "t_item": tf.constant(rng.integers(2, d.item_vocab_size, size=(U, T)) * mask),
        "t_query": tf.constant(rng.integers(0, d.query_vocab_size, size=(U, T, Q))
                               * mask[..., None]),
        "t_attrs": tf.constant(rng.integers(1, d.attr_vocab_size, size=(U, T, A))
                               * mask[..., None]),
        "t_source": tf.constant(np.where(mask, rng.integers(1, 3, size=(U, T)), 0)),
        "t_label": tf.constant((rng.random((U, T)) < 0.5).astype(np.float32) * mask),
        "t_group": tf.constant(np.zeros((U, T), np.int64)),
        "t_start": tf.constant(start.astype(np.int64)),
        "t_end": tf.constant(ends.astype(np.int64)),
        "t_mask": tf.constant(mask)}


def _loss_and_grads(model, batch):
    with tf.GradientTape() as tape:
        loss = model.compute_loss(batch, training=True)
    return loss.numpy(), [None if g is None else tf.convert_to_tensor(g).numpy()
                          for g in tape.gradient(loss, model.trainable_variables)]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_timeline_batch_loss_and_gradients_equal_per_example(name):
    cfg = model_config(name, tiny_config(dropout=0.0))
    model = build_model(cfg, item_table=tiny_item_table(cfg))
    # a batch without near-ties at any target's K-th GSU place (weights are random per run):
    # there, float noise between the two formulations cannot change what is retrieved
    contract = F.FeatureContract.from_config(cfg.data)
    for seed in range(10):
        batch = timelines.finish(contract, timeline_batch(cfg, seed=seed))
        per_example = contract.finish(timelines.to_examples(batch, cfg.data.max_seq_len))
        if gsu_determined(model, per_example).all():
            break
    else:
        pytest.fail("every batch has a near-tie at the K-th GSU place")
    assert per_example[F.LABEL].shape[0] == 10  # padding targets dropped
    a_loss, a_grads = _loss_and_grads(model, batch)
    b_loss, b_grads = _loss_and_grads(model, per_example)
    np.testing.assert_allclose(a_loss, b_loss, rtol=1e-5)
    assert sum(g is not None for g in a_grads) > 3
    for v, ga, gb in zip(model.trainable_variables, a_grads, b_grads):
        assert (ga is None) == (gb is None), v.name
        if ga is not None:
            np.testing.assert_allclose(ga, gb, rtol=1e-4, atol=1e-6, err_msg=v.name)


def test_window_path_equals_the_expanded_fallback():
    """A GSU without per-target masks (`target_masks = False`, e.g. an extension's) gets the
    expanded path: same loss and gradients as the window path of the built-in GSUs."""
    cfg = model_config("twin", tiny_config(dropout=0.0))
    model = build_model(cfg, item_table=tiny_item_table(cfg))
    contract = F.FeatureContract.from_config(cfg.data)
    batch = timelines.finish(contract, timeline_batch(cfg, seed=3))
    assert model.gsu.target_masks
    with tf.GradientTape(persistent=True) as tape:
        out_w, _, w = windows.call_windows(model, batch, training=True)
        out_e, _, _ = windows.call_expanded(model, batch, training=True)
        loss_w = tf.reduce_sum(out_w["logit"] * w)
        loss_e = tf.reduce_sum(out_e["logit"] * w)
    real = w.numpy() > 0
    np.testing.assert_allclose(out_w["logit"].numpy()[real], out_e["logit"].numpy()[real],
                               atol=1e-5)
    for v in model.trainable_variables:
        gw, ge = tape.gradient(loss_w, v), tape.gradient(loss_e, v)
        if gw is None or ge is None:
            assert gw is None and ge is None, v.name
            continue
        np.testing.assert_allclose(tf.convert_to_tensor(gw).numpy(),
                                   tf.convert_to_tensor(ge).numpy(), rtol=1e-4, atol=1e-5,
                                   err_msg=v.name)


@pytest.mark.parametrize("name", ["twin", "seminar"])
def test_xla_train_step_agrees_with_the_plain_step(name):
    """`train.jit_compile`: the compiled timeline step's loss and gradients equal the plain
    step's within 1e-4 (relative; float reassociation inside fused kernels)."""
    cfg = model_config(name, tiny_config(dropout=0.0))
    model = build_model(cfg, item_table=tiny_item_table(cfg))
    contract = F.FeatureContract.from_config(cfg.data)
    batch = timelines.finish(contract, timeline_batch(cfg, seed=3))

    def step(b):
        with tf.GradientTape() as tape:
            loss = model.compute_loss(b, training=True)
        return loss, [tf.convert_to_tensor(g) for g in tape.gradient(
            loss, model.trainable_variables) if g is not None]

    plain = tf.function(step)(batch)
    xla = tf.function(step, jit_compile=True)(batch)
    np.testing.assert_allclose(xla[0].numpy(), plain[0].numpy(), rtol=1e-4)
    assert len(xla[1]) == len(plain[1]) > 3
    for gx, gp in zip(xla[1], plain[1]):
        np.testing.assert_allclose(gx.numpy(), gp.numpy(), rtol=1e-4, atol=1e-6)


def test_distinct_item_encoding_equals_the_pair_encoder():
    """`encode_distinct` on windows that repeat few items (and OOV ids with different
    attributes, kept apart): the pair encoder's outputs and gradients."""
    cfg = model_config("seminar", tiny_config(dropout=0.0))
    model = build_model(cfg, item_table=tiny_item_table(cfg))
    rng = np.random.default_rng(5)
    d = cfg.data
    U, W = 3, d.max_seq_len + 4
    items = rng.integers(0, 6, size=(U, W))  # ids 0 (padding), 1 (OOV) and 4 items
    attrs = rng.integers(1, 3, size=(U, W, d.num_attrs)) * (items > 0)[..., None]
    attrs = np.where(items[..., None] > 1, items[..., None] % 3 + 1, attrs)  # f(id) if known
    query = rng.integers(0, d.query_vocab_size, size=(U, W, d.max_query_tokens))
    x = [tf.constant(v) for v in (items, attrs, query)]
    pe = model.pair_encoder
    with tf.GradientTape(persistent=True) as tape:
        got = windows.encode_distinct(pe, *x)
        want = pe(*x)
        lg = tf.reduce_sum(got["pair"] ** 2) + tf.reduce_sum(got["item"])
        lw = tf.reduce_sum(want["pair"] ** 2) + tf.reduce_sum(want["item"])
    assert set(got) == set(want)
    for k in want:
        np.testing.assert_allclose(np.asarray(got[k], np.float64),
                                   np.asarray(want[k], np.float64), atol=1e-6, err_msg=k)
    for v in pe.trainable_variables:
        gg, gw = tape.gradient(lg, v), tape.gradient(lw, v)
        if gw is None:
            assert gg is None, v.name
            continue
        np.testing.assert_allclose(tf.convert_to_tensor(gg).numpy(),
                                   tf.convert_to_tensor(gw).numpy(), rtol=1e-4, atol=1e-5,
                                   err_msg=v.name)
