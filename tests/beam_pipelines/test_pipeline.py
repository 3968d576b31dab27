"""End-to-end runs of the Beam pipeline (DirectRunner) on the fixtures of every source."""
import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from beam_pipelines import pipeline
from beam_pipelines import records as R
from seminar_tf import features as F
from seminar_tf.config import DataConfig
from seminar_tf.data.dataset import make_dataset, serialized_examples, split_pattern

import raw_fixtures as fixtures

SPLITS = ("train", "valid", "test", "candidates")


def _examples(out, split):
    """Self-contained Examples of a split, from either output format."""
    return list(serialized_examples(out, split))


def _parse_one(raw):
    ex = tf.train.Example.FromString(raw)
    f = ex.features.feature
    return {k: list(f[k].int64_list.value or f[k].float_list.value) for k in f}


def _vocab(out, name):
    with open(os.path.join(out, "vocab", f"{name}.txt"), encoding="utf-8") as f:
        return [ln.rstrip("\n") for ln in f]


@pytest.fixture(scope="module")
def kuaisar_out(tmp_path_factory):
    d = fixtures.write_kuaisar(str(tmp_path_factory.mktemp("kuaisar_in")), bad=True)
    out = str(tmp_path_factory.mktemp("kuaisar_out"))
    stats = pipeline.run("kuaisar", d, out, max_seq_len=3, num_candidates=4)
    return d, out, stats


def test_kuaisar_history_matches_reference(kuaisar_out):
    """Every example's history equals a plain recomputation from the raw rows: the user's
    clicked events strictly before the target, most recent 3, oldest first."""
    _, out, stats = kuaisar_out
    items = _vocab(out, "items")
    users = _vocab(out, "users")
    raw_events = []  # (user, ts_ms, item, label)
    for line in fixtures.KUAISAR_REC.strip().splitlines()[1:]:
        c = line.split(",")
        raw_events.append((c[0], int(float(c[5])), c[1], int(c[6])))
    for line in fixtures.KUAISAR_SRC.strip().splitlines()[1:]:
        import csv
        c = next(csv.reader([line]))
        raw_events.append((c[0], int(float(c[3])), c[6], int(int(c[7]) > 0)))
    n = 0
    for split in ("train", "valid", "test"):
        for raw in _examples(out, split):
            ex = _parse_one(raw)
            user = users[ex["user_id"][0] - 2]
            ts = ex["timestamp"][0] * 1000
            expect = sorted((t, it) for u, t, it, lab in raw_events
                            if u == user and lab and t < ts)[-3:]
            # items first seen after the training period are OOV (train-only vocabularies)
            want = [items.index(it) + 2 if it in items else F.OOV_ID for _, it in expect]
            assert ex["hist_items"] == want, (user, ts)
            gaps = ex["hist_time_gaps"]
            assert all(g > 0 for g in gaps)  # strictly earlier: no leakage
            assert gaps == sorted(gaps, reverse=True)  # oldest first
            n += 1
    assert n == sum(stats["examples"][s] for s in ("train", "valid", "test"))
    # ties: user 2's two events at 11:00:00 never see each other
    assert stats["examples"]["test"] >= 2


def test_kuaisar_splits_queries_and_negatives(kuaisar_out):
    _, out, stats = kuaisar_out
    test = [_parse_one(r) for r in _examples(out, "test")]
    # user 1: test holds the last click (104) and the later non-click (105)
    assert sorted(e["label"][0] for e in test if e["user_id"][0] == 2 + _vocab(
        out, "users").index("1")) == [0.0, 1.0]
    tokens = _vocab(out, "query_tokens")
    searched = [e for s in ("train", "valid", "test") for e in map(_parse_one, _examples(out, s))
                if e["target_source"][0] == F.SOURCE_SEARCH]
    queries = {tuple(tokens[t - 2] for t in e["target_query"] if t) for e in searched}
    assert ("20", "34", "3") in queries and () in queries  # '[]' is an empty query
    cands = [_parse_one(r) for r in _examples(out, "candidates")]
    assert len(cands) == stats["examples"]["candidates"] > 0
    by_user = {}
    for c in cands:
        by_user.setdefault(c["user_id"][0], []).append(c)
    for group in by_user.values():
        assert sum(c["label"][0] for c in group) == 1.0
        assert len({c["target_item"][0] for c in group}) == len(group)


