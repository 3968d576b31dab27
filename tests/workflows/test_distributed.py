"""Two workers as local processes on loopback with MultiWorkerMirroredStrategy."""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import tensorflow as tf


def _ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_two_workers_end_with_identical_weights(tiny_dataset, tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"model": {"embedding_dim": 8, "num_heads": 2, "top_k": 5,
                                         "short_term_len": 5, "mlp_units": [8],
                                         "tower_units": [4]},
                               "train": {"shuffle_buffer": 0,
                                         "save_initial_weights": True}}))
    out = tmp_path / "model"
    workers = [f"127.0.0.1:{p}" for p in _ports(2)]
    procs = []
    for i in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps(
            {"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}}))
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "seminar_tf.cli", "train", "--model", "din", "--data",
             tiny_dataset, "--out", str(out), "--config", str(cfg), "--strategy",
             "multi_worker", "--epochs", "1", "--steps-per-epoch", "4", "--batch-size", "16",
             "--no-eval"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True))
    for p in procs:
        stdout, stderr = p.communicate(timeout=600)
        assert p.returncode == 0, stderr[-3000:]
        assert '"steps": 4' in stdout
    worker1 = out / "workers" / "worker-1" / "weights"
    chief = tf.train.load_checkpoint(str(out / "weights" / "model"))
    other = tf.train.load_checkpoint(str(worker1 / "model"))
    initial = tf.train.load_checkpoint(str(out / "weights" / "initial"))
    initial_other = tf.train.load_checkpoint(str(worker1 / "initial"))
    names = [n for n, _ in tf.train.list_variables(str(out / "weights" / "model"))
             if n.endswith("VARIABLE_VALUE") and "optimizer" not in n.lower()]
    assert len(names) > 10
    moved = []
    for n in names:
        np.testing.assert_allclose(chief.get_tensor(n), other.get_tensor(n), atol=1e-6,
                                   err_msg=n)
        np.testing.assert_allclose(initial.get_tensor(n), initial_other.get_tensor(n),
                                   atol=1e-6, err_msg=n)  # one start for both workers
        moved.append(not np.allclose(chief.get_tensor(n), initial.get_tensor(n), atol=1e-7))
    # training changed the weights (frozen tables such as text/image vectors stay), and
    # both workers hold the same *updated* values
    trainable = [n for n, m in zip(names, moved) if m]
    assert len(trainable) >= len(names) // 2, [n for n, m in zip(names, moved) if not m]
    assert any("embedding" in n for n in trainable) and any("kernel" in n for n in trainable)
    assert json.load(open(out / "train.json"))["steps"] == 4


def test_parameter_server_cluster_trains(tiny_dataset, tmp_path):
    """chief + worker + ps as local processes: the chief trains through the cluster."""
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"model": {"embedding_dim": 8, "num_heads": 2, "top_k": 5,
                                         "short_term_len": 5, "mlp_units": [8],
                                         "tower_units": [4]}}))
    p = _ports(3)
    cluster = {"chief": [f"127.0.0.1:{p[0]}"], "worker": [f"127.0.0.1:{p[1]}"],
               "ps": [f"127.0.0.1:{p[2]}"]}
    cmd = [sys.executable, "-m", "seminar_tf.cli", "train", "--model", "din", "--data",
           tiny_dataset, "--out", str(tmp_path / "m"), "--config", str(cfg), "--strategy",
           "parameter_server", "--steps-per-epoch", "4", "--no-eval"]
    servers = [subprocess.Popen(cmd, env=dict(os.environ, TF_CONFIG=json.dumps(
        {"cluster": cluster, "task": {"type": role, "index": 0}})),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for role in ("worker", "ps")]
    try:
        chief = subprocess.run(cmd, env=dict(os.environ, TF_CONFIG=json.dumps(
            {"cluster": cluster, "task": {"type": "chief", "index": 0}})),
            capture_output=True, text=True, timeout=600)
        assert chief.returncode == 0, chief.stderr[-3000:]
        assert '"steps": 4' in chief.stdout
        assert (tmp_path / "m" / "weights" / "model.index").exists()
    finally:
        for s in servers:
            s.kill()
            s.wait()


UNEVEN = r"""
import os, sys
sys.path.insert(0, sys.argv[1])
import seminar_tf  # noqa: F401  (Keras 2 first)
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from helpers import random_batch, tiny_config, tiny_item_table
from seminar_tf.models.registry import build_model, model_config
cfg = model_config("twin", tiny_config(dropout=0.0))
reference = build_model(cfg, item_table=tiny_item_table(cfg))  # one device
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    model = build_model(cfg, item_table=tiny_item_table(cfg))
model.set_weights(reference.get_weights())
batch = random_batch(cfg, batch=10, seed=3)
single = float(reference.compute_loss(batch))
split = {0: slice(0, 3), 1: slice(3, 10)}  # 3 and 7 real targets
values = strategy.experimental_distribute_values_from_function(
    lambda ctx: {k: v[split[ctx.replica_id_in_sync_group]] for k, v in batch.items()})
per_replica = strategy.run(tf.function(lambda b: model.compute_loss(b)), args=(values,))
total = float(strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None))
print("LOSSES", single, total)
"""


def test_uneven_replicas_loss_equals_the_single_device_loss(tmp_path):
    """Two replicas with 3 and 7 real targets: the replicas' losses sum to the mean over all
    10 targets (each divides by the all-reduced count), not to a mean of the two means."""
    script = tmp_path / "uneven.py"
    script.write_text(UNEVEN)
    tests_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, str(script), tests_dir], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    single, total = map(float, r.stdout.split("LOSSES")[1].split())
    np.testing.assert_allclose(total, single, rtol=1e-5)
