"""The blessing gate before a push, as TFX's Evaluator / Pusher: a trained model is published
only if it beats configurable thresholds on the validation split.

- against the popularity baseline (scores = training-time item popularity) on the same
  validation impressions: `metric(model) - metric(popularity) >= min_lift_over_popularity`;
- against the version currently published under `<base>/<name>/` (when there is one), the
  SavedModel itself scored on the same validation Examples through its `serving_default`
  signature: `metric(model) - metric(published) >= -max_drop_vs_published`.

The decision and its figures are returned (the pipeline writes them into its stage outputs
and the run report) and written beside the versions as `blessing-<time>.json`.
`force=True` publishes a model that failed, with the failure recorded.

Figures on a validation split of a few thousand impressions move by ~0.01 AUC between
training seeds; thresholds finer than that gate on noise.
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Dict, Optional

import numpy as np

from seminar_tf import storage


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """What a model must reach on validation to be pushed.

    Attributes:
        metric: "auc" or "gauc" (impression metrics of `seminar_tf.metrics`).
        min_lift_over_popularity: required lead over the popularity baseline.
        max_drop_vs_published: allowed shortfall against the published version.
        split: the split the gate evaluates on.
    """
    metric: str = "auc"
    min_lift_over_popularity: float = 0.0
    max_drop_vs_published: float = 0.0
    split: str = "valid"

    @classmethod
    def from_dict(cls, d: Optional[Dict]) -> "Thresholds":
        d = dict(d or {})
        d.pop("force", None)
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown push thresholds {sorted(unknown)}")
        t = cls(**d)
        if t.metric not in ("auc", "gauc"):
            raise ValueError(f"push.metric must be 'auc' or 'gauc', not {t.metric!r}")
        return t


def _metric(split: Dict[str, np.ndarray], scores: np.ndarray, name: str) -> float:
    from seminar_tf import metrics as M
    if name == "auc":
        return float(M.auc(split["label"], scores))
    return float(M.gauc(split["user"], split["label"], scores))


def published_predictions(version_dir: str, data_dir: str, split: str,
                          batch_size: int = 256) -> Dict[str, np.ndarray]:
    """The published SavedModel's `serving_default` scores of the split's Examples, with
    each Example's own label and user (the columns `impression_metrics` reads)."""
    import tensorflow as tf

    from seminar_tf import features as F
    from seminar_tf.data.dataset import serialized_examples
    fn = tf.saved_model.load(version_dir).signatures["serving_default"]
    spec = {F.LABEL: tf.io.FixedLenFeature([], tf.float32),
            F.USER_ID: tf.io.FixedLenFeature([], tf.int64)}
    cols = {"score": [], "label": [], "user": []}

    def flush(batch):
        t = tf.constant(batch)
        cols["score"].append(fn(examples=t)["score"].numpy().reshape(-1))
        parsed = tf.io.parse_example(t, spec)
        cols["label"].append(parsed[F.LABEL].numpy())
        cols["user"].append(parsed[F.USER_ID].numpy())

    batch = []
    for ex in serialized_examples(data_dir, split):
        batch.append(ex)
        if len(batch) == batch_size:
            flush(batch)
            batch = []
    if batch:
        flush(batch)
    return {k: np.concatenate(v) if v else np.zeros([0]) for k, v in cols.items()}


def latest_version(base: str, name: str) -> Optional[str]:
    """The newest committed version directory under `<base>/<name>/`, if any."""
    d = os.path.join(base, name)
    if not storage.isdir(d):
        return None
    versions = sorted((int(v) for v in storage.listdir(d) if storage.VERSION_RE.fullmatch(v)),
                      reverse=True)
    for v in versions:
        path = os.path.join(d, str(v))
        if storage.is_committed(path):
            try:
                storage.manifest(path, "export")
                return path
            except storage.UncommittedError:
                continue
    return None


def evaluate_for_push(model, data_dir: str, base: str, name: str,
                      thresholds: Thresholds = Thresholds()) -> Dict:
    """The gate's decision: {"blessed", "reasons", "figures", ...}."""
    from seminar_tf.workflows.evaluation import popularity_scores, predict_split
    split = predict_split(model, data_dir, thresholds.split)
    name_m = thresholds.metric
    figures = {"model": _metric(split, split["score"], name_m),
               "popularity": _metric(split, popularity_scores(data_dir, model.config, split),
                                     name_m),
               "examples": int(len(split["label"]))}
    reasons = []
    lift = figures["model"] - figures["popularity"]
    if lift < thresholds.min_lift_over_popularity:
        reasons.append(f"{name_m} {figures['model']:.4f} is {lift:+.4f} over popularity "
                       f"{figures['popularity']:.4f} (needs >= "
                       f"{thresholds.min_lift_over_popularity:+.4f})")
    published = latest_version(base, name)
    if published is not None:
        pub = published_predictions(published, data_dir, thresholds.split)
        if len(pub["score"]) != len(split["label"]):
            raise RuntimeError(f"{published} scored {len(pub['score'])} of the "
                               f"{len(split['label'])} {thresholds.split} examples")
        figures["published"] = _metric(pub, pub["score"], name_m)
        drop = figures["published"] - figures["model"]
        if drop > thresholds.max_drop_vs_published:
            reasons.append(f"{name_m} {figures['model']:.4f} is {drop:.4f} below the published "
                           f"version {published} ({figures['published']:.4f}; allowed drop "
                           f"{thresholds.max_drop_vs_published:.4f})")
    return {"blessed": not reasons, "reasons": reasons, "figures": figures,
            "metric": name_m, "split": thresholds.split, "published_version": published,
            "thresholds": dataclasses.asdict(thresholds)}


def record(base: str, name: str, decision: Dict) -> str:
    """Writes the decision beside the versions; returns its path."""
    path = os.path.join(base, name, f"blessing-{time.strftime('%Y%m%dT%H%M%S')}-"
                        f"{int(time.time() * 1e6) % 1_000_000:06d}.json")
    storage.write_json(path, decision, sort_keys=True)
    return path