def test_dead_letters_counted_and_good_rows_kept(kuaisar_out):
    _, out, stats = kuaisar_out
    dead = []
    for p in glob.glob(os.path.join(out, "dead_letters-*.jsonl")):
        dead += [json.loads(ln) for ln in open(p, encoding="utf-8")]
    reasons = sorted(d["reason"].split(":")[0] for d in dead)
    assert reasons == sorted(["bad_timestamp", "bad_id", "wrong_column_count", "missing_id",
                              "bad_token_list", "undecodable_bytes"])
    assert {d["source_file"] for d in dead} == {"rec_inter.csv", "src_inter.csv"}
    assert all(d["line"] > 1 for d in dead)
    assert stats["dead_letters_total"] == 6
    assert stats["events"] == 13  # every good row arrived (10 rec + 3 search)
    assert "undecodable_bytes" in stats["dead_letters"]


def test_outputs_feed_the_dataset_and_item_table(kuaisar_out):
    d, out, _ = kuaisar_out
    cfg = DataConfig(**json.load(open(os.path.join(out, "data_config.json"))))
    contract = F.FeatureContract.from_config(cfg)
    batch = next(iter(make_dataset(split_pattern(out, "train"), contract, batch_size=64)))
    assert batch[F.HIST_ITEMS].shape[1] == 3
    assert bool(tf.reduce_all(batch[F.TARGET_ITEM] >= 2))
    table = np.load(os.path.join(out, "item_table.npz"))
    items = _vocab(out, "items")
    i101 = items.index("101") + 2
    attr_vocab = _vocab(out, "attrs")
    assert [attr_vocab[a - 2] for a in table["attrs"][i101] if a] == [
        "first:2", "second:21", "third:211"]
    assert table["text"].shape[1] == 0 and not table["text_mask"].any()


def test_deterministic_runs(tmp_path):
    d = fixtures.write_kuaisar(str(tmp_path / "in"), bad=True)
    outs = [str(tmp_path / f"out{k}") for k in range(2)]
    for o in outs:
        pipeline.run("kuaisar", d, o, max_seq_len=3, num_candidates=4)
    for name in ("items", "query_tokens", "attrs", "users"):
        a = open(os.path.join(outs[0], "vocab", f"{name}.txt"), "rb").read()
        assert a == open(os.path.join(outs[1], "vocab", f"{name}.txt"), "rb").read()
        assert a  # not empty
    for split in SPLITS:
        assert sorted(_examples(outs[0], split)) == sorted(_examples(outs[1], split))


def test_amazon_gzip_sampled_negatives_and_synth_queries(tmp_path):
    d = fixtures.write_amazon(str(tmp_path / "in"), bad=True)
    out = str(tmp_path / "out")
    stats = pipeline.run("amazon", d, out, max_seq_len=10, num_candidates=4)
    assert stats["dead_letters_total"] == 3 and stats["events"] == 12
    train = [_parse_one(r) for r in _examples(out, "train")]
    labels = [e["label"][0] for e in train]
    assert 0.0 in labels and 1.0 in labels  # sampled negatives, one per positive
    assert labels.count(0.0) == labels.count(1.0)
    tokens = _vocab(out, "query_tokens")
    items = _vocab(out, "items")
    meta = {json.loads(ln)["asin"]: json.loads(ln) for ln in open(
        os.path.join(d, "meta_Movies_and_TV.json"))}
    for e in train:
        if e["label"][0] == 1.0 and any(e["target_query"]):
            q = [tokens[t - 2] for t in e["target_query"] if t]
            prev = items[e["hist_items"][-1] - 2]  # the previous positive, not the target
            assert tuple(q) == R.words(meta[prev]["title"])[:6]
    attrs = _vocab(out, "attrs")
    assert "brand:Acme" in attrs and "cat1:Genre For Featured Categories" in attrs


