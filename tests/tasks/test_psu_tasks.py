"""PSU objectives against float64 numpy references (exact loss values, padding present)."""
import numpy as np
import pytest
import tensorflow as tf

from seminar_tf.tasks.psu import (MultiModalAlignmentTask, NextPairTask,
                                  QueryItemRelevanceTask)

TAU = 0.1


def _cos(a, b):
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return a @ b.T


def _nce(logits_row, pos, allowed):
    """-log(exp(pos) / sum over allowed columns (pos included))."""
    vals = logits_row[allowed]
    return -(logits_row[pos] - np.log(np.sum(np.exp(vals))))


def test_alignment_matches_reference_with_padding_and_duplicates():
    rng = np.random.default_rng(0)
    N, d = 6, 4
    a, b = rng.normal(size=(N, d)), rng.normal(size=(N, d))
    valid = np.array([1, 1, 0, 1, 1, 1], bool)  # row 2 is padding
    ids = np.array([5, 6, 0, 7, 5, 8])  # rows 0 and 4 are the same item
    task = MultiModalAlignmentTask("a")
    got = float(task(tf.constant(a, tf.float32), tf.constant(b, tf.float32), tf.constant(valid),
                     tf.constant(ids), TAU))
    ref = []
    for x, y in ((a, b), (b, a)):
        lg = _cos(x, y) / TAU
        losses = []
        for i in np.flatnonzero(valid):
            allowed = valid & ((ids != ids[i]) | (np.arange(N) == i))
            losses.append(_nce(lg[i], i, allowed))
        ref.append(np.mean(losses))
    assert got == pytest.approx(0.5 * sum(ref), rel=1e-4)


def test_next_pair_matches_reference():
    rng = np.random.default_rng(1)
    N, S, d = 5, 3, 4
    ctx, pos, neg = rng.normal(size=(N, d)), rng.normal(size=(N, d)), rng.normal(size=(S, d))
    valid = np.array([1, 0, 1, 1, 1], bool)
    ids = np.array([2, 0, 3, 4, 3])
    neg_ids = np.array([9, 4, 10])  # sampled item 4 is row 3's own item: not a negative
    task = NextPairTask("n")
    got = float(task(*(tf.constant(x, tf.float32) for x in (ctx, pos)), tf.constant(valid),
                     tf.constant(ids), tf.constant(neg, tf.float32), tf.constant(neg_ids), TAU))
    lg = np.concatenate([_cos(ctx, pos), _cos(ctx, neg)], 1) / TAU
    losses = []
    for i in np.flatnonzero(valid):
        allowed = np.concatenate([valid & ((ids != ids[i]) | (np.arange(N) == i)),
                                  neg_ids != ids[i]])
        losses.append(_nce(lg[i], i, allowed))
    assert got == pytest.approx(np.mean(losses), rel=1e-4)


def _relevance_inputs(seed=2):
    rng = np.random.default_rng(seed)
    B, T, L, d = 2, 2, 4, 3
    q, it = rng.normal(size=(B, T, d)), rng.normal(size=(B, T, d))
    valid = np.array([[1, 0], [1, 1]], bool)
    ids = np.array([[3, 4], [5, 6]])
    seq, seq_ids = rng.normal(size=(B, L, d)), np.array([[0, 7, 3, 4], [8, 5, 6, 9]])
    seq_valid = seq_ids != 0
    return q, it, valid, ids, seq, seq_ids, seq_valid


def _relevance_reference(q, it, valid, ids, seq, seq_ids, seq_valid):
    B, T, d = q.shape
    qf, itf, vf, idf = q.reshape(-1, d), it.reshape(-1, d), valid.reshape(-1), ids.reshape(-1)
    losses = []
    for n in np.flatnonzero(vf):
        b = n // T
        s_pos = _cos(qf[n:n + 1], itf[n:n + 1])[0, 0] / TAU
        batch_neg = [_cos(qf[n:n + 1], itf[m:m + 1])[0, 0] / TAU for m in range(len(vf))
                     if m != n and vf[m] and idf[m] != idf[n]]
        seq_neg = [_cos(qf[n:n + 1], seq[b, l:l + 1])[0, 0] / TAU for l in range(seq.shape[1])
                   if seq_valid[b, l] and seq_ids[b, l] != idf[n]]
        negs = np.exp(batch_neg + seq_neg)
        losses.append(-np.log(np.exp(s_pos) / (np.exp(s_pos) + negs.sum())))
    return np.mean(losses)


