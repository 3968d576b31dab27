import numpy as np
import pytest
import tensorflow as tf

from seminar_tf import features as F
from seminar_tf.data.dataset import make_dataset, write_tfrecords
from seminar_tf.features import FeatureContract

C = FeatureContract(max_seq_len=5, max_query_tokens=2, num_attrs=1, item_vocab_size=1000,
                    query_vocab_size=10, attr_vocab_size=10, user_vocab_size=100)


@pytest.fixture()
def shards(tmp_path):
    paths = []
    for s in range(3):
        exs = [C.make_example(user_id=s * 10 + i, target_item=100 + s * 10 + i, label=i % 2,
                              hist_items=list(range(2, 2 + i)))
               for i in range(7)]
        p = str(tmp_path / f"train-{s:05d}.tfrecord.gz")
        write_tfrecords(p, exs)
        paths.append(p)
    return str(tmp_path / "train-*.tfrecord.gz")


def test_reads_all_examples_deterministically(shards):
    ds = make_dataset(shards, C, batch_size=4, deterministic=True)
    items = np.concatenate([b[F.TARGET_ITEM].numpy() for b in ds])
    assert items.tolist() == [100 + s * 10 + i for s in range(3) for i in range(7)]
    first = next(iter(ds))
    assert first[F.HIST_ITEMS].shape == (4, 5)
    again = np.concatenate([b[F.TARGET_ITEM].numpy() for b in make_dataset(
        shards, C, batch_size=4, deterministic=True)])
    assert again.tolist() == items.tolist()


def test_shuffle_and_worker_sharding(shards):
    ds = make_dataset(shards, C, batch_size=100, shuffle_buffer=50, seed=1)
    items = next(iter(ds))[F.TARGET_ITEM].numpy()
    assert sorted(items.tolist()) == [100 + s * 10 + i for s in range(3) for i in range(7)]
    w1 = make_dataset(shards, C, batch_size=100, num_shards=2, shard_index=1,
                      deterministic=True)
    assert next(iter(w1))[F.TARGET_ITEM].numpy().tolist() == list(range(110, 117))


def test_missing_files_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing"):
        make_dataset(str(tmp_path / "nothing-*.gz"), C)
