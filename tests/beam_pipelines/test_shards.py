"""Sharded output: the same bytes from any runner, events packed per shard."""
import glob
import gzip
import os

from beam_pipelines import pipeline
from beam_pipelines.records import Event
from beam_pipelines.shards import batch_by_shard, shard_of, users_of
from seminar_tf.data import synthetic


def _contents(d):
    out = {}
    for path in sorted(glob.glob(os.path.join(d, "*.tfrecord.gz"))
                       + glob.glob(os.path.join(d, "vocab", "*.txt"))):
        with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
            out[os.path.relpath(path, d)] = f.read()
    return out


def test_multi_processing_run_writes_the_same_files(tmp_path):
    raw = str(tmp_path / "raw")
    synthetic.generate(raw, synthetic.SyntheticConfig(num_users=16, num_items=120, seq_len=40,
                                                      seed=11))
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    s1 = pipeline.run("kuaisar", raw, one, max_seq_len=10, num_candidates=10, shards=4)
    s2 = pipeline.run("kuaisar", raw, two, max_seq_len=10, num_candidates=10, shards=4,
                      beam_args=["--direct_num_workers=2",
                                 "--direct_running_mode=multi_processing"])
    assert s1["examples"] == s2["examples"] and s1["rows"] == s2["rows"]
    a, b = _contents(one), _contents(two)
    assert len([k for k in a if k.startswith("timelines-")]) == 4
    assert a.keys() == b.keys() and a == b
    # the job's temporary parts (spilled events, vocabulary slices, item table buckets) are gone
    for d in (one, two):
        assert not glob.glob(os.path.join(d, "**", "*.parts"), recursive=True)


def test_events_are_packed_per_shard_and_regrouped_per_user():
    events = [Event(f"u{i % 5}", 1000 * i, f"i{i}", ("q",) if i % 2 else (), 1.0, 1)
              for i in range(40)]
    packed = batch_by_shard(events, 3)
    assert sum(n for _, (n, _) in packed) == 40
    assert all(shard_of(e.user, 3) == s for s, (_, b) in packed
               for _, evs in users_of([b]) for e in evs)
    users = users_of([b for _, (_, b) in packed])
    assert [u for u, _ in users] == sorted({e.user for e in events})
    assert sorted(e for _, evs in users for e in evs) == sorted(events)


def test_byte_range_splits_read_every_line_once_with_file_line_numbers(tmp_path):
    import raw_fixtures as fixtures
    from beam_pipelines.reading import (ReadAndParse, _csv_header, absolute_dead_letters,
                                        file_splits)
    from beam_pipelines.sources import source_class
    d = fixtures.write_kuaisar(str(tmp_path / "k"), bad=True)
    spec = source_class("kuaisar").find(d)
    reader = ReadAndParse("kuaisar", spec.encoding)
    reader.setup()

    def run(splits):
        recs, dead, lines, rows = [], [], [], {}
        for sp in splits:
            for out in reader.process(sp):
                tag = getattr(out, "tag", None)
                if tag == "dead":
                    dead.append(out.value)
                elif tag == "lines":
                    lines.append(out.value)
                elif tag == "rows":
                    rows[out.value[0]] = rows.get(out.value[0], 0) + out.value[1]
                else:
                    recs.append(out)
        return (sorted(recs, key=repr), sorted(absolute_dead_letters(d, lines) for d in dead),
                rows)

    whole = run([(k, p, 0, None) for k, p in spec.files])
    small = file_splits(spec.files, split_bytes=40)
    assert len(small) > 2 * len(spec.files)
    assert run(small) == whole
    assert whole[1] and whole[0]
    assert _csv_header(spec.files[0][1], spec.encoding)[0] == "user_id"


def test_a_missing_shard_fails_the_accounting():
    import pytest
    from beam_pipelines.stats import row_accounting
    rows = {"read": 3, "parsed": 3, "shards_with_events": 2, "shards_written": 2}
    assert row_accounting(rows, 0)["read"] == 3
    with pytest.raises(RuntimeError, match="1 shards written, 2 shards have events"):
        row_accounting(dict(rows, shards_written=1), 0)


def test_bounded_sampler_draws_from_head_and_tail_sample_with_their_attributes(tmp_path):
    """With a summary smaller than the catalogue, every sampled candidate is a head item or
    in the tail sample, and carries its own attributes (joined by key, not a whole table)."""
    import numpy as np
    from beam_pipelines.vocab import in_tail_sample, tail_rate
    from seminar_tf import features as F
    from seminar_tf.data.dataset import serialized_examples
    import tensorflow as tf
    raw, out = str(tmp_path / "raw"), str(tmp_path / "out")
    synthetic.generate(raw, synthetic.SyntheticConfig(num_users=16, num_items=120,
                                                      seq_len=40, seed=3))
    stats = pipeline.run("kuaisar", raw, out, max_seq_len=10, num_candidates=20, shards=3,
                         sampler_top=5, tail_sample=15)
    n_items = stats["vocab_sizes"]["items"] - F.FIRST_ID
    rate = tail_rate(n_items - 5, 15)
    allowed = set(range(2, 7)) | {i for i in range(7, n_items + 2) if in_tail_sample(i, rate)}
    assert len(allowed) < n_items / 2  # the summary really is smaller than the catalogue
    table = np.load(os.path.join(out, "item_table.npz"))
    negatives = set()
    for raw_ex in serialized_examples(out, "candidates"):
        f = tf.train.Example.FromString(raw_ex).features.feature
        item = f[F.TARGET_ITEM].int64_list.value[0]
        assert list(f[F.TARGET_ATTRS].int64_list.value) == table["attrs"][item].tolist()
        if f[F.LABEL].float_list.value[0] == 0.0:
            negatives.add(item)
    assert negatives <= allowed and negatives & (allowed - set(range(2, 7)))
