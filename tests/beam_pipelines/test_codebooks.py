import numpy as np
import pytest

from beam_pipelines import codebooks as beam_codebooks
from seminar_tf.models.registry import build_model, model_config
from seminar_tf.pq.build import build_codebooks, item_key_parts, target_queries

from helpers import tiny_config, tiny_item_table


@pytest.mark.parametrize("method", ["rq", "pq"])
def test_beam_and_in_process_codebooks_and_codes_agree(tmp_path, method):
    cfg = model_config("seminar", tiny_config()).replace(pq=dict(
        method=method, num_subspaces=2, num_codewords=8, kmeans_iters=5, sample_size=30))
    table = tiny_item_table(cfg)
    model = build_model(cfg, item_table=table)
    pq, codes = build_codebooks(model, table["attrs"], cfg.pq)
    parts_path = str(tmp_path / "parts.npy")
    np.save(parts_path, item_key_parts(model, table["attrs"], combine=cfg.pq.combine_parts))
    queries = target_queries(model, table["attrs"], seed=cfg.pq.seed)
    quantizer, beam_codes = beam_codebooks.run(parts_path, str(tmp_path / "out"), cfg.pq,
                                               queries=queries, chunk=7)
    np.testing.assert_allclose(quantizer.codebooks, pq.codebooks, atol=1e-6)
    np.testing.assert_array_equal(beam_codes, codes)
    # encoding with a given quantizer (no training) is identical as well
    _, given = beam_codebooks.run(parts_path, str(tmp_path / "out2"), cfg.pq, quantizer=pq,
                                  chunk=11)
    np.testing.assert_array_equal(given, codes)
    assert codes.dtype == np.uint8 and len(np.unique(codes)) > 1


def test_model_mode_computes_key_parts_in_workers_like_the_in_process_builder(tmp_path):
    """`seminar build-codebooks --beam`: key parts computed from the model directory inside
    the job (two worker processes), same codebooks, codes and statistics as in-process."""
    import json
    import os
    from seminar_tf import storage
    from seminar_tf.orchestration.cli import _beam_encoder
    from seminar_tf.workflows.codebook_build import build_for_model_dir
    from seminar_tf.workflows.model_dir import save_model_dir
    cfg = model_config("seminar", tiny_config()).replace(
        pq=dict(num_subspaces=2, num_codewords=8, kmeans_iters=5, sample_size=30))
    table = tiny_item_table(cfg)
    data_dir, model_dir = str(tmp_path / "data"), str(tmp_path / "model")
    os.makedirs(data_dir)
    np.savez(os.path.join(data_dir, "item_table.npz"), **table)
    storage.commit(data_dir, "dataset")  # as `seminar preprocess` publishes a dataset
    model = build_model(cfg, item_table=table)
    save_model_dir(model, model_dir, "seminar", data_dir)
    local = build_for_model_dir(model_dir, data_dir)
    with open(os.path.join(model_dir, "pq", "item_codes.npy"), "rb") as f:
        local_codes = np.load(f)
    beam = build_for_model_dir(model_dir, data_dir, encoder=_beam_encoder(
        ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]))
    beam_codes = np.load(os.path.join(model_dir, "pq", "item_codes.npy"))
    np.testing.assert_array_equal(beam_codes, local_codes)
    for key in ("quantization_mse", "mean_part_sq_norm"):
        np.testing.assert_allclose(beam[key], local[key], rtol=1e-5)
    assert local["quantization_mse"] > 0
    assert json.load(open(os.path.join(model_dir, "pq", "encode_stats.json")))["part_vectors"]
