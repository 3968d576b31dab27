"""The FAISS-trained quantizers (`seminar_tf.pq.quantizer`): codes, the served layout (the
stock-op decode and lookup scoring of `PQLookupAttention` reproduce the quantizer's own
reconstruction), state round trips, determinism, score-aware whitening, and FAISS PQ against
a plain float64 numpy k-means PQ (the builder it replaced) at equal bytes."""
import numpy as np
import pytest
import tensorflow as tf

from seminar_tf.config import PQConfig
from seminar_tf.layers.retrieval.pq import pq_decode, pq_item_scores
from seminar_tf.pq.quantizer import QUANTIZERS, Quantizer, codebook_layout, make_quantizer


def _data(n=600, P=2, d=8, seed=0):
    rng = np.random.default_rng(seed)
    scale = np.linspace(2.0, 0.2, d)  # anisotropic keys
    return (rng.normal(size=(n, P, d)) * scale).astype(np.float32)


def _queries(n=500, d=8, seed=1):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, d)) * np.linspace(0.1, 3.0, d)).astype(np.float32)


@pytest.mark.parametrize("method", sorted(QUANTIZERS))
@pytest.mark.parametrize("whiten", [False, True])
def test_codes_and_the_served_layout(method, whiten):
    parts = _data()
    q = QUANTIZERS[method](4, 16, iters=8).fit(parts, _queries() if whiten else None)
    codes = q.encode(parts)
    cfg = PQConfig(method=method, whiten=whiten, num_subspaces=4, combine_parts=False)
    assert codes.dtype == np.uint8 and codes.shape[1:] == codebook_layout(cfg, 2)
    assert q.codebooks.shape[:2] == codes.shape[1:]
    rec = q.decode(codes)  # (N, P, d) in the original key space
    assert rec.shape == parts.shape
    served = pq_decode(tf.constant(q.codebooks), tf.constant(codes)).numpy()
    np.testing.assert_allclose(served, rec.sum(1), atol=1e-4)
    u = _queries(3)
    lut = pq_item_scores(tf.constant(u), tf.constant(q.codebooks),
                         tf.constant(np.broadcast_to(codes[None], (3,) + codes.shape))).numpy()
    np.testing.assert_allclose(lut, np.einsum("bd,nd->bn", u, rec.sum(1)), atol=1e-3)
    # the quantizer's saved state encodes identically (the Beam job's workers use it)
    np.testing.assert_array_equal(Quantizer.from_state(q.state()).encode(parts), codes)
    err = (parts - rec).astype(np.float64)
    assert np.mean((_queries(50) @ err.reshape(-1, 8).T) ** 2) < 0.5 * np.mean(
        (_queries(50) @ parts.reshape(-1, 8).T) ** 2)


def test_training_is_deterministic():
    parts = _data(seed=4)
    a = make_quantizer(PQConfig(num_subspaces=4, num_codewords=16, kmeans_iters=6))
    b = make_quantizer(PQConfig(num_subspaces=4, num_codewords=16, kmeans_iters=6))
    a.fit(parts, _queries())
    b.fit(parts, _queries())
    np.testing.assert_array_equal(a.codebooks, b.codebooks)
    np.testing.assert_array_equal(a.encode(parts), b.encode(parts))


def test_whitening_lowers_the_score_error():
    """Score-aware codebooks: the error of <u, k> over queries u drawn like the training
    ones falls when the keys are quantized in the metric of the query covariance."""
    parts = _data(n=2000, P=1, d=8, seed=5)
    u = _queries(2000, seed=6)
    errors = []
    for queries in (None, u[:1000]):
        q = QUANTIZERS["rq"](2, 16, iters=10).fit(parts, queries)
        diff = (parts - q.decode(q.encode(parts)))[:, 0].astype(np.float64)
        errors.append(float(np.mean((u[1000:] @ diff.T) ** 2)))
    assert errors[1] < 0.8 * errors[0], errors


def test_fewer_items_than_codewords_is_lossless():
    rng = np.random.default_rng(2)
    base = rng.normal(size=(12, 1, 8)).astype(np.float32)
    parts = base[rng.integers(0, 12, size=40)]
    for method in ("pq", "rq"):
        q = QUANTIZERS[method](2, 16, iters=10).fit(parts)
        np.testing.assert_allclose(q.decode(q.encode(parts)), parts, atol=1e-5)


def numpy_pq(parts, S, C, iters, seed=0):
    """The replaced builder, as a float64 reference: k-means++ seeding and Lloyd iterations
    per sub-space; returns the reconstruction."""
    rng = np.random.default_rng(seed)
    n, d = parts.shape
    w = d // S
    rec = np.zeros_like(parts, np.float64)
    for s in range(S):
        x = parts[:, s * w:(s + 1) * w].astype(np.float64)
        c = [x[rng.integers(n)]]
        for _ in range(1, C):
            dist = np.min(((x[:, None] - np.array(c)[None]) ** 2).sum(-1), 1)
            c.append(x[np.searchsorted(np.cumsum(dist), rng.random() * dist.sum())])
        c = np.array(c)
        for _ in range(iters):
            assign = np.argmin(((x[:, None] - c[None]) ** 2).sum(-1), 1)
            for j in range(C):
                if np.any(assign == j):
                    c[j] = x[assign == j].mean(0)
        rec[:, s * w:(s + 1) * w] = c[np.argmin(((x[:, None] - c[None]) ** 2).sum(-1), 1)]
    return rec


def _recall(parts, rec, u, k=50):
    exact = u @ parts.T
    approx = u @ rec.T
    return np.mean([len(set(np.argsort(-e)[:k]) & set(np.argsort(-a)[:k])) / k
                    for e, a in zip(exact, approx)])


def test_faiss_pq_matches_the_numpy_kmeans_it_replaced_at_equal_bytes():
    parts = _data(n=1500, P=1, d=8, seed=7)[:, 0]
    u = _queries(1000, seed=8)
    ref = numpy_pq(parts, 4, 16, iters=15)
    q = QUANTIZERS["pq"](4, 16, iters=15).fit(parts[:, None])
    got = q.decode(q.encode(parts[:, None]))[:, 0]
    err = lambda r: float(np.mean(np.sum((parts - r) ** 2, -1)))  # noqa: E731
    assert err(got) <= 1.05 * err(ref)
    assert _recall(parts, got, u) >= _recall(parts, ref, u) - 0.02
    # and the default (score-aware residual) beats both at the same 4 bytes
    rq = make_quantizer(PQConfig(num_subspaces=4, num_codewords=16, kmeans_iters=15))
    rq.fit(parts[:, None], _queries(500, seed=9))
    assert _recall(parts, rq.decode(rq.encode(parts[:, None]))[:, 0], u) > \
        _recall(parts, got, u)


def test_bad_configuration():
    with pytest.raises(ValueError, match="must divide"):
        QUANTIZERS["pq"](3).fit(np.zeros((40, 1, 8), np.float32))
    for c in (300, 12):
        with pytest.raises(ValueError, match="power of two"):
            QUANTIZERS["rq"](2, num_codewords=c)
    with pytest.raises(ValueError, match="pq.method"):
        make_quantizer(type("Cfg", (), {"method": "lsh"})())
