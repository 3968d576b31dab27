"""The short public surface for notebooks.

    import seminar_tf
    cfg = seminar_tf.load_config(data_dir="runs/demo/preprocess/data", model_name="seminar")
    model = seminar_tf.build_model(cfg, data_dir="runs/demo/preprocess/data")
    model.compile(optimizer="adam")
    model.fit(seminar_tf.make_dataset("runs/demo/preprocess/data", cfg), epochs=1)
"""
from __future__ import annotations

from typing import Dict, Optional



def load_config(path: Optional[str] = None, *, data_dir: Optional[str] = None,
                model_name: Optional[str] = None, **overrides):
    """A SeminarConfig: a JSON file (or defaults), the dataset's shapes and vocabulary sizes
    (`data_dir`), a registry model's changes (`model_name`), then section overrides
    (`model={...}`, `train={...}`, ...)."""
    from seminar_tf import config as C
    if data_dir is not None:
        from seminar_tf.workflows.training import config_for
        return config_for(model_name or "seminar", data_dir, path, **overrides)
    cfg = C.load_config(path, **overrides)
    if model_name is not None:
        from seminar_tf.models.registry import model_config
        cfg = model_config(model_name, cfg)
    return cfg


def make_dataset(data_dir: str, cfg, split: str = "train", input_mode: Optional[str] = None,
                 **kwargs):
    """The parsed, batched tf.data.Dataset of one split (batch size from the config).

    The train split is what `seminar train` reads: by `input_mode` (default
    `cfg.train.input_mode`, "auto"), timeline batches over the sequence store
    (`seminar_tf.data.timelines`; `model.fit` takes them as they are) or per-example
    batches. Other splits: per-example batches in file order.
    """
    from seminar_tf.data.dataset import make_dataset as _make, split_pattern
    from seminar_tf.data.timelines import input_mode as resolve, timeline_dataset
    from seminar_tf.features import FeatureContract
    kwargs.setdefault("batch_size", cfg.train.batch_size)
    pattern = split_pattern(data_dir, split)
    contract = FeatureContract.from_config(cfg.data)
    if split == "train":
        kwargs.setdefault("shuffle_buffer", cfg.train.shuffle_buffer)
        kwargs.setdefault("seed", cfg.train.seed)
        if resolve(input_mode or cfg.train.input_mode, pattern) == "timelines":
            return timeline_dataset(pattern, contract,
                                    targets_per_timeline=cfg.train.targets_per_timeline,
                                    **kwargs)
    else:
        kwargs.setdefault("deterministic", True)
    return _make(pattern, contract, **kwargs)


def build_model(name_or_cfg, data_dir: Optional[str] = None, cfg=None):
    """A LifelongRanker with every variable created (item tables loaded from `data_dir`)."""
    from seminar_tf.models.registry import build_model as _build
    from seminar_tf.workflows.training import load_item_table
    table = load_item_table(data_dir) if data_dir else None
    return _build(name_or_cfg, base=cfg, item_table=table)


def pretrain(data_dir: str, out_dir: str, cfg=None, **kwargs) -> Dict:
    """PSU pretraining (see `seminar_tf.models.psu.pretrain`)."""
    from seminar_tf.workflows.pretraining import pretrain as _pretrain
    cfg = cfg or load_config(data_dir=data_dir, model_name="seminar")
    return _pretrain(data_dir, out_dir, cfg, **kwargs)


def finetune(data_dir: str, model_dir: str, psu_dir: Optional[str] = None, cfg=None,
             model: str = "seminar", **kwargs) -> Dict:
    """Trains a ranker, initialised from a PSU directory when given."""
    from seminar_tf.workflows.training import train
    cfg = cfg or load_config(data_dir=data_dir, model_name=model)
    return train(model, data_dir, model_dir, cfg, init_from=psu_dir, **kwargs)


def evaluate(model_dir: str, data_dir: Optional[str] = None, **kwargs) -> Dict:
    """Test-split impression metrics and candidate ranking metrics of a trained model.

    Args:
        model_dir: a model directory written by `finetune` / `seminar train`.
        data_dir: the dataset (default: the one the model was trained on).
        **kwargs: `seminar_tf.workflows.evaluation.evaluate` options (`gsu`,
            `with_popularity`, `shared_history`, `write`).

    Returns:
        dict with `test` (AUC, GAUC, logloss) and `candidates` (HIT@K, NDCG@K, MRR) metrics.
    """
    from seminar_tf.workflows.evaluation import evaluate as _evaluate
    return _evaluate(model_dir, data_dir, **kwargs)


def export_saved_model(model_dir: str, base: str, name: str = "seminar",
                       version: Optional[int] = None, gsu: Optional[str] = None,
                       xla: bool = False) -> Dict:
    """Exports a trained model as a TF Serving SavedModel `<base>/<name>/<version>/`.

    Args:
        model_dir: a model directory. base, name: the model base path and model name.
        version: the version folder (default: one above the highest present).
        gsu: swap the GSU for serving ("pq" loads the codebooks of `build-codebooks`).
        xla: compile the dense part of every signature with XLA.

    Returns:
        the export report (path, signatures, max |diff| against the Keras model, ...).
    """
    from seminar_tf.workflows.export import export_from_model_dir
    return export_from_model_dir(model_dir, base, name, version, gsu, xla=xla)
