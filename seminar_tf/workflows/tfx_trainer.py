"""A TFX Trainer module: `run_fn(fn_args)` in the shape the TFX Trainer calls.

TFX is not a dependency (it does not install on this Python); `fn_args` is duck-typed with
the fields the Trainer passes:

- train_files / eval_files: lists of TFRecord file patterns (contract Examples, gzip);
- serving_model_dir: where the servable SavedModel must be written;
- model_run_dir: logs and checkpoints;
- train_steps / eval_steps: step counts;
- custom_config: dict with `data_dir` (vocabularies + item table from `seminar preprocess`),
  `model` (registry name, default "seminar"), optional `config` (a config dict: partial
  sections), `init_from` (PSU dir), `gsu` ("exact" or "pq"; pq builds codebooks first).
"""
from __future__ import annotations

import os
from typing import Any, Dict


def _get(fn_args: Any, name: str, default=None):
    return getattr(fn_args, name, default) if not isinstance(fn_args, dict) else fn_args.get(
        name, default)


def run_fn(fn_args: Any) -> Dict:
    """Trains on `train_files`, evaluates on `eval_files`, exports to `serving_model_dir`."""
    from seminar_tf import storage
    from seminar_tf.workflows import training
    from seminar_tf.data.dataset import make_dataset
    from seminar_tf.workflows.export import export_to
    custom = dict(_get(fn_args, "custom_config") or {})
    if "data_dir" not in custom:
        raise ValueError("custom_config['data_dir'] (vocabularies and item table) is required")
    data_dir = custom["data_dir"]
    model_name = custom.get("model", "seminar")
    overrides = {k: dict(v) for k, v in (custom.get("config") or {}).items()}
    overrides.setdefault("train", {})["steps_per_epoch"] = int(_get(fn_args, "train_steps"))
    overrides["train"].setdefault("epochs", 1)
    cfg = training.config_for(model_name, data_dir, **overrides)
    run_dir = _get(fn_args, "model_run_dir")
    model_dir = os.path.join(run_dir, "model")
    result = training.train(model_name, data_dir, model_dir, cfg,
                            init_from=custom.get("init_from"), verbose=2,
                            train_files=list(_get(fn_args, "train_files")),
                            eval_files=list(_get(fn_args, "eval_files")))
    gsu = custom.get("gsu", "exact")
    if gsu == "pq":
        from seminar_tf.workflows.codebook_build import build_for_model_dir
        build_for_model_dir(model_dir, data_dir)
    model = training.load_model(model_dir, gsu=gsu)
    eval_steps = _get(fn_args, "eval_steps")
    ds = make_dataset(list(_get(fn_args, "eval_files")), training.contract_of(cfg),
                      batch_size=cfg.train.batch_size, deterministic=True)
    if eval_steps:
        ds = ds.take(int(eval_steps))
    model.compile()
    eval_logs = model.evaluate(ds, return_dict=True, verbose=0)
    report = export_to(model, _get(fn_args, "serving_model_dir"), model_name, data_dir)
    summary = {"train": {k: result[k] for k in ("steps", "train_seconds")},
               "eval": {k: float(v) for k, v in eval_logs.items()}, "export": report}
    storage.write_json(os.path.join(run_dir, "run_fn.json"), summary)
    return summary
