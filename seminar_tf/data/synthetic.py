"""Synthetic lifelong search + recommendation logs in the exact KuaiSAR schema.

The generator plants the effects SEMINAR exploits, so that models can be told apart.

Generative process (all draws from one `numpy.random.Generator` seeded by `seed`):

1. **Categories and latent item vectors.** `n_cat1` top-level categories, each with
   `cat2_per_cat1` second-level categories (third level: 3 per second level; fourth level
   absent, written as 0). Item i of second-level category c has a latent vector
   ``z_i = mu_cat1 + 0.7 mu_c + 0.35 eps`` in R^`latent_dim`. Item popularity is Zipf-like.
2. **Misaligned modalities.** Pretrained text and image vectors are noisy views of z through
   *different* random orthonormal embeddings: ``text_i = R_t z_i + 0.3 eps``,
   ``image_i = R_v z_i + 0.3 eps`` (R_t, R_v independent), so text and image live in
   rotated, unaligned spaces. About 5% of items have no image vector (absent from the id list).
   Captions are token lists: tokens of the item's categories plus item-specific tokens.
3. **Queries tied to categories.** Each second-level category owns 4 keyword tokens, each
   top-level category 2; a query is 1-3 tokens of the category the user is searching.
4. **Users with several long-term interests.** A user has 2-4 *active* interests
   (second-level categories) and one *lifelong* interest that the user engages with only in
   the first `early_fraction` of their timeline; afterwards it is visible only far back in the
   history, yet it still raises the click probability of its items for the rest of the
   timeline.
5. **Events.** Each user has about `seq_len` events over `days` days. With probability
   `search_prob` an event is a search session: the user picks an active interest, types a
   query of its tokens and is shown 3 items (from that category or, with probability 0.3 each,
   a random item); shown items are clicked with a probability that depends on whether they
   match the query and the user's interests (unclicked shown items are rows with
   click_cnt=0). Otherwise it is a recommendation impression: the item is drawn from an active
   interest (40%), the lifelong interest (15%) or the popularity distribution (45%), and is
   clicked with probability ``sigmoid(-2.2 + 2.6 [category in the user's interests,
   lifelong included] + 0.8 [same top-level category as an interest] + 1.2 [the user searched
   this category in their last 5 events] + q_i)`` where q_i is a per-item quality term. Search
   and browsing thus inform each other through shared interests and recent-search intent.
6. **Two regimes** (`regime`). "category" (the default, everything above): the lifelong
   interest is a second-level category, so "same category as a past click" (SIM-hard's
   rule) retrieves it by construction. "semantic": every item also belongs to one of
   `n_semantic` *semantic clusters* drawn independently of its categories, its latent vector
   gains a cluster term (``z_i = mu_cat1 + 0.7 mu_c + 1.2 nu_s + 0.35 eps``, so text and image
   reveal the cluster), and the user's lifelong interest is a *cluster*: early in the
   timeline the user engages with its items (from every category), and afterwards an item of
   that cluster still gets the interest boost in the click logit, whatever its category.
   Category matching has no built-in advantage there; the modalities carry the signal.
   Active interests, searches and queries stay category-based in both regimes.
7. **History-only items.** A fraction `retired_fraction` of items is *retired*: they occur
   only in the first `early_fraction` of each user's timeline. Building examples with
   `min_target_time = meta["min_target_time"]` (every event before it is history only) makes
   them appear only in histories, never as targets.

Outputs in `out_dir`: `rec_inter.csv`, `src_inter.csv`, `item_features.csv`,
`user_features.csv` (KuaiSAR columns, docs/design.md §4; keyword/caption lists written like
`[20, 34, 3]`, timestamps unix ms as floats), `text_vectors.npy` + `text_item_ids.txt`,
`image_vectors.npy` + `image_item_ids.txt`, in the semantic regime `semantic_clusters.npy`
(each item's cluster, in `text_item_ids.txt` order; ground truth only), and `meta.json` (the
parameters, the suggested
`min_target_time` in unix ms, and the ground truth used by tests).
"""
from __future__ import annotations

