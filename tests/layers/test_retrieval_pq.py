import numpy as np
import pytest
import tensorflow as tf

from seminar_tf import features as F
from seminar_tf.models.registry import build_model, model_config
from seminar_tf.pq.build import build_codebooks, item_key_parts
from seminar_tf.layers.retrieval.pq import pq_item_scores

from helpers import assert_nested_close, assert_round_trip, random_batch, tiny_config, \
    tiny_item_table


def test_lut_scoring_equals_decode_then_dot():
    rng = np.random.default_rng(0)
    P, S, C, w, B, L = 3, 4, 16, 2, 5, 7
    books = rng.normal(size=(P, S, C, w)).astype(np.float32)
    codes = rng.integers(0, C, size=(B, L, P, S)).astype(np.uint8)
    u = rng.normal(size=(B, S * w)).astype(np.float32)
    got = pq_item_scores(tf.constant(u), tf.constant(books), tf.constant(codes)).numpy()
    decoded = books[np.arange(P)[:, None], np.arange(S)[None, :], codes.astype(int)]
    keys = decoded.reshape(B, L, P, S * w).sum(2).astype(np.float64)
    np.testing.assert_allclose(got, np.einsum("bd,bld->bl", u.astype(np.float64), keys),
                               atol=1e-4)


def _pq_pair(name="seminar", **pq):
    """An exact ranker and a PQ ranker with its weights restored (the load_model path)."""
    import tempfile
    cfg = model_config(name, tiny_config()).replace(pq=dict(num_subspaces=2, **pq))
    table = tiny_item_table(cfg)
    exact = build_model(cfg, item_table=table)
    pqm = build_model(cfg.replace(model={"gsu": "pq"}))
    with tempfile.TemporaryDirectory() as d:
        exact.save_weights(d + "/w")
        pqm.load_weights(d + "/w").expect_partial()
    quant, codes = build_codebooks(exact, table["attrs"], cfg.pq)
    pqm.gsu.set_codebooks(quant.codebooks, codes)
    return cfg, table, exact, pqm, quant, codes


def _consistent(batch, table):
    """Attributes as a function of the item id (what the item table guarantees in real data;
    the PQ code table is keyed by item id)."""
    attrs = tf.constant(table["attrs"])
    batch = dict(batch)
    batch[F.HIST_ATTRS] = tf.gather(attrs, batch[F.HIST_ITEMS])
    batch[F.TARGET_ATTRS] = tf.gather(attrs, batch[F.TARGET_ITEM])
    return batch


def test_lossless_codebooks_give_exact_scores_and_outputs():
    # 40 items < 256 codewords: every distinct sub-vector is a codeword -> lossless
    cfg, table, exact, pqm, quant, codes = _pq_pair()
    batch = _consistent(random_batch(cfg, batch=8), table)
    enc_t = exact.encode_target(batch)
    hist = exact.encode_behaviours(batch)
    ref = exact.gsu.scores(exact.retrieval_inputs(batch, enc_t, hist)).numpy()
    got = pqm.gsu.scores(pqm.retrieval_inputs(batch, pqm.encode_target(batch))).numpy()
    mask = batch[F.HIST_ITEMS].numpy() != 0
    np.testing.assert_allclose(got[mask], ref[mask], atol=1e-5)
    assert_nested_close(exact(batch), pqm(batch), atol=1e-5)


@pytest.mark.parametrize("combine", [True, False])
@pytest.mark.parametrize("method,whiten", [("pq", False), ("opq", False), ("rq", True)])
def test_every_method_and_layout_also_lossless(method, whiten, combine):
    cfg, table, exact, pqm, quant, codes = _pq_pair(method=method, whiten=whiten,
                                                    combine_parts=combine)
    parts = 1 if combine else len(exact.pair_encoder.item_encoder.modalities)
    compact = method == "pq" and not whiten  # else one full-d codebook per (part, S)
    assert codes.shape[1:] == ((parts, 2) if compact else (parts * 2, 1))
    batch = _consistent(random_batch(cfg, batch=8, seed=3), table)
    assert_nested_close(exact(batch), pqm(batch), atol=1e-5)


def test_pq_top_k_never_selects_padding():
    cfg, table, exact, pqm, quant, codes = _pq_pair(num_codewords=4)  # lossy on purpose
    batch = random_batch(cfg, batch=8, seed=5)
    out = pqm.retrieve(batch)
    mask = batch[F.HIST_ITEMS].numpy() != 0
    idx, valid = out["indices"].numpy(), out["valid"].numpy()
    for b in range(8):
        assert mask[b][idx[b][valid[b]]].all()
        assert valid[b].sum() == min(cfg.model.top_k, mask[b].sum())


def test_precomputed_behaviour_codes_path_matches_code_table():
    cfg, table, exact, pqm, quant, codes = _pq_pair(num_codewords=8)
    batch = random_batch(cfg, batch=4, seed=6)
    inputs = pqm.retrieval_inputs(batch, pqm.encode_target(batch))
    a = pqm.gsu.scores(inputs)
    inputs["hist_codes"] = tf.gather(tf.constant(codes), batch[F.HIST_ITEMS])
    np.testing.assert_allclose(pqm.gsu.scores(inputs), a, atol=1e-6)


def test_layer_saved_model_round_trip(tmp_path):
    cfg, table, exact, pqm, quant, codes = _pq_pair(num_codewords=8)
    batch = random_batch(cfg, batch=4, seed=7)
    inputs = pqm.retrieval_inputs(batch, pqm.encode_target(batch))
    inputs = {k: v for k, v in inputs.items()}
    assert pqm.gsu.item_codes.dtype == tf.uint8
    assert_round_trip(pqm.gsu, lambda l, x: l(x), inputs, tmp_path,
                      build_clone=lambda c: (c.build(), c.attention.build(),
                                             c.pair_encoder(batch[F.HIST_ITEMS],
                                                            batch[F.HIST_ATTRS],
                                                            batch[F.HIST_QUERY])))


def test_item_key_parts_sum_to_item_keys():
    cfg = model_config("seminar", tiny_config())
    table = tiny_item_table(cfg)
    model = build_model(cfg, item_table=table)
    parts = item_key_parts(model, table["attrs"])
    ids = tf.range(cfg.data.item_vocab_size, dtype=tf.int64)
    enc = model.pair_encoder(ids, tf.constant(table["attrs"]),
                             tf.zeros([cfg.data.item_vocab_size, 3], tf.int64))
    a = float(model.pair_encoder.pair_fusion.weight_of_query())
    np.testing.assert_allclose(parts.sum(1), (1 - a) * enc["item"].numpy(), atol=1e-5)


def test_query_part_never_touches_the_whole_query_vocabulary():
    """The traced PQ scoring reads the token table only through gathers (the tokens in the
    request), so its cost does not grow with the query vocabulary."""
    cfg, table, exact, pqm, quant, codes = _pq_pair(num_codewords=8)
    batch = random_batch(cfg, batch=4, seed=8)
    inputs = pqm.retrieval_inputs(batch, pqm.encode_target(batch))
    fn = tf.function(lambda x: pqm.gsu.scores(x))
    graph = fn.get_concrete_function(inputs).graph
    handle = pqm.gsu.pair_encoder.query_encoder.token_embedding.embeddings.handle
    captured = [t for v, t in graph.captures if v is handle]
    assert captured, "the token table is not used at all"
    readers = {op.type for op in graph.get_operations() if any(
        inp is captured[0] for inp in op.inputs)}
    assert readers == {"ResourceGather"}, readers  # no ReadVariableOp of the full table
