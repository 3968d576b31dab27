"""Training of rankers on a preprocessed dataset directory: `train` fits a registry model
(per-example or timeline batches, any tf.distribute strategy), resumes a killed run from its
BackupAndRestore state, keeps the best weights on validation and writes the model directory
(its layout: `model_dir`). Evaluation is `evaluation`; the names re-exported here from both
keep `training.load_model` / `training.evaluate` working.
"""
from __future__ import annotations

import json
import os
import time
from typing import Dict, Optional, Sequence

import numpy as np

import tensorflow as tf

from seminar_tf import storage
from seminar_tf.config import SeminarConfig
from seminar_tf.data.dataset import make_dataset, split_pattern
from seminar_tf.data.timelines import input_mode
from seminar_tf.workflows.evaluation import evaluate, format_metrics  # noqa: F401  (re-exported)
from seminar_tf.workflows.model_dir import (  # noqa: F401  (re-exported)
    commit_model_dir, config_for, contract_of, load_data_config, load_item_table, load_model,
    save_model_dir, steps_per_epoch, weights_path)
from seminar_tf.models.registry import build_model
from seminar_tf.progress import ProgressBar


class BatchLogger(tf.keras.callbacks.Callback):
    """Appends (step, loss, auc) every `every` steps to a CSV (training curves by step)."""

    def __init__(self, path: str, every: int = 5):
        super().__init__()
        self.path, self.every = path, every

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        if step % self.every == 0 and logs:
            head = "" if storage.exists(self.path) else "step,loss,auc\n"
            storage.append_text(self.path, f"{head}{step},{float(logs.get('loss', np.nan)):.6f},"
                                f"{float(logs.get('auc', np.nan)):.6f}\n")


class StepLogger(tf.keras.callbacks.Callback):
    """Records the optimizer step at train begin (after BackupAndRestore restored it)."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def on_train_begin(self, logs=None):
        storage.append_text(self.path, f"{int(self.model.optimizer.iterations.numpy())}\n")


class InitialWeights(tf.keras.callbacks.Callback):
    """Saves the weights before the first step of a fresh (not resumed) run."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def on_train_begin(self, logs=None):
        if int(self.model.optimizer.iterations.numpy()) == 0:
            self.model.save_weights(self.path)


STRATEGIES = ("default", "mirrored", "multi_worker", "parameter_server")


