"""The sequence store: the same batches as self-contained Examples, bytes O(events)."""
import glob
import json
import os

import numpy as np
import pytest

from beam_pipelines import pipeline
from seminar_tf import features as F
from seminar_tf.data import store, synthetic
from seminar_tf.data.dataset import make_dataset, serialized_examples, split_pattern


@pytest.fixture(scope="module")
def both_formats(tmp_path_factory):
    """One generated KuaiSAR dataset (search sessions: equal timestamps and non-clicks;
    sampled negatives; candidate groups) preprocessed in both formats, 3 shards."""
    raw = str(tmp_path_factory.mktemp("store_raw"))
    synthetic.generate(raw, synthetic.SyntheticConfig(num_users=30, num_items=200, seq_len=50,
                                                      seed=3))
    out = {}
    for fmt in ("store", "examples"):
        out[fmt] = str(tmp_path_factory.mktemp(f"store_{fmt}"))
        pipeline.run("kuaisar", raw, out[fmt], max_seq_len=12, num_candidates=15, fmt=fmt,
                     shards=3)
    return raw, out


def _contract(data_dir, max_seq_len=None):
    with open(os.path.join(data_dir, "data_config.json")) as f:
        dc = json.load(f)
    return F.FeatureContract(max_seq_len or dc["max_seq_len"], dc["max_query_tokens"],
                             dc["num_attrs"], dc["item_vocab_size"], dc["query_vocab_size"],
                             dc["attr_vocab_size"], dc["user_vocab_size"])


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k].numpy(), b[k].numpy(), err_msg=k)


@pytest.mark.parametrize("max_seq_len", [None, 5])
def test_identical_batches_from_both_formats(both_formats, max_seq_len):
    _, out = both_formats
    assert glob.glob(os.path.join(out["store"], "timelines-00002-of-00003.tfrecord.gz"))
    # the store is read at any L: a shorter window cuts the same histories
    contract = _contract(out["store"], max_seq_len)
    for split in ("train", "valid", "test", "candidates"):
        a = list(make_dataset(split_pattern(out["store"], split), contract, batch_size=16,
                              deterministic=True))
        b = list(make_dataset(split_pattern(out["examples"], split), contract, batch_size=16,
                              deterministic=True))
        assert len(a) == len(b) > 0, split
        for x, y in zip(a, b):
            _assert_same(x, y)
    labels = np.concatenate([x[F.LABEL].numpy() for x in a])
    assert 0 < labels.mean() < 1
    lists = [list(make_dataset(split_pattern(out[f], "candidate_lists"), contract,
                               batch_size=4, deterministic=True,
                               parse=contract.parse_ranking_records)) for f in out]
    assert len(lists[0]) == len(lists[1]) > 0
    for (xc, xk), (yc, yk) in zip(*lists):
        _assert_same(xc, yc)
        _assert_same(xk, yk)


def test_serialized_examples_match_the_examples_format(both_formats):
    _, out = both_formats
    for split in ("train", "test", "candidates", "candidate_lists"):
        assert (list(serialized_examples(out["store"], split))
                == list(serialized_examples(out["examples"], split))), split


def test_store_bytes_do_not_grow_with_max_seq_len(both_formats, tmp_path):
    raw, out = both_formats
    long = str(tmp_path / "long")
    pipeline.run("kuaisar", raw, long, max_seq_len=48, num_candidates=15, shards=3)

    def size(d, pattern):
        return sum(os.path.getsize(f) for f in glob.glob(os.path.join(d, pattern)))

    # gzip of identical bytes: the store does not depend on L at all
    assert size(long, "*.tfrecord.gz") == size(out["store"], "*.tfrecord.gz")
    assert size(out["store"], "*.tfrecord.gz") < size(out["examples"], "*.tfrecord.gz")


def test_store_file_names_and_errors(tmp_path):
    assert store.timeline_file("/d/train-00001-of-00004.targets.tfrecord.gz") == \
        "/d/timelines-00001-of-00004.tfrecord.gz"
    with pytest.raises(ValueError, match="not a sequence-store target file"):
        store.timeline_file("/d/train-00001.tfrecord.gz")
    with pytest.raises(ValueError, match="a mix"):
        store.is_store(["a-00000-of-00001.targets.tfrecord.gz", "b-00000.tfrecord.gz"])
