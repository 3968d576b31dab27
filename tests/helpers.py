"""Shared test helpers: "save, reload, compare outputs" for layers, tiny configs and batches."""
import numpy as np
import tensorflow as tf

from seminar_tf import features as F
from seminar_tf.config import SeminarConfig


def _specs(inputs):
    return tf.nest.map_structure(lambda t: tf.TensorSpec.from_tensor(tf.convert_to_tensor(t)),
                                 inputs)


def assert_nested_close(a, b, atol=1e-5):
    tf.nest.assert_same_structure(a, b)
    for x, y in zip(tf.nest.flatten(a), tf.nest.flatten(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol)


def assert_round_trip(layer, call_fn, inputs, tmp_path, build_clone=None):
    """SavedModel export/reload and get_config/from_config + weights give identical outputs.

    Args:
        layer: a built layer.
        call_fn: f(layer, inputs) -> nested tensors.
        inputs: nested tensors.
        build_clone: optional f(clone) that builds a clone's variables before set_weights.
    """
    expected = call_fn(layer, inputs)

    class Wrapper(tf.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        @tf.function
        def __call__(self, x):
            return call_fn(self.inner, x)

    wrapper = Wrapper(layer)
    wrapper.__call__.get_concrete_function(_specs(inputs))
    path = str(tmp_path / f"saved_{layer.name}")
    tf.saved_model.save(wrapper, path)
    loaded = tf.saved_model.load(path)
    assert_nested_close(expected, loaded(inputs))

    config = layer.get_config()
    clone = type(layer).from_config(config)
    (build_clone or (lambda c: call_fn(c, inputs)))(clone)
    clone.set_weights(layer.get_weights())
    assert_nested_close(expected, call_fn(clone, inputs))
    assert clone.get_config() == config


def tiny_config(**model) -> SeminarConfig:
    base = dict(top_k=4, embedding_dim=8, num_heads=2, short_term_len=3, mlp_units=[16],
                tower_units=[8], gsu_options={"qin": {"first_k": 6}, "eta": {"bits": 16}})
    base.update(model)
    return SeminarConfig().replace(
        data=dict(max_seq_len=10, max_query_tokens=3, num_attrs=2, item_vocab_size=40,
                  query_vocab_size=20, attr_vocab_size=15, user_vocab_size=12, text_dim=5,
                  image_dim=4, title_tokens=3),
        model=base, train=dict(batch_size=8))


def tiny_item_table(cfg: SeminarConfig, seed=0):
    rng = np.random.default_rng(seed)
    V, d = cfg.data.item_vocab_size, cfg.data
    image_mask = rng.random(V) > 0.2
    return {"text": rng.normal(size=(V, d.text_dim)).astype(np.float32),
            "text_mask": np.ones(V, bool),
            "image": rng.normal(size=(V, d.image_dim)).astype(np.float32) * image_mask[:, None],
            "image_mask": image_mask,
            "title": rng.integers(0, d.query_vocab_size, size=(V, d.title_tokens)),
            "attrs": rng.integers(0, d.attr_vocab_size, size=(V, d.num_attrs))}


def random_batch(cfg: SeminarConfig, batch=8, seed=0, lengths=None):
    """A parsed-feature batch with varied history lengths (including empty and full)."""
    rng = np.random.default_rng(seed)
    d = cfg.data
    L, Q, A = d.max_seq_len, d.max_query_tokens, d.num_attrs
    lengths = lengths if lengths is not None else [
        [0, L, 1, L // 2, 3, L, 2, L - 1][i % 8] for i in range(batch)]
    items = np.zeros((batch, L), np.int64)
    for b, n in enumerate(lengths):
        if n:
            items[b, L - n:] = rng.integers(2, d.item_vocab_size, size=n)
    mask = items != 0
    query = rng.integers(0, d.query_vocab_size, size=(batch, L, Q)) * (
        rng.random((batch, L, 1)) < 0.5) * mask[..., None]
    attrs = rng.integers(1, d.attr_vocab_size, size=(batch, L, A)) * mask[..., None]
    source = np.where(rng.random(batch) < 0.5, F.SOURCE_SEARCH, F.SOURCE_REC)
    tq = rng.integers(1, d.query_vocab_size, size=(batch, Q)) * (
        source == F.SOURCE_SEARCH)[:, None]
    return {
        F.USER_ID: tf.constant(rng.integers(2, d.user_vocab_size, size=batch)),
        F.TIMESTAMP: tf.constant(np.arange(batch, dtype=np.int64)),
        F.TARGET_ITEM: tf.constant(rng.integers(2, d.item_vocab_size, size=batch)),
        F.TARGET_QUERY: tf.constant(tq),
        F.TARGET_ATTRS: tf.constant(rng.integers(1, d.attr_vocab_size, size=(batch, A))),
        F.TARGET_SOURCE: tf.constant(source),
        F.LABEL: tf.constant((rng.random(batch) < 0.5).astype(np.float32)),
        F.HIST_ITEMS: tf.constant(items),
        F.HIST_QUERY: tf.constant(query.astype(np.int64)),
        F.HIST_ATTRS: tf.constant(attrs.astype(np.int64)),
        F.HIST_SOURCES: tf.constant(np.where(mask, rng.integers(1, 3, size=(batch, L)), 0)),
        F.HIST_TIME_GAPS: tf.constant((rng.random((batch, L)) * 1e5 * mask).astype(np.float32)),
    }


# ---------------------------------------------------------------- GSU tie rule
from seminar_tf.layers.retrieval.ties import (  # noqa: E402,F401
    GSU_NOISE, UNDETERMINED_BOUND, determined_rows, reference_select)


def gsu_determined(model, features, delta=GSU_NOISE):
    """(R,) bool: rows of a per-candidate batch whose GSU selection no float noise can
    change (`LifelongRanker.selection_determined`)."""
    return model.selection_determined(features, delta)


def assert_paths_agree(got, expected, determined, atol=1e-5, bound=UNDETERMINED_BOUND,
                       err_msg=""):
    """Equal to `atol` on determined rows, within `bound` elsewhere."""
    got, expected = np.asarray(got).reshape(-1), np.asarray(expected).reshape(-1)
    determined = np.asarray(determined).reshape(-1)
    assert determined.any(), "no determined row: the comparison would be vacuous"
    np.testing.assert_allclose(got[determined], expected[determined], atol=atol,
                               err_msg=err_msg)
    np.testing.assert_allclose(got[~determined], expected[~determined], atol=bound,
                               err_msg=err_msg + " (undetermined rows)")
