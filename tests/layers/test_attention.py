import numpy as np
import pytest
import tensorflow as tf

from seminar_tf.layers.attention import MultiHeadTargetAttention, masked_softmax

from helpers import assert_round_trip


def reference(layer, target, keys, mask, values):
    """float64 numpy multi-head target attention."""
    wq, wk, wv, wo = [np.asarray(w, np.float64) for w in layer.get_weights()]
    t, k, v = (np.asarray(x, np.float64) for x in (target, keys, values))
    out = np.zeros((t.shape[0], wo.shape[-1]))
    dk = wq.shape[-1]
    for b in range(t.shape[0]):
        for h in range(wq.shape[1]):
            q = t[b] @ wq[:, h]
            logits = (k[b] @ wk[:, h]) @ q / np.sqrt(dk)
            m = mask[b]
            if not m.any():
                continue
            w = np.zeros_like(logits)
            e = np.exp(logits[m] - logits[m].max())
            w[m] = e / e.sum()
            out[b] += (w @ (v[b] @ wv[:, h])) @ wo[h]
    return out


@pytest.mark.parametrize("heads, d, dv", [(1, 8, 8), (2, 8, 6), (4, 16, 16)])
def test_matches_float64_reference_with_masks(heads, d, dv):
    rng = np.random.default_rng(heads)
    B, L = 5, 7
    layer = MultiHeadTargetAttention(heads, target_dim=d, input_dim=d, value_dim=dv,
                                     output_dim=d)
    target = rng.normal(size=(B, d)).astype(np.float32)
    keys = rng.normal(size=(B, L, d)).astype(np.float32)
    values = rng.normal(size=(B, L, dv)).astype(np.float32)
    mask = rng.random((B, L)) < 0.6
    mask[0] = False  # fully padded row
    mask[1] = True
    keys[~mask] = 1e3  # padding content must not matter
    out = layer(target, keys, tf.constant(mask), values).numpy()
    np.testing.assert_allclose(out, reference(layer, target, keys, mask, values), atol=1e-4)
    assert np.all(np.isfinite(out))
    np.testing.assert_array_equal(out[0], 0.0)


def test_masked_softmax_all_padding_is_zero_not_nan():
    w = masked_softmax(tf.constant([[1.0, 2.0], [3.0, -1e30]]),
                       tf.constant([[False, False], [True, False]])).numpy()
    np.testing.assert_array_equal(w, [[0, 0], [1, 0]])


def test_query_in_key_space_equals_head_mean_logits():
    rng = np.random.default_rng(0)
    layer = MultiHeadTargetAttention(4, target_dim=8, input_dim=8)
    t = tf.constant(rng.normal(size=(3, 8)), tf.float32)
    k = tf.constant(rng.normal(size=(3, 5, 8)), tf.float32)
    u = layer.query_in_key_space(t)
    np.testing.assert_allclose(tf.einsum("bd,bld->bl", u, k),
                               tf.reduce_mean(layer.head_logits(t, k), 1), atol=1e-5)


def test_weights_are_trainable_distinct_and_round_trip(tmp_path):
    layer = MultiHeadTargetAttention(2, target_dim=4, input_dim=4)
    layer.build()
    names = sorted(v.name.split("/")[-1] for v in layer.trainable_variables)
    assert names == ["w_k:0", "w_o:0", "w_q:0", "w_v:0"]
    assert not np.allclose(layer.w_q.numpy(), layer.w_k.numpy())
    rng = np.random.default_rng(1)
    inputs = (tf.constant(rng.normal(size=(2, 4)), tf.float32),
              tf.constant(rng.normal(size=(2, 3, 4)), tf.float32),
              tf.constant([[True, False, True], [False, False, False]]))
    assert_round_trip(layer, lambda l, x: l(*x), inputs, tmp_path)


def test_attend_many_equals_repeated_rows_with_causal_masks():
    from seminar_tf.layers.attention import MultiHeadTargetAttention
    rng = np.random.default_rng(4)
    B, T, L, d = 3, 4, 9, 8
    att = MultiHeadTargetAttention(2, d, d)
    targets = tf.constant(rng.normal(size=(B, T, d)), tf.float32)
    keys = tf.constant(rng.normal(size=(B, L, d)), tf.float32)
    values = tf.constant(rng.normal(size=(B, L, d)), tf.float32)
    pad = np.arange(L)[None, :] >= np.array([[0], [3], [L]])  # last row all padding
    causal = np.arange(L)[None, :] < np.arange(L - T, L)[:, None]
    mask = tf.constant(pad[:, None, :] & causal[None])
    many = att.attend_many(targets, keys, mask, values).numpy()
    rep = att(tf.reshape(targets, [B * T, d]), tf.repeat(keys, T, 0),
              tf.reshape(mask, [B * T, L]), tf.repeat(values, T, 0)).numpy()
    np.testing.assert_allclose(many.reshape(B * T, -1), rep, atol=1e-5)
    assert np.all(many[2] == 0.0)  # a fully padded row attends to nothing


def shared_history(seed, B, L, N):
    """An attention layer, keys (B, L, 5), values (B, L, 7) and targets (B, N, 6)."""
    rng = np.random.default_rng(seed)
    att = MultiHeadTargetAttention(2, 6, 5, value_dim=7, output_dim=8)
    return (rng, att, tf.constant(rng.normal(size=(B, L, 5)), tf.float32),
            tf.constant(rng.normal(size=(B, L, 7)), tf.float32),
            tf.constant(rng.normal(size=(B, N, 6)), tf.float32))


def test_attend_gathered_equals_call_on_gathered_rows():
    """Gathering raw keys / values per target and pooling before the projection == `call`
    on the gathered rows (and both == the float64 projected reference)."""
    B, L, N, K = 3, 9, 4, 5
    rng, att, keys, values, targets = shared_history(4, B, L, N)
    idx = tf.constant(rng.integers(0, L, size=(B, N, K)), tf.int32)
    mask = tf.constant(rng.random((B, N, K)) < 0.7)
    got = att.attend_gathered(targets, keys, values, idx, mask).numpy()
    for b in range(B):
        for n in range(N):
            k, v = tf.gather(keys[b], idx[b, n])[None], tf.gather(values[b], idx[b, n])[None]
            ref = att(targets[b:b + 1, n], k, mask[b:b + 1, n], v).numpy()
            np.testing.assert_allclose(got[b, n], ref[0], atol=1e-5)
            np.testing.assert_allclose(got[b, n], reference(
                att, targets[b:b + 1, n], k, mask.numpy()[b:b + 1, n], v)[0], atol=1e-5)


def test_attend_selected_equals_attend_gathered():
    B, L, N, K = 3, 12, 4, 5
    rng, att, keys, values, targets = shared_history(5, B, L, N)
    idx = tf.constant(np.stack([[rng.choice(L, K, replace=False) for _ in range(N)]
                                for _ in range(B)]), tf.int32)
    mask = np.asarray(rng.random((B, N, K)) < 0.7)
    mask[0, 0] = False  # a target with nothing selected gives zeros in both
    a = att.attend_gathered(targets, keys, values, idx, tf.constant(mask)).numpy()
    b = att.attend_selected(targets, keys, values, idx, tf.constant(mask)).numpy()
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(b[0, 0], 0.0, atol=1e-7)
