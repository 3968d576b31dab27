"""Timeline batches carry exactly the per-example targets and histories of the store."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from beam_pipelines import pipeline
from seminar_tf import features as F
from seminar_tf.data import synthetic, timelines
from seminar_tf.data.dataset import make_dataset, split_pattern


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    raw = str(tmp_path_factory.mktemp("tl_raw"))
    synthetic.generate(raw, synthetic.SyntheticConfig(num_users=20, num_items=150, seq_len=70,
                                                      seed=4))
    out = str(tmp_path_factory.mktemp("tl_store"))
    pipeline.run("kuaisar", raw, out, max_seq_len=16, num_candidates=5, shards=2)
    return out


def _contract(d, L):
    with open(os.path.join(d, "data_config.json")) as f:
        dc = json.load(f)
    return F.FeatureContract(L, dc["max_query_tokens"], dc["num_attrs"], dc["item_vocab_size"],
                             dc["query_vocab_size"], dc["attr_vocab_size"],
                             dc["user_vocab_size"])


@pytest.mark.parametrize("L,T", [(16, 4), (5, 8)])
def test_timeline_batches_hold_the_per_example_stream(store_dir, L, T):
    contract = _contract(store_dir, L)
    pattern = split_pattern(store_dir, "train")
    per_example = list(make_dataset(
        pattern, contract, batch_size=1000, deterministic=True))
    ref = {k: np.concatenate([b[k].numpy() for b in per_example]) for k in per_example[0]}
    got = [contract.finish(timelines.to_examples(b, L)) for b in timelines.timeline_dataset(
        pattern, contract, targets_per_timeline=T, batch_size=3 * T, deterministic=True)]
    got = {k: np.concatenate([b[k].numpy() for b in got]) for k in got[0]}
    assert len(ref[F.LABEL]) > 100
    for k in ref:
        np.testing.assert_array_equal(got[k], ref[k], err_msg=k)


def test_chunks_bound_count_and_span():
    ends = tf.constant([0, 0, 1, 2, 2, 9, 9, 10, 30, 31], tf.int64)
    cid = timelines.chunk_ids(ends, 4).numpy()
    for c in np.unique(cid):
        e = ends.numpy()[cid == c]
        assert len(e) <= 4 and e.max() - e.min() < 4
    assert list(cid) == sorted(cid)


def test_timeline_batches_need_the_store(tmp_path):
    from seminar_tf.data.dataset import write_tfrecords
    path = str(tmp_path / "train-00000-of-00001.tfrecord.gz")
    write_tfrecords(path, [b""])
    with pytest.raises(ValueError, match="sequence store"):
        timelines.timeline_dataset(path, _contract_stub())


def _contract_stub():
    return F.FeatureContract(4, 2, 2, 10, 10, 10, 10)


def _targets_and_users(batches, L):
    """The (user, time, item) of every real target, and distinct users per batch."""
    rows, users = [], []
    for b in batches:
        ex = timelines.to_examples(b, L)
        real = ex[F.USER_ID].numpy() != 0
        u = ex[F.USER_ID].numpy()[real]
        rows += list(zip(u, ex[F.TIMESTAMP].numpy()[real], ex[F.TARGET_ITEM].numpy()[real]))
        users.append(len(set(u)))
    return sorted(rows), float(np.mean(users))


def test_shuffled_timeline_batches_mix_users_and_keep_every_target(store_dir, monkeypatch):
    L, T = 16, 4
    contract = _contract(store_dir, L)
    pattern = split_pattern(store_dir, "train")

    def batches(**kw):
        return list(timelines.timeline_dataset(pattern, contract, targets_per_timeline=T,
                                               batch_size=8 * T, **kw))
    plain, plain_users = _targets_and_users(batches(deterministic=True), L)
    mixed, mixed_users = _targets_and_users(batches(shuffle_buffer=10_000, seed=3), L)
    assert mixed == plain and len(plain) > 100  # every target once, nothing else
    # the windows' shuffle alone (a buffer of shuffle_buffer // T windows, here every
    # window) already mixes this small data; the chunk shuffle must keep that
    assert mixed_users > plain_users + 2
    # a window buffer smaller than a user's windows: only the chunk shuffle mixes users
    orig = timelines.shard_chunks
    monkeypatch.setattr(timelines, "shard_chunks",
                        lambda f, tl, c, T_, chunk_shuffle=0, seed=0: orig(f, tl, c, T_))
    # shuffle_buffer 8T: 8 windows in the window buffer, 32 chunks per shard before it
    _, window_only = _targets_and_users(batches(shuffle_buffer=8 * T, seed=3), L)
    monkeypatch.undo()
    _, both = _targets_and_users(batches(shuffle_buffer=8 * T, seed=3), L)
    assert both > window_only + 1.5, (both, window_only)  # measured 4.6 vs 2.4 of 8


def test_input_pipelines_run_without_the_autotuning_model(store_dir):
    """Deleting an iterator with tf.data's autotuning model on waits up to 60 s for its
    thread (TF 2.21): every input pipeline the workflows build has it off."""
    contract = _contract(store_dir, 16)
    pattern = split_pattern(store_dir, "train")
    built = [timelines.timeline_dataset(pattern, contract, targets_per_timeline=4,
                                        batch_size=16, shuffle_buffer=100),
             make_dataset(pattern, contract, batch_size=16),
             make_dataset(split_pattern(store_dir, "candidate_lists"), contract,
                          batch_size=4)]
    for ds in built:
        assert ds.options().autotune.enabled is False
        next(iter(ds))  # and it still runs