import csv
import dataclasses
import datetime
import os
from typing import Dict

import numpy as np

from seminar_tf import storage

ITEM_TYPES = ("VIDEO", "IMAGE_ATLAS", "LIVE", "COMMODITY")
REC_COLUMNS = ("user_id", "item_id", "playing_time", "duration_ms", "time", "timestamp",
               "click", "forward", "like", "follow", "search", "search_item_related")
SRC_COLUMNS = ("user_id", "search_session_id", "search_session_time",
               "search_session_timestamp", "keyword", "search_source", "item_id", "click_cnt",
               "item_type")
ITEM_COLUMNS = ("item_id", "caption", "author_id", "item_type", "upload_time", "upload_type",
                "first_level_category_id", "second_level_category_id",
                "third_level_category_id", "fourth_level_category_id",
                "first_level_category_name", "second_level_category_name",
                "third_level_category_name", "fourth_level_category_name",
                "first_level_category_name_en", "second_level_category_name_en",
                "third_level_category_name_en", "fourth_level_category_name_en")
USER_COLUMNS = ("user_id", "search_active_level", "rec_active_level", "onehot_feat1",
                "onehot_feat2")
START_MS = 1_684_000_000_000  # 2023-05-13, the KuaiSAR period


@dataclasses.dataclass
class SyntheticConfig:
    """Parameters of the generator (see the module docstring)."""
    num_users: int = 500
    num_items: int = 5_000
    seq_len: int = 200
    seed: int = 0
    n_cat1: int = 10
    cat2_per_cat1: int = 6
    latent_dim: int = 16
    text_dim: int = 32
    image_dim: int = 32
    search_prob: float = 0.3
    early_fraction: float = 0.35
    retired_fraction: float = 0.1
    missing_image_fraction: float = 0.05
    days: int = 60
    regime: str = "category"
    n_semantic: int = 12


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _orthonormal(rng, rows, cols):
    q, _ = np.linalg.qr(rng.normal(size=(rows, rows)))
    return q[:, :cols]


def _fmt_list(tokens) -> str:
    return "[" + ", ".join(str(int(t)) for t in tokens) + "]"


