"""`seminar export --context-attrs table`: the export holds the item -> attributes table, so
`rank` requests carry no behaviour or candidate attributes, with the same scores."""
import os

import tensorflow as tf

from helpers import assert_paths_agree, gsu_determined
from seminar_tf import features as F
from seminar_tf.workflows import export, signatures, training

NAME = "seminar"


def _without(raw, *names):
    ex = tf.train.Example.FromString(raw)
    for n in names:
        if n in ex.features.feature:
            del ex.features.feature[n]
    return ex.SerializeToString()


def test_rank_with_attributes_from_the_export_table_equals_the_request_ones(
        trained, tiny_dataset, tmp_path):
    model_dir, base, _, _ = trained
    report = export.export_from_model_dir(model_dir, str(tmp_path), NAME, version=1,
                                          gsu="pq", data_dir=tiny_dataset,
                                          context_attrs="table")
    assert report["context_attrs"] == "table" and report["max_abs_diff_vs_keras"] <= 1e-5
    from seminar_tf.data.dataset import serialized_examples
    examples = list(serialized_examples(tiny_dataset, "test", 12))
    context, candidates = export.rank_request(examples)
    slim_ctx = [_without(c, F.HIST_ATTRS) for c in context]
    slim_cands = [[_without(c, F.TARGET_ATTRS) if c else c for c in row] for row in candidates]
    assert sum(map(len, slim_ctx)) < sum(map(len, context))
    table = tf.saved_model.load(os.path.join(str(tmp_path), NAME, "1")).signatures["rank"]
    plain = tf.saved_model.load(os.path.join(base, NAME, "1")).signatures["rank"]
    got = table(context=tf.constant(slim_ctx), candidates=tf.constant(slim_cands))
    want = plain(context=tf.constant(list(context)), candidates=tf.constant(
        [list(r) for r in candidates]))
    model = training.load_model(model_dir, gsu="pq")
    contract = F.FeatureContract.from_config(model.config.data)
    flat = signatures.rank_as_examples(contract.parse_context(tf.constant(list(context))),
                                       contract.parse_candidates(tf.constant(
                                           [list(r) for r in candidates])))
    mask = want["mask"].numpy()
    assert (got["mask"].numpy() == mask).all()
    assert_paths_agree(tf.boolean_mask(got["score"], mask), tf.boolean_mask(want["score"], mask),
                       gsu_determined(model, flat).reshape(mask.shape)[mask])
