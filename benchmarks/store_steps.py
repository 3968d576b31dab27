"""Steady-state steps of what `seminar train`, `seminar pretrain` and `seminar evaluate` run,
on generated sequence-store data (used by train_throughput.py and pretrain_throughput.py).

The data: generated KuaiSAR-schema logs of `users` users with `events` events each,
preprocessed by the Beam job into the sequence store at max_seq_len=L with 1+99 candidate
groups. A step is timed inside `model.fit` over the input the workflow builds
(`training.train_dataset`: tf.data runs beside the step, as in training), from the end of
the `warmup`-th batch to the end of the last one; examples = real targets of those batches
(counted on an identical pass over the same deterministic input).
"""
import json
import os
import time
from typing import Dict

import numpy as np
import tensorflow as tf


def store_data(work: str, users: int, events: int, L: int) -> str:
    """The generated dataset (cached under `work`)."""
    from beam_pipelines import pipeline
    from seminar_tf.data import synthetic
    raw = os.path.join(work, f"raw-{users}x{events}")
    if not os.path.exists(os.path.join(raw, "meta.json")):
        synthetic.generate(raw, synthetic.SyntheticConfig(
            num_users=users, num_items=20_000, seq_len=events, seed=2))
    out = os.path.join(work, f"data-{users}x{events}-L{L}")
    if not os.path.exists(os.path.join(out, "stats.json")):
        pipeline.run("kuaisar", raw, out, max_seq_len=L, num_candidates=100, overwrite=True,
                     beam_args=["--direct_running_mode=multi_processing",
                                "--direct_num_workers=2"])
    return out


def model_overrides(L: int, K: int) -> Dict:
    return dict(embedding_dim=64, num_heads=4, top_k=K, short_term_len=20,
                gsu_options={"qin": {"first_k": min(2 * K, L)}})


class _Timer(tf.keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.ends = []

    def on_train_batch_end(self, batch, logs=None):
        self.ends.append(time.perf_counter())


def _real_targets(ds, first: int, count: int) -> int:
    n = 0
    for b in ds.skip(first).take(count):
        n += int(b["t_mask"].numpy().sum()) if "t_mask" in b else int(b["label"].shape[0])
    return n


def fit_rate(model, make_ds, warmup: int, steps: int) -> Dict:
    """Examples/s of `model.fit` over `make_ds()` in steady state."""
    timer = _Timer()
    model.fit(make_ds(), epochs=1, steps_per_epoch=warmup + steps, verbose=0,
              callbacks=[timer])
    seconds = timer.ends[-1] - timer.ends[warmup - 1]
    examples = _real_targets(make_ds(), warmup, steps)
    return {"ex_per_s": examples / seconds, "ms_per_step": 1000 * seconds / steps,
            "examples_per_step": examples / steps}


def train_rate(name: str, data: str, L: int, K: int, batch: int, path: str, xla: bool,
               warmup: int, steps: int, eval_groups: int = 16, profile: bool = False):
    """(row, model): `seminar train`'s steps for `path` ("default": `train.input_mode` auto,
    or a named input mode), then `seminar evaluate`'s candidate scoring (steady state: the
    second pass over the candidate groups)."""
    from seminar_tf.data.timelines import input_mode
    from seminar_tf.workflows import training
    cfg = training.config_for(name, data, model=model_overrides(L, K), train=dict(
        batch_size=batch, input_mode="auto" if path == "default" else path,
        jit_compile=xla, steps_per_epoch=warmup + steps))
    tf.keras.utils.set_random_seed(0)
    model = training.build_model(cfg, item_table=training.load_item_table(data))
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3), jit_compile=xla)
    pattern = training.split_pattern(data, "train")
    mode = input_mode(cfg.train.input_mode, pattern)
    contract = training.contract_of(cfg)
    rate = fit_rate(model, lambda: training.train_dataset(pattern, contract, cfg.train, mode,
                                                          repeat=True), warmup, steps)
    row = {"model": name, "L": L, "K": K, "batch": batch, "path": path, "input_mode": mode,
           "xla": xla, "train_ex_per_s": rate["ex_per_s"],
           "train_ms_per_step": rate["ms_per_step"],
           "examples_per_step": rate["examples_per_step"]}
    row.update(eval_rate(model, data, eval_groups))
    if profile and mode == "timelines":
        batch = next(iter(training.train_dataset(pattern, contract, cfg.train, mode,
                                                 repeat=True)))
        row["profile_ms"] = step_profile(model, batch)
    return row