def test_relevance_matches_reference():
    x = _relevance_inputs()
    task = QueryItemRelevanceTask("r")
    got = float(task(*(tf.constant(v, tf.float32) if v.dtype == float else tf.constant(v)
                       for v in x), TAU))
    assert got == pytest.approx(_relevance_reference(*x), rel=1e-4)


def test_relevance_loss_falls_as_positives_align():
    """Sign check: moving each query towards its clicked item lowers the loss."""
    q, it, valid, ids, seq, seq_ids, seq_valid = _relevance_inputs(3)
    task = QueryItemRelevanceTask("r")
    losses = []
    for mix in (0.0, 0.5, 0.9):
        qq = (1 - mix) * q + mix * it
        losses.append(float(task(tf.constant(qq, tf.float32), tf.constant(it, tf.float32),
                                 tf.constant(valid), tf.constant(ids),
                                 tf.constant(seq, tf.float32), tf.constant(seq_ids),
                                 tf.constant(seq_valid), TAU)))
    assert losses[0] > losses[1] > losses[2]


def test_all_padding_batch_gives_zero_not_nan():
    task = MultiModalAlignmentTask("a")
    z = tf.zeros([3, 4])
    out = float(task(z, z, tf.zeros([3], tf.bool), tf.zeros([3], tf.int64), TAU))
    assert out == 0.0


def test_in_batch_negatives_equals_the_numpy_rule():
    """Column j is a negative of row i unless it holds row i's item; the diagonal (the
    positive) stays in, repeated ids included."""
    from seminar_tf.tasks.psu import in_batch_negatives
    ids = np.array([5, 3, 5, 7, 3, 3])
    want = (ids[:, None] != ids[None, :]) | np.eye(len(ids), dtype=bool)
    np.testing.assert_array_equal(in_batch_negatives(tf.constant(ids)).numpy(), want)
    assert in_batch_negatives(tf.zeros([0], tf.int64)).shape == (0, 0)


def _two_direction_alignment(a, b, valid, ids):
    """The alignment loss as its definition reads: two (N, N) matrices, a -> b and b -> a,
    each row masked to other items' valid columns (float64)."""
    n = tf.shape(a)[0]
    allowed = ((ids[:, None] != ids[None, :]) | tf.eye(n, dtype=tf.bool)) & valid[None, :]
    w = tf.cast(valid, a.dtype)
    out = []
    for x, y in ((a, b), (b, a)):
        lg = tf.matmul(tf.math.l2_normalize(x, -1), tf.math.l2_normalize(y, -1),
                       transpose_b=True) / TAU
        lse = tf.reduce_logsumexp(tf.where(allowed, lg, -1e9), -1)
        out.append(tf.reduce_sum((lse - tf.linalg.diag_part(lg)) * w) / tf.reduce_sum(w))
    return 0.5 * (out[0] + out[1])


def test_alignment_gradients_and_accuracy_equal_the_two_direction_reference():
    """One matrix serves both directions: gradients equal the two-matrix float64 form."""
    rng = np.random.default_rng(4)
    N, d = 9, 5
    a, b = rng.normal(size=(N, d)), rng.normal(size=(N, d))
    valid = np.array([1, 1, 0, 1, 1, 1, 0, 1, 1], bool)
    ids = np.array([5, 6, 0, 7, 5, 8, 0, 6, 9])
    task = MultiModalAlignmentTask("a")
    va, vb = tf.Variable(a, dtype=tf.float32), tf.Variable(b, dtype=tf.float32)
    with tf.GradientTape() as tape:
        got = task(va, vb, tf.constant(valid), tf.constant(ids), TAU)
    ga, gb = tape.gradient(got, [va, vb])
    ra, rb = tf.Variable(a), tf.Variable(b)
    with tf.GradientTape() as tape:
        want = _two_direction_alignment(ra, rb, tf.constant(valid), tf.constant(ids))
    wa, wb = tape.gradient(want, [ra, rb])
    assert float(got) == pytest.approx(float(want), rel=1e-5)
    np.testing.assert_allclose(ga.numpy(), wa.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gb.numpy(), wb.numpy(), rtol=1e-4, atol=1e-5)
    assert np.abs(gb.numpy()[~valid]).max() == 0  # padding rows get no gradient
    lg = _cos(a, b) / TAU
    hits = [np.argmax(np.where(valid & ((ids != ids[i]) | (np.arange(N) == i)), lg[i],
                               -np.inf)) == i for i in np.flatnonzero(valid)]
    assert float(task.accuracy.result()) == pytest.approx(np.mean(hits))