def test_movielens_latin1_both_layouts(tmp_path):
    d = fixtures.write_movielens_100k(str(tmp_path / "ml100k"))
    out = str(tmp_path / "o1")
    stats = pipeline.run("movielens", d, out, max_seq_len=5, num_candidates=3)
    assert stats["dead_letters_total"] == 0 and stats["events"] == 10
    assert "caf" in _vocab(out, "query_tokens")  # 'Café' decoded as latin-1
    d2 = fixtures.write_movielens_1m(str(tmp_path / "ml1m"))
    out2 = str(tmp_path / "o2")
    stats2 = pipeline.run("movielens", d2, out2, max_seq_len=5, num_candidates=3)
    assert stats2["events"] == 8 and "genre:Animation" in _vocab(out2, "attrs")


def test_generic_events_with_inline_vectors(tmp_path):
    d = fixtures.write_events(str(tmp_path / "in"), bad=True)
    out = str(tmp_path / "out")
    # the item records are the catalogue: every item with a vector gets an id
    stats = pipeline.run("events", d, out, max_seq_len=5, num_candidates=3,
                         vocab_from="catalog")
    assert stats["dead_letters_total"] == 3
    assert stats["has_negatives"] is True
    table = np.load(os.path.join(out, "item_table.npz"))
    assert table["text"].shape[1] == 3 and table["text_mask"].sum() == 5
    items = _vocab(out, "items")
    np.testing.assert_allclose(table["text"][items.index("i3") + 2], [0.3, 1.0, 2.0], 1e-6)


def test_missing_input_files_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="rec_inter.csv"):
        pipeline.run("kuaisar", str(tmp_path), str(tmp_path / "o"))