def _fmt_time(ms: float) -> str:
    t = datetime.datetime.fromtimestamp(ms / 1000.0, tz=datetime.timezone.utc)
    return t.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def generate(out_dir: str, cfg: SyntheticConfig) -> Dict[str, object]:
    """Writes a synthetic KuaiSAR-schema dataset to `out_dir` and returns its statistics."""
    if cfg.regime not in ("category", "semantic"):
        raise ValueError(f"regime must be 'category' or 'semantic', not {cfg.regime!r}")
    semantic = cfg.regime == "semantic"
    rng = np.random.default_rng(cfg.seed)
    storage.makedirs(out_dir)
    n_cat2 = cfg.n_cat1 * cfg.cat2_per_cat1
    M = cfg.num_items

    # --- categories, latent vectors, modalities -------------------------------------------
    mu1 = rng.normal(size=(cfg.n_cat1, cfg.latent_dim))
    mu2 = rng.normal(size=(n_cat2, cfg.latent_dim))
    cat2_of_item = rng.integers(0, n_cat2, size=M)
    cat1_of_cat2 = np.arange(n_cat2) // cfg.cat2_per_cat1
    cat1_of_item = cat1_of_cat2[cat2_of_item]
    cat3_of_item = cat2_of_item * 3 + rng.integers(0, 3, size=M)
    z = mu1[cat1_of_item] + 0.7 * mu2[cat2_of_item] + 0.35 * rng.normal(
        size=(M, cfg.latent_dim))
    sem_of_item = np.full(M, -1)
    if semantic:  # extra draws only in this regime: "category" datasets stay unchanged
        nu = rng.normal(size=(cfg.n_semantic, cfg.latent_dim))
        sem_of_item = rng.integers(0, cfg.n_semantic, size=M)
        z = z + 1.2 * nu[sem_of_item]
    rot_text = _orthonormal(rng, cfg.text_dim, cfg.latent_dim)
    rot_image = _orthonormal(rng, cfg.image_dim, cfg.latent_dim)
    text = (z @ rot_text.T + 0.3 * rng.normal(size=(M, cfg.text_dim))).astype(np.float32)
    image = (z @ rot_image.T + 0.3 * rng.normal(size=(M, cfg.image_dim))).astype(np.float32)
    popularity = 1.0 / np.arange(1, M + 1) ** 0.8
    popularity = popularity[rng.permutation(M)]
    popularity /= popularity.sum()
    quality = 0.5 * rng.normal(size=M)
    retired = rng.random(M) < cfg.retired_fraction
    item_raw_id = np.arange(M) + 1000  # raw ids as in the logs (not vocabulary ids)
    author = rng.integers(1, max(2, M // 10), size=M)
    item_type = rng.integers(0, len(ITEM_TYPES), size=M)

    # keyword tokens: 4 per cat2, 2 per cat1, 50 noise tokens
    cat2_tokens = np.arange(n_cat2 * 4).reshape(n_cat2, 4) + 1
    cat1_tokens = np.arange(cfg.n_cat1 * 2).reshape(cfg.n_cat1, 2) + cat2_tokens.max() + 1
    noise_tokens = np.arange(50) + cat1_tokens.max() + 1

    items_by_cat2 = [np.flatnonzero((cat2_of_item == c) & ~retired) for c in range(n_cat2)]
    retired_by_cat2 = [np.flatnonzero((cat2_of_item == c) & retired) for c in range(n_cat2)]
    # semantic regime: the lifelong interest's pools are clusters (ids n_cat2 + s)
    for s_ in range(cfg.n_semantic if semantic else 0):
        items_by_cat2.append(np.flatnonzero((sem_of_item == s_) & ~retired))
        retired_by_cat2.append(np.flatnonzero((sem_of_item == s_) & retired))
    active_items = np.flatnonzero(~retired)
    active_cum = np.cumsum(popularity[active_items])
    active_cum /= active_cum[-1]
    cat2_pop = np.bincount(cat2_of_item, weights=popularity, minlength=n_cat2)
    cat2_pop /= cat2_pop.sum()

    rec_rows, src_rows = [], []
    span_ms = cfg.days * 86_400_000
    session_id = 0
    truth_related, truth_click, truth_lifelong = [], [], []
    for u in range(cfg.num_users):
        n_active = rng.integers(2, 5)
        interests = rng.choice(n_cat2, size=n_active + 1, replace=False, p=cat2_pop)
        active, lifelong = interests[:n_active], interests[n_active]
        if semantic:  # the lifelong interest is a cluster; searches stay on categories
            lifelong = n_cat2 + int(rng.integers(0, cfg.n_semantic))
            interests = interests[:n_active]
        liked = set(interests.tolist())
        liked_cat1 = set(cat1_of_cat2[interests].tolist())
        lifelong_cluster = lifelong - n_cat2 if semantic else -2
        T = max(8, int(rng.normal(cfg.seq_len, cfg.seq_len * 0.1)))
        times = START_MS + np.sort(rng.integers(0, span_ms, size=T)).astype(np.int64)
        early_until = START_MS + cfg.early_fraction * span_ms
        recent_search = []
        clicked_cat2 = set()
        for t_ms in times:
            early = t_ms < early_until
            pool_interests = interests if early else active
            if rng.random() < cfg.search_prob:
                c = int(rng.choice(pool_interests))
                n_tok = rng.integers(1, 4)
                query = list(rng.choice(cat2_tokens[c], size=min(n_tok, 3), replace=False))
                if rng.random() < 0.3:
                    query.append(int(rng.choice(cat1_tokens[cat1_of_cat2[c]])))
                if rng.random() < 0.1:
                    query.append(int(rng.choice(noise_tokens)))
                session_id += 1
                for _ in range(3):
                    if rng.random() < 0.7:
                        i = _draw_from_cat(rng, c, items_by_cat2, retired_by_cat2, early,
                                           active_items, active_cum)
                    else:
                        i = _popular(rng, active_items, active_cum)
                    logit = (-1.0 + 2.5 * (cat2_of_item[i] == c)
                             + 0.8 * (cat2_of_item[i] in liked) + quality[i])
                    clicks = int(rng.random() < _sigmoid(logit))
                    src_rows.append((u, session_id, t_ms, query, i, clicks))
                    if clicks:
                        clicked_cat2.add(int(cat2_of_item[i]))
                recent_search.append(c)
            else:
                r = rng.random()
                if r < 0.40:
                    i = _draw_from_cat(rng, int(rng.choice(active)), items_by_cat2,
                                       retired_by_cat2, early, active_items, active_cum)
                elif r < 0.55:
                    i = _draw_from_cat(rng, int(lifelong), items_by_cat2, retired_by_cat2,
                                       early, active_items, active_cum)
                else:
                    i = _popular(rng, active_items, active_cum)
                c = int(cat2_of_item[i])
                match = c in liked or sem_of_item[i] == lifelong_cluster
                logit = (-2.2 + 2.6 * match + 0.8 * (cat1_of_item[i] in liked_cat1)
                         + 1.2 * (c in recent_search[-5:]) + quality[i])
                click = int(rng.random() < _sigmoid(logit))
                rec_rows.append((u, i, t_ms, click))
                if not early:
                    truth_related.append(c in clicked_cat2)
                    truth_lifelong.append(sem_of_item[i] == lifelong_cluster if semantic
                                          else c == lifelong)
                    truth_click.append(click)
                if click:
                    clicked_cat2.add(c)
                recent_search.append(-1)

    # --- write files ------------------------------------------------------------------------
    n_sci = 0
    with _text(os.path.join(out_dir, "rec_inter.csv")) as f:
        w = csv.writer(f)
        w.writerow(REC_COLUMNS)
        for k, (u, i, t_ms, click) in enumerate(rec_rows):
            duration = int(5000 + (item_raw_id[i] * 7919) % 55000)
            playing = int(duration * (0.6 + 0.4 * rng.random())) if click else int(
                duration * 0.1 * rng.random())
            ts = f"{t_ms:.12e}" if k % 7 == 0 else f"{float(t_ms):.1f}"
            n_sci += k % 7 == 0
            w.writerow((u, item_raw_id[i], playing, duration, _fmt_time(t_ms), ts, click,
                        int(click and rng.random() < 0.05), int(click and rng.random() < 0.2),
                        int(click and rng.random() < 0.02), 0, 0))
    with _text(os.path.join(out_dir, "src_inter.csv")) as f:
        w = csv.writer(f)
        w.writerow(SRC_COLUMNS)
        for u, sid, t_ms, query, i, clicks in src_rows:
            w.writerow((u, sid, _fmt_time(t_ms), f"{float(t_ms):.1f}", _fmt_list(query),
                        "USER_INPUT", item_raw_id[i], clicks, ITEM_TYPES[item_type[i]]))
    with _text(os.path.join(out_dir, "item_features.csv")) as f:
        w = csv.writer(f)
        w.writerow(ITEM_COLUMNS)
        for i in range(M):
            c1, c2, c3 = cat1_of_item[i], cat2_of_item[i], cat3_of_item[i]
            caption = list(rng.choice(cat2_tokens[c2], size=2, replace=False)) + [
                int(cat1_tokens[c1][0]), int(noise_tokens[i % len(noise_tokens)])]
            upload_ms = START_MS - int(rng.integers(0, 30 * 86_400_000))
            w.writerow((item_raw_id[i], _fmt_list(caption), author[i], ITEM_TYPES[item_type[i]],
                        _fmt_time(upload_ms)[:10], "UPLOAD", c1 + 1, 100 + c2, 1000 + c3, 0,
                        f"一级类目{c1 + 1}", f"二级类目{c2}", f"三级类目{c3}", "",
                        f"category_{c1 + 1}", f"subcategory_{c2}", f"subsubcategory_{c3}", ""))
    with _text(os.path.join(out_dir, "user_features.csv")) as f:
        w = csv.writer(f)
        w.writerow(USER_COLUMNS)
        for u in range(cfg.num_users):
            w.writerow((u, int(rng.integers(1, 4)), int(rng.integers(1, 4)),
                        int(rng.integers(0, 8)), int(rng.integers(0, 40))))
    has_image = rng.random(M) >= cfg.missing_image_fraction
    if semantic:  # ground truth for tests and analysis (not an input of any pipeline)
        storage.save_npy(os.path.join(out_dir, "semantic_clusters.npy"), sem_of_item)
    storage.save_npy(os.path.join(out_dir, "text_vectors.npy"), text)
    _write_ids(os.path.join(out_dir, "text_item_ids.txt"), item_raw_id)
    storage.save_npy(os.path.join(out_dir, "image_vectors.npy"), image[has_image])
    _write_ids(os.path.join(out_dir, "image_item_ids.txt"), item_raw_id[has_image])

    related = np.array(truth_related, bool)
    lifelong_hit = np.array(truth_lifelong, bool)
    clicks = np.array(truth_click, float)
    stats = {
        "rec_events": len(rec_rows),
        "search_rows": len(src_rows),
        "events": len(rec_rows) + len(src_rows),
        "users": cfg.num_users,
        "items": M,
        "retired_items": int(retired.sum()),
        "rec_click_rate": float(np.mean([r[3] for r in rec_rows])) if rec_rows else 0.0,
        "search_click_rate": float(np.mean([r[5] for r in src_rows])) if src_rows else 0.0,
        "scientific_timestamps": int(n_sci),
    }
    meta = {
        "generator": "seminar_tf.data.synthetic",
        "config": dataclasses.asdict(cfg),
        "min_target_time": float(START_MS + cfg.early_fraction * span_ms),
        "stats": stats,
        "truth": {
            "late_click_rate_related_history": float(clicks[related].mean())
            if related.any() else None,
            "late_click_rate_unrelated_history": float(clicks[~related].mean())
            if (~related).any() else None,
            "late_click_rate_lifelong_interest": float(clicks[lifelong_hit].mean())
            if lifelong_hit.any() else None,
            "late_click_rate_other": float(clicks[~lifelong_hit].mean())
            if (~lifelong_hit).any() else None,
        },
    }
    storage.write_json(os.path.join(out_dir, "meta.json"), meta, sort_keys=True)
    return stats


def _popular(rng, items, cum) -> int:
    return int(items[min(np.searchsorted(cum, rng.random()), len(items) - 1)])


def _draw_from_cat(rng, c, items_by_cat2, retired_by_cat2, early, active_items, active_cum):
    pool = items_by_cat2[c]
    if early and len(retired_by_cat2[c]) and rng.random() < 0.4:
        pool = retired_by_cat2[c]
    if len(pool) == 0:
        return _popular(rng, active_items, active_cum)
    return int(rng.choice(pool))


def _write_ids(path, ids) -> None:
    storage.write_text(path, "\n".join(str(int(i)) for i in ids) + "\n")


def _text(path):
    """A text writer for `path` on any filesystem (csv rows end in \\r\\n as csv writes)."""
    import tensorflow as tf
    return tf.io.gfile.GFile(path, "w")