def step_profile(model, batch, repeats: int = 5) -> Dict:
    """Where a timeline step's time goes (median ms, each part its own `tf.function`): the
    windows' pair encoding (`encode_distinct`, as the step runs it) forward and forward +
    backward, the whole forward loss, and the
    whole step's gradients (no optimizer update)."""
    from benchmarks.common import median_seconds
    from seminar_tf.models.windows import encode_distinct
    enc_in = (model.pair_encoder, batch["tl_items"], batch["tl_attrs"], batch["tl_query"])

    def encode_grads():
        with tf.GradientTape() as tape:
            out = encode_distinct(*enc_in)
            total = tf.add_n([tf.reduce_sum(v) for k, v in out.items() if v.dtype.is_floating])
        return tape.gradient(total, model.pair_encoder.trainable_variables)

    def step_grads():
        with tf.GradientTape() as tape:
            loss = model.compute_loss(batch, training=True)
        return tape.gradient(loss, model.trainable_variables)

    parts = {"encode_forward": tf.function(lambda: encode_distinct(*enc_in)["pair"]),
             "encode_forward_backward": tf.function(encode_grads),
             "loss_forward": tf.function(lambda: model.compute_loss(batch, training=True)),
             "step_forward_backward": tf.function(step_grads)}

    return {k: round(1000 * median_seconds(fn, repeats), 1) for k, fn in parts.items()}


def eval_rate(model, data: str, groups_per_batch: int) -> Dict:
    """Users (candidate groups of 1+99) per second through `seminar evaluate`'s path
    (`predict_groups`), steady state: from the end of the first batch (tracing) to the end
    of the last full one (a shorter last batch traces again)."""
    from seminar_tf.workflows import evaluation

    def rate():
        ends = []
        evaluation.predict_groups(model, data, groups_per_batch, batch_ends=ends)
        full = [i for i, (_, n) in enumerate(ends) if n == groups_per_batch]
        last = full[-1]
        if last < 1:
            raise ValueError("too few candidate groups for a steady-state timing")
        groups = sum(n for _, n in ends[1:last + 1])
        return groups / (ends[last][0] - ends[0][0]), groups

    users_per_s, groups = rate()
    row = {"eval_users_per_s": users_per_s, "eval_groups_timed": groups,
           "eval_groups_per_batch": groups_per_batch}
    if model.gsu.needs_keys:  # where `rank` encodes distinct items (`distinct_history`)
        # the same run's baseline: every history behaviour through the item encoder
        model.distinct_history = False
        try:
            row["eval_users_per_s_encode_all"] = rate()[0]
        finally:
            model.distinct_history = True
    return row


def pretrain_rate(data: str, L: int, batch: int, path: str, positions: int, warmup: int,
                  steps: int) -> Dict:
    """`seminar pretrain`'s steps (an example = one target, scoring its `positions` most
    recent behaviours)."""
    from seminar_tf.data.timelines import input_mode
    from seminar_tf.models.psu import PretrainingSearchUnit
    from seminar_tf.workflows import pretraining, training
    cfg = training.config_for("seminar", data, model=model_overrides(L, min(200, L)),
                              train=dict(batch_size=batch, psu_positions=positions,
                                         input_mode="auto" if path == "default" else path))
    tf.keras.utils.set_random_seed(0)
    psu = PretrainingSearchUnit(cfg)
    psu.set_item_table(training.load_item_table(data))
    psu.build_all()
    psu.compile(optimizer=tf.keras.optimizers.Adam(1e-3))
    pattern = training.split_pattern(data, "train")
    mode = input_mode(cfg.train.input_mode, pattern)
    rate = fit_rate(psu, lambda: pretraining.pretrain_dataset(
        pattern, training.contract_of(cfg), cfg.train, mode, repeat=True), warmup, steps)
    return {"L": L, "T": positions, "batch": batch, "path": path, "input_mode": mode,
            "pretrain_ex_per_s": rate["ex_per_s"], "ms_per_step": rate["ms_per_step"],
            "examples_per_step": rate["examples_per_step"]}


def data_facts(data: str) -> Dict:
    with open(os.path.join(data, "stats.json"), encoding="utf-8") as f:
        stats = json.load(f)
    return {"examples": stats.get("examples"), "events": stats.get("events")}
