"""PSU pretraining and the pretrain -> finetune restore (a workflow over `models.psu`).

`pretrain` trains a `PretrainingSearchUnit` on the training split's histories and writes its
shared weights; `restore_into_ranker` loads them into a `LifelongRanker` (SEMINAR's
projections G_m stay at their identity initialisation) and fails if any expected weight is
not restored.
"""
from __future__ import annotations

import os
import time
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf

from seminar_tf import storage
from seminar_tf.config import SeminarConfig
from seminar_tf.data.dataset import make_dataset, split_pattern
from seminar_tf.data.timelines import input_mode, timeline_dataset
from seminar_tf.workflows.model_dir import contract_of, load_item_table, steps_per_epoch
from seminar_tf.models.psu import SHARED, PretrainingSearchUnit
from seminar_tf.progress import ProgressBar


def pretrain(data_dir: str, out_dir: str, cfg: SeminarConfig, *, verbose: int = 1,
             steps: Optional[int] = None) -> Dict:
    """Pretrains a PSU on the training split's histories; writes `out_dir`.

    Writes `psu/ckpt-*` (the shared weights), `config.json`, `pretrain.json` (loss history,
    alignment statistics before and after, timings).
    """
    tf.keras.utils.set_random_seed(cfg.train.seed)
    storage.makedirs(out_dir)
    table = load_item_table(data_dir)
    psu = PretrainingSearchUnit(cfg)
    psu.set_item_table(table)
    psu.build_all()
    before = alignment_report(psu, table)
    psu.compile(optimizer=tf.keras.optimizers.Adam(cfg.train.learning_rate),
                jit_compile=cfg.train.jit_compile)
    t = cfg.train
    pattern = split_pattern(data_dir, "train")
    mode = input_mode(t.input_mode, pattern)
    ds = pretrain_dataset(pattern, contract_of(cfg), t, mode,
                          repeat=(steps or t.steps_per_epoch) is not None)
    t0 = time.time()
    hist = psu.fit(ds, epochs=t.epochs if steps is None else 1,
                   steps_per_epoch=steps or t.steps_per_epoch,
                   verbose=0 if verbose == 1 else verbose,
                   callbacks=[tf.keras.callbacks.TerminateOnNaN()] + (
                       [ProgressBar("pretrain", t.batch_size, steps_per_epoch=(
                           steps or t.steps_per_epoch or steps_per_epoch(
                               data_dir, t.batch_size, drop_remainder=True)))]
                       if verbose == 1 else []))
    seconds = time.time() - t0
    after = alignment_report(psu, table)
    psu.shared_checkpoint().save(os.path.join(out_dir, "psu", "ckpt"))
    storage.write_text(os.path.join(out_dir, "config.json"), cfg.to_json())
    result = {"history": {k: [float(x) for x in v] for k, v in hist.history.items()},
              "seconds": round(seconds, 2), "input_mode": mode, "alignment_before": before,
              "alignment_after": after}
    storage.write_json(os.path.join(out_dir, "pretrain.json"), result, sort_keys=True)
    return result


def pretrain_dataset(pattern, contract, t, mode: str, repeat: bool) -> tf.data.Dataset:
    """The PSU's input: timeline batches (`mode` "timelines": one encoding of each window
    for the scored positions of all its targets, `PretrainingSearchUnit.losses_of`) or
    per-example batches (full batches only: in-batch negatives need company)."""
    if mode == "timelines":
        return timeline_dataset(pattern, contract, targets_per_timeline=t.targets_per_timeline,
                                batch_size=t.batch_size, shuffle_buffer=t.shuffle_buffer,
                                seed=t.seed, repeat=repeat)
    return make_dataset(pattern, contract, batch_size=t.batch_size,
                        shuffle_buffer=t.shuffle_buffer, seed=t.seed, repeat=repeat,
                        drop_remainder=True)


def alignment_report(model, table: Dict[str, np.ndarray], max_items: int = 5000,
                     k: int = 10) -> Dict[str, float]:
    """Mean cosine between the text and image embeddings of the same item, and recall@k of
    text -> image retrieval across items (items having both vectors)."""
    enc = model.pair_encoder.item_encoder
    if "text" not in enc.modalities or "image" not in enc.modalities:
        return {}
    both = np.flatnonzero(table["text_mask"] & table["image_mask"])[:max_items]
    if len(both) < 2:
        return {}
    ids = tf.constant(both, tf.int64)
    text, _ = enc.text_encoder(ids)
    image, _ = enc.image_encoder(ids)
    t = tf.math.l2_normalize(text, -1).numpy()
    v = tf.math.l2_normalize(image, -1).numpy()
    cos = float(np.mean(np.sum(t * v, -1)))
    sims = t @ v.T
    own = np.diag(sims)
    rank = np.sum(sims > own[:, None], 1)
    return {"mean_cosine_text_image": cos, f"recall@{k}_text_to_image": float(
        np.mean(rank < k)), "items": int(len(both))}


def restore_into_ranker(ranker, psu_dir: str, freeze: bool = False) -> List[str]:
    """Restores the PSU's encoders, fusion, attention and source embedding into `ranker`.

    Returns the restored variable paths. Raises if any weight saved by the PSU has no
    counterpart in the ranker or was not restored, or if nothing was restored.
    """
    path = tf.train.latest_checkpoint(os.path.join(psu_dir, "psu"))
    if path is None:
        raise FileNotFoundError(f"no PSU checkpoint under {psu_dir}/psu: run "
                                "`seminar pretrain` first")
    ckpt = tf.train.Checkpoint(**{k: getattr(ranker, k) for k in SHARED})
    # SEMINAR's G_m exist only in the ranker (identity init); every saved weight is checked
    # below against its ranker counterpart instead of asserting a one-to-one object match.
    ckpt.restore(path).expect_partial()
    saved = [name for name, _ in tf.train.list_variables(path)
             if name.split("/")[0] in SHARED and name.endswith(".ATTRIBUTES/VARIABLE_VALUE")]
    reader = tf.train.load_checkpoint(path)
    restored = []
    lookup = _variable_paths(ranker)
    missing = []
    for name in saved:
        key = name[:-len("/.ATTRIBUTES/VARIABLE_VALUE")]
        var = lookup.get(key)
        if var is None or not np.array_equal(var.numpy(), reader.get_tensor(name)):
            missing.append(key)
        else:
            restored.append(key)
    if missing or not restored:
        raise RuntimeError(f"PSU weights not restored into the ranker: {missing or 'none'}")
    if freeze:
        enc = ranker.pair_encoder
        for layer in (enc.query_encoder, ranker.esu, ranker.source_embedding,
                      enc.item_encoder.fusion):
            layer.trainable = False
        for name in ("id_embedding", "text_encoder", "image_encoder", "attr_encoder"):
            if hasattr(enc.item_encoder, name):
                getattr(enc.item_encoder, name).trainable = False
    return restored


def _variable_paths(ranker) -> Dict[str, tf.Variable]:
    """Checkpoint paths (as saved by `shared_checkpoint`) of the ranker's shared variables."""
    from tensorflow.python.checkpoint import graph_view  # stable in TF 2.x
    root = tf.train.Checkpoint(**{k: getattr(ranker, k) for k in SHARED})
    out = {}
    view = graph_view.ObjectGraphView(root)
    objects, paths = view.breadth_first_traversal()
    for obj in objects:
        if isinstance(obj, tf.Variable):
            path = "/".join(ref.name for ref in paths[obj])
            out[path] = obj
    return out