def _write_jsonl(path, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


@pytest.mark.parametrize("vocab_from", ["train", "catalog"])
def test_vocabularies_and_popularity_from_the_training_split(tmp_path, vocab_from):
    """An item, query token and user seen only after the training period never get an id
    (unless the catalogue is given up front, for items), and are never sampled."""
    d = str(tmp_path / "in")
    rows = []
    for u in range(3):  # 5 clicks each: train, ..., valid (t=4), test (t=5)
        for t in range(1, 6):
            item = f"late{u}" if t == 5 else f"i{(u + t) % 4}"
            query = ["lateq"] if t == 5 else ["q"]
            rows.append({"user_id": f"u{u}", "item_id": item, "timestamp": 1000 * t,
                         "query": query, "label": 1})
    _write_jsonl(os.path.join(d, "events.jsonl"), rows)
    _write_jsonl(os.path.join(d, "items.jsonl"), [
        {"item_id": k, "title": "t", "categories": ["c"]}
        for k in ["i0", "i1", "i2", "i3", "late0", "late1", "late2", "never"]])
    out = str(tmp_path / "out")
    pipeline.run("events", d, out, max_seq_len=4, num_candidates=3, vocab_from=vocab_from)
    items, tokens, users = _vocab(out, "items"), _vocab(out, "query_tokens"), _vocab(
        out, "users")
    assert "lateq" not in tokens and "q" in tokens
    assert set(users) == {"u0", "u1", "u2"}
    late = {"late0", "late1", "late2"}
    if vocab_from == "train":
        assert not late & set(items) and "never" not in items
        test = [_parse_one(r) for r in _examples(out, "test")]
        assert test and all(ex["target_item"] == [F.OOV_ID] for ex in test
                            if ex["label"] == [1.0])
    else:
        assert late <= set(items) and "never" in items
    # sampled training negatives come from the vocabulary: never a later-only item id
    vocab_ids = set(range(F.FIRST_ID, F.FIRST_ID + len(items)))
    for ex in map(_parse_one, _examples(out, "train")):
        assert ex["target_item"][0] in vocab_ids


def test_a_duplicated_last_positive_leaves_the_vocabulary_unchanged(tmp_path):
    """Items seen only at validation (t=4) or test (t=5) time get no id; a duplicated row of
    a user's last positive (the test target) must not move that user's training boundary
    onto the test time, which would let the validation-only item into the vocabulary."""
    def run(name, duplicate):
        d = str(tmp_path / name)
        rows = []
        for u in range(3):  # 5 clicks each: train (t=1..3), valid (t=4), test (t=5)
            for t in range(1, 6):
                item = {4: f"val{u}", 5: f"late{u}"}.get(t, f"i{(u + t) % 4}")
                rows.append({"user_id": f"u{u}", "item_id": item, "timestamp": 1000 * t,
                             "query": ["q"], "label": 1})
        if duplicate:
            rows.append(dict(rows[4]))  # u0's last positive, twice
        _write_jsonl(os.path.join(d, "events.jsonl"), rows)
        out = str(tmp_path / f"out_{name}")
        stats = pipeline.run("events", d, out, max_seq_len=4, num_candidates=3)
        return _vocab(out, "items"), stats
    items, _ = run("plain", False)
    items_dup, stats = run("dup", True)
    assert not {"val0", "val1", "val2", "late0"} & set(items)
    assert items_dup == items
    assert stats["rows"]["duplicate_events"] == 1


@pytest.mark.parametrize("unit,scale,expect", [("auto", 1, "s"), ("auto", 1000, "ms"),
                                               ("ms", 1, "ms")])
def test_events_timestamp_unit_is_decided_once_per_input(tmp_path, unit, scale, expect):
    """One unit for the whole input: seconds (auto, all < 1e11), Unix milliseconds (auto),
    or a relative millisecond clock named by the flag; recorded in stats.json. Before, each
    row was guessed alone: a relative ms clock was read as seconds."""
    d = str(tmp_path / "in")
    base = 1_700_000_000 * scale if unit == "auto" else 5_000
    rows = [{"user_id": f"u{u}", "item_id": f"i{(u + t) % 5}", "timestamp": base + 60 * t,
             "label": 1} for u in range(3) for t in range(1, 7)]
    _write_jsonl(os.path.join(d, "events.jsonl"), rows)
    out = str(tmp_path / "out")
    stats = pipeline.run("events", d, out, max_seq_len=4, num_candidates=3,
                         timestamp_unit=unit)
    assert stats["timestamp_unit"] == expect
    seconds = 60.0 if expect == "s" else 0.060  # consecutive events are 60 units apart
    ex = [_parse_one(r) for r in _examples(out, "test")]
    gaps = [g for e in ex for g in e["hist_time_gaps"] if g > 0]
    assert gaps and min(gaps) == pytest.approx(seconds, rel=1e-3)


def test_a_rerun_into_a_used_output_is_refused_unless_overwrite(tmp_path):
    """A grown input writes a different shard count: without the refusal its files would sit
    beside the earlier run's and training would read both. With --overwrite the output is
    replaced whole: only the new run's shards remain."""
    raw = fixtures.write_kuaisar(str(tmp_path / "raw"))
    out = str(tmp_path / "out")
    pipeline.run("kuaisar", raw, out, max_seq_len=4, num_candidates=3, shards=3)
    with pytest.raises(FileExistsError, match="--overwrite"):
        pipeline.run("kuaisar", raw, out, max_seq_len=4, num_candidates=3, shards=2)
    pipeline.run("kuaisar", raw, out, max_seq_len=4, num_candidates=3, shards=2,
                 overwrite=True)
    names = [n for n in os.listdir(out) if n.startswith(("train-", "test-", "timelines-"))]
    assert names and all("-of-00002" in n for n in names), names  # none of the 3-shard run
