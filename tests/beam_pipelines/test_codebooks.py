import numpy as np

from beam_pipelines import codebooks as beam_codebooks
from seminar_tf.models.registry import build_model, model_config
from seminar_tf.pq.build import build_codebooks, item_key_parts

from helpers import tiny_config, tiny_item_table


def test_beam_and_in_process_codebooks_and_codes_agree(tmp_path):
    cfg = model_config("seminar", tiny_config()).replace(
        pq=dict(num_subspaces=2, num_codewords=8, kmeans_iters=5, sample_size=30))
    table = tiny_item_table(cfg)
    model = build_model(cfg, item_table=table)
    pq, codes = build_codebooks(model, table["attrs"], cfg.pq)
    parts_path = str(tmp_path / "parts.npy")
    np.save(parts_path, item_key_parts(model, table["attrs"]))
    books, beam_codes = beam_codebooks.run(parts_path, str(tmp_path / "out"), num_subspaces=2,
                                           num_codewords=8, iters=5, seed=cfg.pq.seed,
                                           sample_size=30, chunk=7)
    np.testing.assert_allclose(books, pq.codebooks, atol=1e-6)
    np.testing.assert_array_equal(beam_codes, codes)
    # encoding with a given codebook (no training) is identical as well
    _, given = beam_codebooks.run(parts_path, str(tmp_path / "out2"), num_subspaces=2,
                                  num_codewords=8, codebooks=pq.codebooks, chunk=11)
    np.testing.assert_array_equal(given, codes)
    assert codes.dtype == np.uint8 and len(np.unique(codes)) > 1
