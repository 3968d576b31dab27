import csv
import json
import os
import re

import numpy as np
import pytest

from seminar_tf.data import synthetic
from seminar_tf.data.synthetic import SyntheticConfig

LIST_RE = re.compile(r"^\[(\d+(, \d+)*)?\]$")


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("syn")
    synthetic.generate(str(out), SyntheticConfig(num_users=120, num_items=800, seq_len=120,
                                                 seed=3))
    return str(out)


def _rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def test_deterministic_per_seed(generated, tmp_path):
    again, other = tmp_path / "a", tmp_path / "b"
    cfg = SyntheticConfig(num_users=120, num_items=800, seq_len=120, seed=3)
    synthetic.generate(str(again), cfg)
    synthetic.generate(str(other), SyntheticConfig(**{**cfg.__dict__, "seed": 4}))
    for name in ("rec_inter.csv", "src_inter.csv", "item_features.csv", "user_features.csv",
                 "text_vectors.npy", "image_item_ids.txt"):
        with open(os.path.join(generated, name), "rb") as f1, open(again / name, "rb") as f2:
            assert f1.read() == f2.read(), name
    with open(os.path.join(generated, "rec_inter.csv"), "rb") as f1:
        assert f1.read() != (other / "rec_inter.csv").read_bytes()


def test_files_follow_kuaisar_schema(generated):
    rec = _rows(os.path.join(generated, "rec_inter.csv"))
    assert tuple(rec[0]) == synthetic.REC_COLUMNS
    for r in rec[1:]:
        assert len(r) == len(synthetic.REC_COLUMNS)
        int(r[0]), int(r[1])
        ts = float(r[5])
        assert 1.6e12 < ts < 1.8e12 and ts == int(ts)
        assert r[6] in ("0", "1")
    assert any("e+12" in r[5] for r in rec[1:]), "some timestamps use scientific notation"
    src = _rows(os.path.join(generated, "src_inter.csv"))
    assert tuple(src[0]) == synthetic.SRC_COLUMNS
    for r in src[1:]:
        assert len(r) == len(synthetic.SRC_COLUMNS)
        assert LIST_RE.match(r[4]), r[4]
        assert r[5] == "USER_INPUT" and r[8] in synthetic.ITEM_TYPES
        assert int(r[7]) >= 0
    items = _rows(os.path.join(generated, "item_features.csv"))
    assert tuple(items[0]) == synthetic.ITEM_COLUMNS
    assert all(LIST_RE.match(r[1]) for r in items[1:])
    assert any("类目" in r[10] for r in items[1:])
    users = _rows(os.path.join(generated, "user_features.csv"))
    assert tuple(users[0]) == synthetic.USER_COLUMNS and len(users) == 121
    text = np.load(os.path.join(generated, "text_vectors.npy"))
    ids = open(os.path.join(generated, "text_item_ids.txt")).read().split()
    assert text.shape == (len(ids), 32) and len(ids) == 800
    image_ids = open(os.path.join(generated, "image_item_ids.txt")).read().split()
    assert 0 < len(image_ids) < 800  # some items have no image vector


def test_modalities_are_misaligned_views(generated):
    text = np.load(os.path.join(generated, "text_vectors.npy"))
    tid = open(os.path.join(generated, "text_item_ids.txt")).read().split()
    image = np.load(os.path.join(generated, "image_vectors.npy"))
    iid = open(os.path.join(generated, "image_item_ids.txt")).read().split()
    rows = [tid.index(i) for i in iid]
    t, v = text[rows], image
    cos = np.sum(t * v, 1) / np.linalg.norm(t, axis=1) / np.linalg.norm(v, axis=1)
    assert abs(cos.mean()) < 0.2  # different rotations: not aligned as they come
    # but the same items are related: similarity structures agree
    st, sv = np.corrcoef(t[:200]), np.corrcoef(v[:200])
    iu = np.triu_indices(200, 1)
    assert np.corrcoef(st[iu], sv[iu])[0, 1] > 0.5


