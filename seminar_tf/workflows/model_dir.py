"""The model directory: how a trained ranker is written, found and rebuilt.

A model directory holds `config.json` (the full SeminarConfig), `model.json` (registry name,
data directory), `weights/` (TF checkpoint of every variable, item tables included),
`backup/` (BackupAndRestore state while training runs), `checkpoints/` (best weights on the
validation metric), `logs/` (TensorBoard), `history.csv`, and after evaluation
`metrics.json`; `pq/` after `seminar build-codebooks`.

`_SUCCESS` (`seminar_tf.storage`) commits the directory once training has finished: it lists
the weights, `config.json` and `model.json` and carries the weights' `fingerprint`. A run
into the directory removes it first, so `load_model` refuses a model whose training is
unfinished (killed, or still running) instead of loading its initial weights. Codebooks
record the fingerprint of the weights they were built from and are refused for others.
"""
from __future__ import annotations

import json
import os
from typing import Dict, Optional

import numpy as np

from seminar_tf import features as F
from seminar_tf import storage
from seminar_tf.config import SeminarConfig
from seminar_tf.data.dataset import dataset_manifest, load_data_config  # noqa: F401
from seminar_tf.models.registry import build_model


def load_item_table(data_dir: str) -> Dict[str, np.ndarray]:
    dataset_manifest(data_dir)  # refuses an uncommitted dataset
    return storage.load_npz(os.path.join(data_dir, "item_table.npz"))


def config_for(model_name: str, data_dir: str, config_path: Optional[str] = None,
               **overrides) -> SeminarConfig:
    """The config of `--model model_name` on `data_dir`.

    Precedence, lowest first: defaults < the registry entry of `model_name` (GSU,
    modalities, projections) < the keys a user *wrote* in the config file < the dataset's
    shapes and vocabularies (data section) < `overrides` (command-line flags).

    A config file that sets a registry key differently from the entry (e.g. a partial file
    giving TWIN all modalities) wins, and a note on stderr says so. A *full* config saved by
    an earlier run (every model field present) keeps the registry entry's keys instead (a
    saved SEMINAR config must not silently turn `--model twin` into SEMINAR), also with a
    note.
    """
    import dataclasses
    import sys

    from seminar_tf.config import ConfigError, ModelConfig
    from seminar_tf.models.registry import registry_changes
    written = {}
    if config_path:
        try:
            written = json.loads(storage.read_text(config_path))
        except json.JSONDecodeError as e:
            raise ConfigError(f"{config_path} is not valid JSON: {e}") from e
        if not isinstance(written, dict):
            raise ConfigError(f"{config_path} must hold a JSON object")
    registry = registry_changes(model_name)
    file_model = dict(written.get("model") or {})
    full = set(file_model) >= {f.name for f in dataclasses.fields(ModelConfig)}
    differs = sorted(k for k in registry if k in file_model and _norm(file_model[k]) !=
                     _norm(registry[k]))
    if differs:
        if full:
            for k in differs:
                file_model.pop(k)
            print(f"seminar: note: {config_path} is a full saved config; --model {model_name} "
                  f"keeps its own {', '.join('model.' + k for k in differs)} (values in the "
                  "file ignored)", file=sys.stderr)
        else:
            print(f"seminar: note: {config_path} sets "
                  f"{', '.join(f'model.{k}={file_model[k]!r}' for k in differs)} over "
                  f"--model {model_name}'s {', '.join(f'{k}={registry[k]!r}' for k in differs)}",
                  file=sys.stderr)
    raw = SeminarConfig().to_dict()
    layers = [{"model": registry}, {**written, "model": file_model},
              {"data": load_data_config(data_dir)}, overrides]
    for layer in layers:
        for section, changes in layer.items():
            if section not in raw or not isinstance(changes, dict):
                raise ConfigError(f"unknown or malformed config section {section!r}")
            raw[section].update(changes)
    return SeminarConfig.from_dict(raw)


