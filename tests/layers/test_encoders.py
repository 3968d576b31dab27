import numpy as np
import tensorflow as tf

from seminar_tf.layers.encoders import (AttributeEncoder, GatedFusion, MultiModalItemEncoder,
                                        PairFusion, PretrainedVectorEncoder, QueryEncoder,
                                        QueryItemPairEncoder, TokenBagEncoder)

from helpers import assert_round_trip


def test_query_encoder_masked_mean_and_no_query(tmp_path):
    enc = QueryEncoder(10, 4)
    tokens = tf.constant([[3, 5, 0], [0, 0, 0], [7, 0, 0]], tf.int64)
    vec, has = enc(tokens)
    table = enc.token_embedding.embeddings.numpy().astype(np.float64)
    np.testing.assert_allclose(vec[0], (table[3] + table[5]) / 2, atol=1e-6)
    np.testing.assert_allclose(vec[1], enc.no_query.numpy(), atol=1e-6)
    np.testing.assert_allclose(vec[2], table[7], atol=1e-6)
    assert has.numpy().tolist() == [True, False, True]
    assert_round_trip(enc, lambda l, x: l(x), tokens, tmp_path)


def test_attribute_encoder_ignores_padding(tmp_path):
    enc = AttributeEncoder(10, 4)
    ids = tf.constant([[2, 0, 3], [0, 0, 0]], tf.int64)
    out = enc(ids).numpy()
    t = enc.embedding.embeddings.numpy()
    np.testing.assert_allclose(out[0], t[2] + t[3], atol=1e-6)
    np.testing.assert_allclose(out[1], 0.0)
    assert_round_trip(enc, lambda l, x: l(x), ids, tmp_path)


def test_pretrained_vectors_frozen_saved_and_masked(tmp_path):
    enc = PretrainedVectorEncoder(6, 3, 4)
    vecs = np.arange(18, dtype=np.float32).reshape(6, 3)
    present = np.array([0, 0, 1, 1, 0, 1], bool)
    enc.set_table(vecs, present)
    out, ok = enc(tf.constant([2, 4, 5], tf.int64))
    w, b = enc.projection.get_weights()
    np.testing.assert_allclose(out[0], vecs[2] @ w + b, rtol=1e-5)
    np.testing.assert_allclose(out[1], 0.0)  # missing vector: masked, not a fake zero input
    assert ok.numpy().tolist() == [True, False, True]
    assert {v.name.split("/")[-1] for v in enc.non_trainable_variables} == {"table:0",
                                                                         "present:0"}
    assert_round_trip(enc, lambda l, x: l(x), tf.constant([2, 4, 5], tf.int64), tmp_path,
                      build_clone=lambda c: c.build(None))


def test_token_bag_fallback(tmp_path):
    enc = TokenBagEncoder(4, 3, 10, 4)
    enc.set_table(np.array([[0, 0, 0], [0, 0, 0], [3, 4, 0], [0, 0, 0]]))
    out, ok = enc(tf.constant([2, 3], tf.int64))
    t = enc.embedding.embeddings.numpy()
    np.testing.assert_allclose(out[0], (t[3] + t[4]) / 2, atol=1e-6)
    assert ok.numpy().tolist() == [True, False]
    assert_round_trip(enc, lambda l, x: l(x), tf.constant([2, 3], tf.int64), tmp_path)


def test_gated_fusion_per_item_softmax_over_valid_modalities(tmp_path):
    rng = np.random.default_rng(0)
    fusion = GatedFusion(3)
    emb = rng.normal(size=(2, 5, 3, 4)).astype(np.float32)
    valid = rng.random((2, 5, 3)) < 0.85
    valid[1] = True
    valid[0, 0] = False
    fused, gates = fusion(tf.constant(emb), tf.constant(valid))
    w, b = fusion.gate.get_weights()
    logits = emb.reshape(2, 5, 12).astype(np.float64) @ w + b
    with np.errstate(invalid="ignore", divide="ignore"):  # rows with no valid modality
        logits = np.where(valid, logits, -np.inf)
        g = np.exp(logits - logits.max(-1, keepdims=True))
        g = np.nan_to_num(g / g.sum(-1, keepdims=True)) * valid
    np.testing.assert_allclose(gates, g, atol=1e-5)
    np.testing.assert_allclose(fused, np.einsum("bim,bimd->bid", g, emb), atol=1e-5)
    assert np.all(np.isfinite(fused.numpy()))
    # the gate depends on the item (not one global constant)
    assert np.std(gates.numpy()[valid.all(-1)][:, 0]) > 1e-3
    assert_round_trip(fusion, lambda l, x: l(*x), (tf.constant(emb), tf.constant(valid)),
                      tmp_path)


