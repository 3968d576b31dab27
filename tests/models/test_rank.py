"""The shared-history `rank` path equals the per-candidate path for every GSU.

Equal to 1e-5 where the GSU's selection is determined (no float noise of `GSU_NOISE` can
flip it under the tie rule), within `UNDETERMINED_BOUND` elsewhere (tests/helpers.py)."""
import numpy as np
import pytest
import tensorflow as tf

from seminar_tf import features as F
from seminar_tf.models.registry import build_model, model_config

from helpers import (GSU_NOISE, assert_paths_agree, gsu_determined, random_batch,
                     tiny_config, tiny_item_table)

CONTEXT = (F.USER_ID, F.TARGET_QUERY, F.TARGET_SOURCE) + F.HISTORY_FEATURES


def distinct_batch(cfg, batch, seed):
    """random_batch with distinct items per history (no equal keys, so no ties at the
    top-K boundary) and every history length from empty to full."""
    out = {k: v.numpy() for k, v in random_batch(cfg, batch=batch, seed=seed).items()}
    rng = np.random.default_rng(seed + 1)
    items = out[F.HIST_ITEMS]
    for b in range(batch):
        n = int((items[b] != 0).sum())
        if n:
            items[b, -n:] = rng.choice(np.arange(2, cfg.data.item_vocab_size), n,
                                       replace=False)
    return out


def repeated_batch(cfg, batch, seed):
    """random_batch whose histories repeat 3 behaviours (item, attributes and query equal,
    time gaps and sources not): equal keys, so exact ties at the top-K boundary."""
    out = {k: v.numpy() for k, v in random_batch(cfg, batch=batch, seed=seed).items()}
    rng = np.random.default_rng(seed + 2)
    items = out[F.HIST_ITEMS]
    for b in range(batch):
        real = np.flatnonzero(items[b])
        if len(real):
            pool = rng.choice(real, size=min(3, len(real)), replace=False)
            src = rng.choice(pool, size=len(real))
            for key in (F.HIST_ITEMS, F.HIST_ATTRS, F.HIST_QUERY):
                out[key][b, real] = out[key][b, src]
    return out


def split(batch, cfg, n, seed):
    """(context, candidates, per-candidate features) for n random candidates per row."""
    rng = np.random.default_rng(seed)
    B = len(batch[F.USER_ID])
    items = rng.integers(2, cfg.data.item_vocab_size, size=(B, n))
    attrs = rng.integers(1, cfg.data.attr_vocab_size, size=(B, n, cfg.data.num_attrs))
    context = {k: tf.constant(batch[k]) for k in CONTEXT}
    cands = {F.TARGET_ITEM: tf.constant(items), F.TARGET_ATTRS: tf.constant(attrs)}
    flat = {k: tf.constant(np.repeat(batch[k], n, axis=0)) for k in CONTEXT}
    flat[F.TARGET_ITEM] = tf.constant(items.reshape(-1))
    flat[F.TARGET_ATTRS] = tf.constant(attrs.reshape(B * n, -1))
    return context, cands, flat


def _model(name, gsu=None, **pq):
    cfg = model_config(name, tiny_config())
    if gsu:
        cfg = cfg.replace(model={"gsu": gsu}, pq=dict(num_subspaces=2, num_codewords=8, **pq))
    model = build_model(cfg, item_table=tiny_item_table(cfg))
    if gsu == "pq":
        rng = np.random.default_rng(3)
        books = model.gsu.codebooks
        model.gsu.set_codebooks(rng.normal(size=books.shape).astype(np.float32),
                                rng.integers(0, 8, size=model.gsu.item_codes.shape))
    return model, cfg


CASES = [("twin", None), ("seminar", None), ("din", None), ("sim_hard", None),
         ("sim_soft", None), ("eta", None), ("qin", None), ("full_attention", None),
         ("seminar", "pq")]


@pytest.mark.parametrize("name,gsu", CASES)
@pytest.mark.parametrize("n", [1, 7])
@pytest.mark.parametrize("dense_esu", [True, False])
@pytest.mark.parametrize("histories", ["distinct", "repeated"])
def test_rank_equals_per_candidate(name, gsu, n, dense_esu, histories):
    model, cfg = _model(name, gsu)
    model.rank_dense_esu = dense_esu  # both ESU formulations of the shared-history path
    make = distinct_batch if histories == "distinct" else repeated_batch
    batch = make(cfg, batch=8, seed=n)  # lengths 0, L, 1, L/2, 3, L, 2, L-1
    context, cands, flat = split(batch, cfg, n, seed=n)
    ranked = model.rank(context, cands)
    per = model(flat)
    determined = gsu_determined(model, flat)
    for key in ("score", "logit", *cfg.model.tasks):
        assert ranked[key].shape == (8, n)
        assert_paths_agree(ranked[key].numpy(), per[key].numpy(), determined,
                           err_msg=f"{name}/{gsu}/{key}")


