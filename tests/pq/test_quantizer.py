import numpy as np
import pytest

from seminar_tf.pq.quantizer import ProductQuantizer, encode_with, kmeans


def lloyd_reference(x, c, iters):
    """Plain-loop float64 Lloyd iterations from given centroids (no empty clusters here)."""
    c = c.copy()
    for _ in range(iters):
        assign = [int(np.argmin([np.sum((p - q) ** 2) for q in c])) for p in x]
        for j in range(len(c)):
            members = [p for p, a in zip(x, assign) if a == j]
            if members:
                c[j] = np.mean(members, 0)
    return c


def test_kmeans_objective_decreases_and_matches_reference():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(loc, 0.3, size=(30, 2)) for loc in ((0, 0), (3, 3), (0, 4))])
    c, hist = kmeans(x, 3, iters=10, seed=1)
    assert all(b <= a + 1e-12 for a, b in zip(hist, hist[1:]))
    assert hist[-1] < hist[0]
    # same seeding, then the reference Lloyd loop converges to the same centroids
    from seminar_tf.pq.quantizer import kmeans_pp_init
    init = kmeans_pp_init(x, 3, np.random.default_rng(1))
    ref = lloyd_reference(x, init, 10)
    np.testing.assert_allclose(np.sort(c, 0), np.sort(ref, 0), atol=1e-9)


def test_fewer_points_than_codewords_and_empty_clusters():
    x = np.array([[0.0, 0.0], [1.0, 1.0], [1.0, 1.0], [5.0, 5.0]])
    c, hist = kmeans(x, 8, iters=5)
    assert c.shape == (8, 2)
    assert hist[-1] == 0.0  # every distinct point is a centroid: lossless


def test_lossless_when_codewords_cover_distinct_subvectors():
    rng = np.random.default_rng(2)
    base = rng.normal(size=(12, 2, 8)).astype(np.float32)
    parts = base[rng.integers(0, 12, size=100)]
    pq = ProductQuantizer(num_subspaces=4, num_codewords=16, iters=5).fit(parts)
    codes = pq.encode(parts)
    assert codes.dtype == np.uint8 and codes.shape == (100, 2, 4)
    np.testing.assert_allclose(pq.decode(codes), parts, atol=1e-6)
    assert pq.quantization_error(parts) < 1e-10


def test_quantization_error_falls_with_more_codewords():
    rng = np.random.default_rng(3)
    parts = rng.normal(size=(500, 1, 8))
    errs = [ProductQuantizer(2, c, iters=10).fit(parts).quantization_error(parts)
            for c in (4, 16, 64)]
    assert errs[0] > errs[1] > errs[2]


def test_encode_with_picks_nearest():
    books = np.array([[[[0.0], [10.0]]]], np.float32)  # P=1, S=1, C=2, w=1
    sub = np.array([[[[1.0]]], [[[9.0]]], [[[4.9]]]])
    assert encode_with(books, sub)[:, 0, 0].tolist() == [0, 1, 0]


def test_bad_configuration():
    with pytest.raises(ValueError, match="must divide"):
        ProductQuantizer(3).fit(np.zeros((4, 1, 8)))
    with pytest.raises(ValueError, match="num_codewords"):
        ProductQuantizer(2, num_codewords=300).fit(np.zeros((4, 1, 8)))