def make_strategy(name: str = "default"):
    """The tf.distribute strategy for `--strategy` (cluster from TF_CONFIG).

    - default: no distribution (one device);
    - mirrored: synchronous data parallelism over the local devices;
    - multi_worker: synchronous data parallelism over the workers of TF_CONFIG
      (MultiWorkerMirroredStrategy); every worker runs the same command;
    - parameter_server: asynchronous training with variables on parameter servers
      (ParameterServerStrategy); the chief runs `seminar train`, workers and ps run it too
      and turn into servers. Use it when embedding tables (large item / query vocabularies)
      do not fit one machine: variables are sharded across the ps tasks.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "parameter_server":
        resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
        num_ps = len(resolver.cluster_spec().as_dict().get("ps", []))
        partitioner = (tf.distribute.experimental.partitioners.MinSizePartitioner(
            min_shard_bytes=256 << 10, max_shards=num_ps) if num_ps > 1 else None)
        return tf.distribute.ParameterServerStrategy(resolver,
                                                     variable_partitioner=partitioner)
    raise ValueError(f"strategy must be one of {STRATEGIES}, got {name!r}")


def cluster_role():
    """(task_type, task_index, is_chief) from TF_CONFIG (("", 0, True) without a cluster)."""
    tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = tf_config.get("task", {})
    task_type, index = task.get("type", ""), int(task.get("index", 0))
    cluster = tf_config.get("cluster", {})
    is_chief = (task_type == "chief" or (task_type == "worker" and index == 0
                                         and "chief" not in cluster) or not task_type)
    return task_type, index, is_chief


def run_parameter_server_task() -> bool:
    """For ps/worker tasks of a parameter-server cluster: serve until killed; returns False
    for the chief (which trains)."""
    task_type, index, _ = cluster_role()
    if task_type not in ("ps", "worker"):
        return False
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    server = tf.distribute.Server(resolver.cluster_spec(), job_name=task_type,
                                  task_index=index, protocol="grpc", start=True)
    server.join()
    return True


def train(model_name: str, data_dir: str, model_dir: str, cfg: Optional[SeminarConfig] = None,
          *, init_from: Optional[str] = None, extra_callbacks: Sequence = (),
          backup_every_steps: Optional[int] = None, verbose: int = 1,
          model=None, strategy: str = "default", train_files=None, eval_files=None) -> Dict:
    """Trains `model_name` on `data_dir` and writes the model directory.

    Args:
        model_name: registry name (din, sim_hard, sim_soft, eta, twin, qin, full_attention,
            seminar).
        data_dir: output of `seminar preprocess` (vocabularies, item table, splits).
        model_dir: where to write (resumes from `model_dir/backup` if a run was killed).
        cfg: full config (default: `config_for(model_name, data_dir)`).
        init_from: PSU directory to restore encoders/attention from (SEMINAR).
        extra_callbacks: more Keras callbacks.
        backup_every_steps: BackupAndRestore frequency in steps (default: every epoch).
        verbose: 0 silent, 1 one progress line (steps, rate, ETA), 2 Keras' epoch logs.
        model: an already built model (e.g. with restored PSU weights).
        strategy: one of STRATEGIES (see `make_strategy`).
        train_files, eval_files: override the split files (TFX Trainer).

    Returns:
        dict with the Keras history, training seconds and the final step.
    """
    cfg = cfg or config_for(model_name, data_dir)
    tf.keras.utils.set_random_seed(cfg.train.seed)
    dist = make_strategy(strategy)
    task_type, task_index, is_chief = cluster_role()
    if strategy == "multi_worker" and not is_chief:
        # non-chief workers write their copies elsewhere (same weights, no clobbering)
        model_dir = os.path.join(model_dir, "workers", f"{task_type}-{task_index}")
    storage.makedirs(model_dir)
    with dist.scope():
        if model is None:
            model = build_model(cfg, item_table=load_item_table(data_dir))
            if init_from:
                from seminar_tf.workflows.pretraining import restore_into_ranker
                restore_into_ranker(model, init_from, freeze=cfg.train.freeze_psu)
        model.compile(optimizer=tf.keras.optimizers.Adam(cfg.train.learning_rate),
                      jit_compile=cfg.train.jit_compile)
    contract = contract_of(cfg)
    t = cfg.train
    train_pattern = train_files or split_pattern(data_dir, "train")
    eval_pattern = eval_files or split_pattern(data_dir, "valid")
    repeat = t.steps_per_epoch is not None

    def shard_by_data(ds):
        # few large shards: split by examples, not by files, across workers
        if strategy in ("multi_worker", "mirrored"):
            opts = tf.data.Options()
            opts.experimental_distribute.auto_shard_policy = (
                tf.data.experimental.AutoShardPolicy.DATA)
            ds = ds.with_options(opts)
        return ds

    mode = input_mode(t.input_mode, train_pattern, strategy)

    def train_input(input_context=None):
        return shard_by_data(train_dataset(train_pattern, contract, t, mode, repeat))

    resume_step = backup_step(os.path.join(model_dir, "backup"))
    if backup_every_steps and not repeat:
        raise ValueError("backup_every_steps needs train.steps_per_epoch: a mid-epoch resume "
                         "must know where the data stream stopped")
    if strategy == "parameter_server":

        if t.steps_per_epoch is None:
            raise ValueError("parameter_server training needs train.steps_per_epoch")
        train_ds = tf.keras.utils.experimental.DatasetCreator(
            lambda ctx: train_input(ctx).unbatch().shard(
                ctx.num_input_pipelines, ctx.input_pipeline_id).batch(t.batch_size).repeat())
        valid_ds = None
    else:
        # a resumed run continues the data stream where the backup left it: the batches
        # already applied are skipped, not seen twice (epoch-wise backups restart at an
        # epoch boundary, where the stream starts over anyway)
        train_ds = train_input().skip(resume_step) if repeat else train_input()
        valid_ds = shard_by_data(make_dataset(eval_pattern, contract,
                                              batch_size=t.batch_size, deterministic=True))
    monitor = t.monitor if valid_ds is not None else "auc"
    callbacks = [
        tf.keras.callbacks.BackupAndRestore(os.path.join(model_dir, "backup"),
                                            save_freq=backup_every_steps or "epoch"),
        StepLogger(os.path.join(model_dir, "start_steps.txt")),
        tf.keras.callbacks.ModelCheckpoint(os.path.join(model_dir, "checkpoints", "best"),
                                           monitor=monitor, mode="max", save_best_only=True,
                                           save_weights_only=True),
        tf.keras.callbacks.EarlyStopping(monitor=monitor, mode="max",
                                         patience=t.early_stopping_patience,
                                         restore_best_weights=True),
        tf.keras.callbacks.TensorBoard(os.path.join(model_dir, "logs"), write_graph=False,
                                       profile_batch=0),
        tf.keras.callbacks.CSVLogger(os.path.join(model_dir, "history.csv"), append=True),
        BatchLogger(os.path.join(model_dir, "batches.csv")),
        *([InitialWeights(os.path.join(model_dir, "weights", "initial"))]
          if t.save_initial_weights else []),
        *extra_callbacks,
    ]
    if verbose == 1:  # one progress line (steps, rate, ETA) instead of Keras' bar
        callbacks.append(ProgressBar(model_name, t.batch_size, steps_per_epoch=(
            t.steps_per_epoch or steps_per_epoch(data_dir, t.batch_size))))
    # config first (resumable), uncommitted: nothing loads this model until it is trained
    save_model_dir(model, model_dir, model_name, data_dir, commit=False)
    t0 = time.time()
    if strategy == "parameter_server":
        # the coordinator has no validation data and no per-batch logs: keep the callbacks
        # that work on epoch boundaries only
        callbacks = [c for c in callbacks if isinstance(c, (
            tf.keras.callbacks.BackupAndRestore, tf.keras.callbacks.CSVLogger))]
    history = model.fit(train_ds, validation_data=valid_ds, epochs=t.epochs,
                        steps_per_epoch=t.steps_per_epoch, callbacks=callbacks,
                        verbose=0 if verbose == 1 else verbose)
    seconds = time.time() - t0
    save_model_dir(model, model_dir, model_name, data_dir, commit=False)
    result = {"history": {k: [float(x) for x in v] for k, v in history.history.items()},
              "train_seconds": round(seconds, 2), "input_mode": mode,
              "steps": int(model.optimizer.iterations.numpy())}
    storage.write_json(os.path.join(model_dir, "train.json"), result)
    if strategy != "multi_worker" or is_chief:
        commit_model_dir(model_dir)
    return result


def train_dataset(pattern, contract, t, mode: str, repeat: bool) -> tf.data.Dataset:
    """The training input `train` reads: timeline batches (windows of behaviours shared by
    their targets, `seminar_tf.data.timelines`) or per-example batches, by `mode`
    (`input_mode`); `t` is the config's train section."""
    if mode == "timelines":
        from seminar_tf.data.timelines import timeline_dataset
        return timeline_dataset(pattern, contract, targets_per_timeline=t.targets_per_timeline,
                                batch_size=t.batch_size, shuffle_buffer=t.shuffle_buffer,
                                seed=t.seed, repeat=repeat)
    return make_dataset(pattern, contract, batch_size=t.batch_size,
                        shuffle_buffer=t.shuffle_buffer, seed=t.seed, repeat=repeat)


def backup_step(backup_dir: str) -> int:
    """The optimizer step stored by BackupAndRestore in `backup_dir` (0 when none)."""
    for d in (os.path.join(backup_dir, "chief"), backup_dir):
        path = tf.train.latest_checkpoint(d) if storage.isdir(d) else None
        if path:
            reader = tf.train.load_checkpoint(path)
            for name, _ in tf.train.list_variables(path):
                if name.startswith("model/optimizer/") and "iter" in name:
                    return int(reader.get_tensor(name))
    return 0