def _norm(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def contract_of(cfg: SeminarConfig) -> F.FeatureContract:
    return F.FeatureContract.from_config(cfg.data)


def weights_path(model_dir: str) -> str:
    return os.path.join(model_dir, "weights", "model")


def save_model_dir(model, model_dir: str, model_name: str, data_dir: str,
                   commit: bool = True) -> Optional[Dict]:
    """Writes weights, `config.json` and `model.json`; with `commit`, then `_SUCCESS`
    (returned). Without it the directory is left uncommitted (its manifest removed first):
    `train` saves the config up front so a killed run can resume, not be served."""
    storage.uncommit(model_dir)
    storage.makedirs(model_dir)
    for old in storage.glob(weights_path(model_dir) + ".*"):
        storage.remove(old)  # fresh files (TF's ram:// appends to a file opened again)
    model.save_weights(weights_path(model_dir))
    storage.write_text(os.path.join(model_dir, "config.json"), model.config.to_json())
    local = storage.is_local(data_dir)
    storage.write_json(os.path.join(model_dir, "model.json"), {
        "model": model_name, "data_dir": os.path.abspath(data_dir) if local else data_dir})
    if not commit:
        return None
    return commit_model_dir(model_dir)


def commit_model_dir(model_dir: str) -> Dict:
    """Commits the weights, config and model.json under their fingerprint."""
    weights = storage.glob(weights_path(model_dir) + ".*")
    return storage.commit(model_dir, "model", fingerprint=storage.content_fingerprint(weights),
                          exclude=[p for p in _uncommitted_patterns()])


def _uncommitted_patterns():
    # what changes after the commit (evaluation, codebooks) or only matters while training
    return ("backup/*", "checkpoints/*", "logs/*", "pq/*", "workers/*", "*.csv", "*.npz",
            "metrics*.json", "start_steps.txt", "weights/initial*", "export*")


def model_manifest(model_dir: str) -> Dict:
    """The model directory's commit manifest (refuses an unfinished or foreign one)."""
    return storage.manifest(model_dir, "model", hint=(
        ": finish (or resume) training with the same command, or choose a trained model"))


def model_info(model_dir: str) -> Dict[str, str]:
    """The directory's `model.json`: `model` (registry name) and `data_dir` (the dataset it
    was trained on). The one reader of the file (`save_model_dir` is its one writer)."""
    path = os.path.join(model_dir, "model.json")
    if not storage.exists(path):
        raise FileNotFoundError(f"{model_dir} is not a model directory (no model.json)")
    return storage.read_json(path)


def data_dir_of(model_dir: str, data_dir: Optional[str] = None) -> str:
    """`data_dir` if given, else the dataset the model in `model_dir` was trained on."""
    return data_dir or model_info(model_dir)["data_dir"]


def load_model(model_dir: str, gsu: Optional[str] = None):
    """Rebuilds a trained ranker from its directory (config + weights).

    Args:
        model_dir: a directory written by `train`.
        gsu: optionally swap the GSU: "pq" loads the codebooks of `build-codebooks`
            (its `pq/` folder) into a `PQLookupAttention`; "exact" scores float keys.
    """
    fingerprint = model_manifest(model_dir).get("fingerprint")
    cfg = SeminarConfig.from_json(storage.read_text(os.path.join(model_dir, "config.json")))
    pq_info = None
    if gsu == "pq":
        from seminar_tf.pq.build import load_codebooks
        codebooks, codes, pq_info = load_codebooks(model_dir, fingerprint)
        # codebooks written before `pq.method` existed are plain PQ
        cfg = cfg.replace(model={"gsu": "pq"}, pq={"method": "pq", "whiten": False,
                                                   **pq_info["pq_config"]})
    elif gsu is not None:
        cfg = cfg.replace(model={"gsu": gsu})
    model = build_model(cfg)
    model.load_weights(weights_path(model_dir)).expect_partial()
    if pq_info is not None:
        model.gsu.set_codebooks(codebooks, codes)
    return model


def steps_per_epoch(data_dir: str, batch_size: int, split: str = "train",
                    drop_remainder: bool = False) -> Optional[int]:
    """Batches in one pass over `split` from the dataset's stats.json (None if unknown)."""
    path = os.path.join(data_dir, "stats.json")
    if not storage.exists(path):
        return None
    n = storage.read_json(path).get("examples", {}).get(split)
    if not n:
        return None
    return n // batch_size if drop_remainder else -(-n // batch_size)