def test_item_encoder_projections_start_as_identity(tmp_path):
    kw = dict(modalities=["id", "text", "image", "attr"], num_items=9, attr_vocab_size=7,
              query_vocab_size=5, dim=4, text_dim=3, image_dim=2, title_tokens=2)
    enc = MultiModalItemEncoder(**kw, projections=True)
    rng = np.random.default_rng(0)
    enc.set_item_table({"text": rng.normal(size=(9, 3)), "text_mask": np.ones(9, bool),
                        "image": rng.normal(size=(9, 2)), "image_mask": np.arange(9) % 2 == 0})
    ids = tf.constant([[2, 3, 0]], tf.int64)
    attrs = tf.constant([[[1, 2], [3, 0], [0, 0]]], tf.int64)
    out = enc(ids, attrs)
    np.testing.assert_allclose(out["modalities"], out["raw"], atol=1e-6)  # G_m = I at init
    assert out["valid"].numpy().tolist() == [[[True, True, True, True],
                                              [True, True, False, True],
                                              [False, False, False, False]]]
    np.testing.assert_allclose(out["fused"][0, 2], 0.0)  # padding position
    assert_round_trip(enc, lambda l, x: l(*x)["fused"], (ids, attrs), tmp_path)


def test_pair_fusion_and_key_parts_sum_to_pair(tmp_path):
    pf = PairFusion(0.25)
    q, i = tf.ones((2, 3)), tf.zeros((2, 3))
    np.testing.assert_allclose(pf(q, i), 0.25)
    enc = QueryItemPairEncoder(dict(modalities=["id", "attr"], num_items=9, attr_vocab_size=7,
                                    query_vocab_size=5, dim=4), query_vocab_size=5, dim=4)
    ids = tf.constant([[2, 3]], tf.int64)
    attrs = tf.constant([[[1, 2], [3, 0]]], tf.int64)
    query = tf.constant([[[1, 0], [0, 0]]], tf.int64)
    out = enc(ids, attrs, query)
    item_parts, query_part = enc.key_parts(out)
    np.testing.assert_allclose(tf.reduce_sum(item_parts, -2) + query_part, out["pair"],
                               atol=1e-6)
    assert_round_trip(enc, lambda l, x: l(*x)["pair"], (ids, attrs, query), tmp_path)


def test_query_encoder_present_tokens_path_equals_the_dense_path():
    """The default path gathers only present tokens; values and gradients equal the dense
    masked mean (the XLA form), with empty queries, full queries and padding rows."""
    import numpy as np
    import tensorflow as tf
    from seminar_tf.layers.encoders import QueryEncoder
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, 50, (3, 7, 5)) * (rng.random((3, 7, 5)) < 0.3)
    tokens[0, 0] = 0
    tokens[1, 2] = rng.integers(1, 50, 5)
    tokens = tf.constant(tokens)
    enc = QueryEncoder(50, 8)
    got = {}
    for sparse in (True, False):
        enc.sparse = sparse
        with tf.GradientTape() as tape:
            vec, has = enc(tokens)
            loss = tf.reduce_sum(vec * tf.range(8, dtype=tf.float32))
        grad = tape.gradient(loss, enc.token_embedding.embeddings)
        got[sparse] = (vec.numpy(), has.numpy(), tf.convert_to_tensor(grad).numpy())
    for a, b in zip(got[True], got[False]):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert not got[True][1][0, 0] and got[True][1][1, 2]