@pytest.mark.parametrize("name,gsu", [("twin", None), ("seminar", "pq")])
def test_gsu_path_noise_is_within_the_stated_bound(name, gsu):
    """The premise of `gsu_determined`: the two paths' GSU scores differ by less than
    GSU_NOISE / 3 of the row's largest |score| (measured <= 4e-6)."""
    model, cfg = _model(name, gsu)
    batch = repeated_batch(cfg, batch=8, seed=3)
    context, cands, flat = split(batch, cfg, 5, seed=3)
    inputs = model.retrieval_inputs(flat, model.encode_target(flat),
                                    model.encode_behaviours(flat))
    per = model.gsu.scores(inputs).numpy()
    enc = model.encode_target(flat)
    many_inputs = {"target": tf.reshape(enc["pair"], [8, 5, -1]),
                   "mask": context[F.HIST_ITEMS] != 0, "hist_items": context[F.HIST_ITEMS],
                   "hist_query": context[F.HIST_QUERY],
                   "keys": model.encode_behaviours(context)["keys"]}
    many = model.gsu.scores_many(many_inputs).numpy().reshape(40, -1)
    mask = np.repeat(context[F.HIST_ITEMS].numpy() != 0, 5, 0)
    scale = np.abs(per * mask).max(1, keepdims=True) + 1e-30
    assert (np.abs(many - per) * mask / scale).max() < GSU_NOISE / 3


@pytest.mark.parametrize("name,gsu", [("twin", None), ("seminar", "pq"), ("sim_soft", None)])
def test_rank_thousand_candidates(name, gsu):
    model, cfg = _model(name, gsu)
    batch = distinct_batch(cfg, batch=2, seed=5)
    context, cands, flat = split(batch, cfg, 1000, seed=5)
    ranked = model.rank(context, cands)["score"].numpy().reshape(-1)
    assert_paths_agree(ranked, model(flat)["score"].numpy(), gsu_determined(model, flat))


@pytest.mark.parametrize("scoring", ["decode", "lookup"])
def test_pq_rank_scoring_equals_per_candidate_scores(scoring):
    model, cfg = _model("seminar", "pq", rank_scoring=scoring)
    assert model.gsu.rank_scoring == scoring
    batch = distinct_batch(cfg, batch=8, seed=2)
    context, cands, flat = split(batch, cfg, 5, seed=2)
    enc = model.encode_target(flat)
    per = model.gsu.scores(model.retrieval_inputs(flat, enc)).numpy()
    many_inputs = {
        "target": tf.reshape(enc["pair"], [8, 5, -1]), "mask": context[F.HIST_ITEMS] != 0,
        "hist_items": context[F.HIST_ITEMS], "hist_query": context[F.HIST_QUERY]}
    many = model.gsu.scores_many(many_inputs).numpy().reshape(40, -1)
    np.testing.assert_allclose(many, per, rtol=1e-5, atol=1e-5)


def test_fallback_call_many_repeats_the_history():
    """A retriever with only a per-target `call` (the base `call_many` repeats the history N
    times) ranks like the shared-history exact GSU."""
    from seminar_tf.layers.retrieval.base import Retrieval, masked_top_k
    from seminar_tf.layers.retrieval.exact import ExactTargetRetrieval

    class PerTargetExact(ExactTargetRetrieval):
        call_many = Retrieval.call_many

        def call(self, inputs):
            return masked_top_k(self.scores(inputs), inputs["mask"], self.top_k)

    model, cfg = _model("twin")
    batch = distinct_batch(cfg, batch=8, seed=4)
    context, cands, flat = split(batch, cfg, 3, seed=4)
    expected = model.rank(context, cands)["score"].numpy()
    model.gsu = PerTargetExact(model.top_k, model.esu, name="gsu")
    assert_paths_agree(model.rank(context, cands)["score"].numpy(), expected,
                       gsu_determined(model, flat))


def test_pq_static_shape_query_part_equals_unique_tokens():
    """The XLA formulation of the PQ query part (per-behaviour query vectors) scores like the
    unique-token table, per candidate and shared-history, and compiles with XLA."""
    model, cfg = _model("seminar", "pq")
    batch = distinct_batch(cfg, batch=8, seed=6)
    context, cands, flat = split(batch, cfg, 3, seed=6)
    inputs = model.retrieval_inputs(flat, model.encode_target(flat))
    ranked = model.rank(context, cands)["score"].numpy()
    dynamic = model.gsu.scores(inputs).numpy()
    model.gsu.use_static_shapes(True)
    np.testing.assert_allclose(model.gsu.scores(inputs).numpy(), dynamic, atol=1e-5)
    np.testing.assert_allclose(model.rank(context, cands)["score"].numpy(), ranked, atol=1e-5)
    compiled = tf.function(lambda x: model.gsu.scores(x), jit_compile=True)
    np.testing.assert_allclose(compiled(inputs).numpy(), dynamic, atol=1e-5)


@pytest.mark.parametrize("name", ["twin", "seminar", "eta"])
def test_rank_encodes_each_distinct_history_item_once_with_equal_scores(name):
    """`rank` runs each distinct (item, attributes) of its rows through the item encoder
    once (`distinct_history`, the default where the GSU reads the whole history's keys):
    scores equal to encoding every behaviour, on histories that repeat behaviours."""
    model, cfg = _model(name)
    assert model.gsu.needs_keys and model.distinct_history
    context, cands, _ = split(repeated_batch(cfg, batch=8, seed=4), cfg, 6, seed=4)
    distinct = model.rank(context, cands)["score"].numpy()
    model.distinct_history = False
    every = model.rank(context, cands)["score"].numpy()
    np.testing.assert_allclose(distinct, every, atol=1e-6, rtol=0)
