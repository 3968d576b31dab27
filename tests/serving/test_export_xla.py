"""`seminar export --xla`: the dense part of every signature is XLA-compiled, parsing is
not, and the outputs equal the plain export."""
import os

import numpy as np
import tensorflow as tf
from tensorflow.python.saved_model import loader_impl

from helpers import assert_paths_agree, gsu_determined
from seminar_tf.workflows import export, signatures, training

NAME = "seminar"


def compiled_functions(saved_dir):
    """Names of the graph functions marked `_XlaMustCompile` and the ops inside them."""
    sm = loader_impl.parse_saved_model(saved_dir)
    names, ops = [], set()
    for mg in sm.meta_graphs:
        for fn in mg.graph_def.library.function:
            if fn.attr["_XlaMustCompile"].b:
                names.append(fn.signature.name)
                ops.update(n.op for n in fn.node_def)
    return names, ops


def test_xla_export_compiles_dense_parts_and_matches(trained, tmp_path):
    model_dir, base, _, examples = trained
    report = export.export_from_model_dir(model_dir, str(tmp_path), NAME, version=1, gsu="pq",
                                          xla=True)
    assert report["xla"] and report["max_abs_diff_vs_keras"] <= 1e-5
    xla_dir = os.path.join(str(tmp_path), NAME, "1")
    names, ops = compiled_functions(xla_dir)
    assert len(names) >= 3, names  # example scoring, rank, retrieve
    assert "ParseExampleV2" not in ops  # parsing stays outside the compiled part
    assert {"TopKV2"} <= ops
    plain_names, _ = compiled_functions(os.path.join(base, NAME, "1"))
    assert plain_names == []
    plain = tf.saved_model.load(os.path.join(base, NAME, "1"))
    xla = tf.saved_model.load(xla_dir)
    batch = tf.constant(examples)
    # XLA and the plain graph are two formulations: equal where the GSU's selection is
    # determined (tests/helpers.py), within the stated bound at near-ties
    model = training.load_model(model_dir, gsu="pq")
    contract = export.F.FeatureContract.from_config(model.config.data)
    determined = gsu_determined(model, contract.parse_examples(batch))
    assert_paths_agree(xla.signatures["serving_default"](examples=batch)["score"],
                       plain.signatures["serving_default"](examples=batch)["score"], determined)
    context, candidates = export.rank_request(examples)
    a = xla.signatures["rank"](context=tf.constant(context), candidates=tf.constant(candidates))
    b = plain.signatures["rank"](context=tf.constant(context),
                                 candidates=tf.constant(candidates))
    flat = signatures.rank_as_examples(contract.parse_context(tf.constant(context)),
                                       contract.parse_candidates(tf.constant(candidates)))
    assert_paths_agree(a["score"], b["score"], gsu_determined(model, flat))
    # out-of-vocabulary ids are mapped before the compiled part (XLA would clamp them)
    model = training.load_model(model_dir)
    big = model.config.data.item_vocab_size + 1000
    dense = export.F.FeatureContract.from_config(model.config.data).parse_examples(batch)
    dense = {k: dense[k] for k in export.F.FeatureContract.from_config(
        model.config.data).dense_input_signature()}
    oov = dict(dense, target_item=tf.fill(tf.shape(dense["target_item"]),
                                          tf.constant(big, tf.int64)))
    one = dict(dense, target_item=tf.ones_like(dense["target_item"]))
    assert_paths_agree(xla.signatures["predict"](**oov)["score"],
                       plain.signatures["predict"](**one)["score"],
                       gsu_determined(model, dict(dense, target_item=one["target_item"])))