def test_planted_long_range_effect(generated):
    """Click rate of late recommendation targets is higher when the history holds a
    clicked behaviour of the same second-level category, computed from the files alone."""
    items = _rows(os.path.join(generated, "item_features.csv"))[1:]
    cat2 = {r[0]: r[7] for r in items}
    meta = json.load(open(os.path.join(generated, "meta.json")))
    events = []
    for r in _rows(os.path.join(generated, "rec_inter.csv"))[1:]:
        events.append((int(r[0]), float(r[5]), 0, cat2[r[1]], int(r[6])))
    for r in _rows(os.path.join(generated, "src_inter.csv"))[1:]:
        events.append((int(r[0]), float(r[3]), 1, cat2[r[6]], int(int(r[7]) > 0)))
    events.sort()
    seen, related, unrelated = {}, [], []
    for user, ts, is_search, c, click in events:
        hist = seen.setdefault(user, set())
        if not is_search and ts >= meta["min_target_time"]:
            (related if c in hist else unrelated).append(click)
        if click:
            hist.add(c)
    r, u = np.mean(related), np.mean(unrelated)
    se = np.sqrt(r * (1 - r) / len(related) + u * (1 - u) / len(unrelated))
    assert len(related) > 200 and len(unrelated) > 200
    assert r - u > 5 * se and r > 1.5 * u, (r, u, se)


def test_retired_items_only_early(generated):
    meta = json.load(open(os.path.join(generated, "meta.json")))
    assert meta["stats"]["retired_items"] > 0
    early, late = set(), set()
    for r in _rows(os.path.join(generated, "rec_inter.csv"))[1:]:
        (early if float(r[5]) < meta["min_target_time"] else late).add(r[1])
    assert len(early - late) > 0  # items that never appear after the target window opens


def test_100k_events_in_seconds(tmp_path):
    import time
    t0 = time.time()
    stats = synthetic.generate(str(tmp_path), SyntheticConfig(num_users=380, num_items=4000,
                                                              seq_len=200, seed=1))
    assert stats["events"] >= 100_000
    assert time.time() - t0 < 30


def test_semantic_regime_plants_a_cross_category_lifelong_interest(generated, tmp_path):
    out = str(tmp_path / "sem")
    synthetic.generate(out, SyntheticConfig(num_users=120, num_items=800, seq_len=120, seed=3,
                                            regime="semantic"))
    meta = json.load(open(os.path.join(out, "meta.json")))
    truth = meta["truth"]
    assert meta["config"]["regime"] == "semantic"
    # the lifelong cluster raises the late click rate
    assert truth["late_click_rate_lifelong_interest"] > truth["late_click_rate_other"] + 0.1
    clusters = np.load(os.path.join(out, "semantic_clusters.npy"))
    items = _rows(os.path.join(out, "item_features.csv"))[1:]
    cat2 = np.array([int(r[7]) for r in items])
    # clusters cut across categories: every cluster holds items of many second-level ones
    assert min(len(set(cat2[clusters == s])) for s in set(clusters.tolist())) >= 10
    # text vectors reveal the cluster (nearest cluster mean), categories do not decide it
    text = np.load(os.path.join(out, "text_vectors.npy"))
    means = np.stack([text[clusters == s].mean(0) for s in range(clusters.max() + 1)])
    nearest = np.argmin(((text[:, None, :] - means[None]) ** 2).sum(-1), 1)
    assert np.mean(nearest == clusters) > 0.6
    # the category regime is unchanged by the regime switch
    cat = str(tmp_path / "cat")
    synthetic.generate(cat, SyntheticConfig(num_users=120, num_items=800, seq_len=120, seed=3,
                                            regime="category"))
    for name in ("rec_inter.csv", "src_inter.csv", "item_features.csv"):
        assert open(os.path.join(cat, name)).read() == open(
            os.path.join(generated, name)).read(), name
    with pytest.raises(ValueError, match="regime"):
        synthetic.generate(str(tmp_path / "x"), SyntheticConfig(regime="bogus"))
