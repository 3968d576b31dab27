"""A SEMINAR model trained on generated data, and distinct lifelong histories of the same
catalogue: what `pq_attention.py` and `serving_load.py` measure on (cached under `work`)."""
import csv
import os
from collections import defaultdict

import numpy as np

from seminar_tf import features as F


def trained_seminar(work, users=400, items=20000, pretrain_steps=300, top_k=50,
                    embedding_dim=64):
    """(model_dir, data_dir) of a SEMINAR ranker (d=`embedding_dim`, K=`top_k`) pretrained
    (PSU) and trained one epoch on generated data of `users` users and `items` items
    (histories of up to 200 behaviours). Cached: an existing committed model is reused."""
    from beam_pipelines import pipeline
    from seminar_tf import storage
    from seminar_tf.data import synthetic
    from seminar_tf.workflows import training
    from seminar_tf.workflows.pretraining import pretrain
    model_dir, data = os.path.join(work, "model"), os.path.join(work, "data")
    if not storage.is_committed(model_dir):
        raw = os.path.join(work, "raw")
        synthetic.generate(raw, synthetic.SyntheticConfig(
            num_users=users, num_items=items, seq_len=250, seed=0))
        pipeline.run("kuaisar", raw, data, max_seq_len=200, num_candidates=10,
                     overwrite=True)
        cfg = training.config_for("seminar", data, model=dict(top_k=top_k,
                                                                embedding_dim=embedding_dim),
                                  train=dict(batch_size=256, epochs=1))
        pretrain(data, os.path.join(work, "psu"), cfg, verbose=2, steps=pretrain_steps)
        training.train("seminar", data, model_dir, cfg, init_from=os.path.join(work, "psu"),
                       verbose=2)
    return model_dir, data


def vocabularies(data):
    """{"items": {raw id: vocabulary id}, "query_tokens": {...}} of a dataset."""
    vocab = {}
    for name in ("items", "query_tokens"):
        with open(os.path.join(data, "vocab", f"{name}.txt"), encoding="utf-8") as f:
            vocab[name] = {k.rstrip("\n"): i + 2 for i, k in enumerate(f)}
    return vocab


def long_histories(data_cfg, data, work, long_users, long_events, items, L):
    """Context features (numpy, B = `long_users` rows) of generated users' most recent L
    clicks (`long_events` events each, the catalogue of `data`), and stats.

    Distinct users, no concatenated prefixes; `min_length` < L where a user has fewer
    clicks (the rest is padding)."""
    from beam_pipelines.sources.kuaisar import kuaisar_rec, kuaisar_src
    from seminar_tf.data import synthetic
    from seminar_tf.workflows.model_dir import load_item_table
    raw = os.path.join(work, f"long_raw_{long_users}_{long_events}")
    if not os.path.exists(os.path.join(raw, "meta.json")):
        synthetic.generate(raw, synthetic.SyntheticConfig(
            num_users=long_users, num_items=items, seq_len=long_events, seed=0))
    vocab = vocabularies(data)
    clicks = defaultdict(list)
    for fname, parse in (("rec_inter.csv", kuaisar_rec), ("src_inter.csv", kuaisar_src)):
        with open(os.path.join(raw, fname), encoding="utf-8") as f:
            for row in csv.DictReader(f):
                e = parse(row)
                if e.label > 0:
                    clicks[e.user].append(e)
    attrs = load_item_table(data)["attrs"]
    Q = data_cfg.max_query_tokens
    users = sorted(clicks)[:long_users]
    B = len(users)
    out = {F.HIST_ITEMS: np.zeros((B, L), np.int64), F.HIST_QUERY: np.zeros((B, L, Q), np.int64),
           F.HIST_ATTRS: np.zeros((B, L, data_cfg.num_attrs), np.int64),
           F.HIST_SOURCES: np.zeros((B, L), np.int64),
           F.HIST_TIME_GAPS: np.zeros((B, L), np.float32)}
    lengths, last_query, pairs, repeated = [], [], 0, 0
    for b, user in enumerate(users):
        events = sorted(clicks[user], key=lambda e: e.timestamp_ms)[-L:]
        n = len(events)
        lengths.append(n)
        now = events[-1].timestamp_ms + 1000
        item_ids = np.array([vocab["items"].get(e.item, F.OOV_ID) for e in events])
        q = np.zeros((n, Q), np.int64)
        for k, e in enumerate(events):
            ids = [vocab["query_tokens"].get(t, F.OOV_ID) for t in e.query][:Q]
            q[k, :len(ids)] = ids
        out[F.HIST_ITEMS][b, L - n:] = item_ids
        out[F.HIST_QUERY][b, L - n:] = q
        out[F.HIST_ATTRS][b, L - n:] = attrs[np.minimum(item_ids, len(attrs) - 1)]
        out[F.HIST_SOURCES][b, L - n:] = [e.source for e in events]
        out[F.HIST_TIME_GAPS][b, L - n:] = [(now - e.timestamp_ms) / 1000 for e in events]
        keys = {(int(i), tuple(t)) for i, t in zip(item_ids, q)}
        pairs += n
        repeated += n - len(keys)
        last_query.append(next((r for r in q[::-1] if r.any()), np.zeros(Q, np.int64)))
    out[F.USER_ID] = np.full(B, F.OOV_ID, np.int64)
    out[F.TARGET_QUERY] = np.stack(last_query)
    out[F.TARGET_SOURCE] = np.full(B, F.SOURCE_SEARCH, np.int64)
    stats = {"users": B, "min_length": int(min(lengths)), "L": L,
             "repeated_item_query_share": repeated / max(pairs, 1)}
    return out, stats
