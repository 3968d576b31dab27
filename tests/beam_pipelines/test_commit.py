"""Preprocessing outputs are published whole: staged, then committed with a `_SUCCESS`
manifest that readers require and read from (`beam_pipelines.fileio.commit_staging`)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from beam_pipelines import pipeline, shards
from seminar_tf import storage
from seminar_tf.data.dataset import load_data_config, make_dataset, split_pattern

import raw_fixtures as fixtures

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def published(out):
    """{relative path: bytes} of every file the manifest lists; stats.json without its
    wall-clock field (the only one that differs between two identical runs)."""
    m = storage.manifest(out, "dataset")
    files = {}
    for rel in m["files"]:
        data = open(os.path.join(out, rel), "rb").read()
        if rel == "stats.json":
            stats = json.loads(data)
            stats.pop("seconds")
            data = json.dumps(stats, sort_keys=True).encode()
        files[rel] = data
    return files


def _count(files, contract):
    return sum(int(b["label"].shape[0]) for b in make_dataset(files, contract, batch_size=64))


def test_a_rerun_with_a_grown_input_trains_on_the_new_run_only(tmp_path):
    """A previous run's shard beside a committed run (as a rerun into a used folder left
    it before this fix) is not read: readers read what the manifest lists."""
    from seminar_tf.data.dataset import dataset_contract
    small = fixtures.write_kuaisar(str(tmp_path / "small"))
    old = str(tmp_path / "old")
    pipeline.run("kuaisar", small, old, max_seq_len=4, num_candidates=3, shards=3)
    grown = str(tmp_path / "grown")
    shutil.copytree(small, grown)
    with open(os.path.join(grown, "rec_inter.csv"), "a", encoding="utf-8") as f:
        f.write("".join(f"{u},{100 + t},5000,10000,2023-05-22 12:00:00.000,"
                        f"{1684750000000 + 60000 * t}.0,1,0,0,0,0,0\n"
                        for u in range(4, 8) for t in range(5)))
    out = str(tmp_path / "out")
    stats = pipeline.run("kuaisar", grown, out, max_seq_len=4, num_candidates=3, shards=2)
    for name in os.listdir(old):  # the earlier run's 3-shard files dropped beside the new
        if name.startswith(("train-", "timelines-")):
            shutil.copy(os.path.join(old, name), os.path.join(out, name))
    files = split_pattern(out, "train")
    assert files and all("-of-00002" in f for f in files), files
    contract = dataset_contract(out)
    assert _count(files, contract) == stats["examples"]["train"]


def test_a_failed_job_leaves_nothing_a_reader_picks_up_and_the_rerun_succeeds(
        tmp_path, monkeypatch):
    raw = fixtures.write_kuaisar(str(tmp_path / "raw"))
    ref = str(tmp_path / "ref")
    pipeline.run("kuaisar", raw, ref, max_seq_len=4, num_candidates=3, shards=3)
    out = str(tmp_path / "out")
    real = shards.WriteShard.process

    def dies_on_shard_one(self, element, summary):
        if element[0] == 1:
            raise RuntimeError("worker lost")
        yield from real(self, element, summary)
    monkeypatch.setattr(shards.WriteShard, "process", dies_on_shard_one)
    with pytest.raises(Exception, match="worker lost"):
        pipeline.run("kuaisar", raw, out, max_seq_len=4, num_candidates=3, shards=3)
    monkeypatch.undo()
    # shard 0's files may be staged: nothing is published and every reader refuses
    assert not os.path.exists(os.path.join(out, storage.MANIFEST))
    assert not os.path.exists(os.path.join(out, "_staging", shards.SPILL_DIR))  # spills gone
    for read in (load_data_config, lambda d: split_pattern(d, "train")):
        with pytest.raises(storage.UncommittedError, match="not a committed dataset"):
            read(out)
    # the rerun (no --overwrite needed for a failed run's debris) equals a clean run
    pipeline.run("kuaisar", raw, out, max_seq_len=4, num_candidates=3, shards=3)
    assert published(out) == published(ref)
    assert not os.path.exists(os.path.join(out, "_staging"))


def test_a_changed_file_after_the_commit_is_refused(tmp_path):
    raw = fixtures.write_kuaisar(str(tmp_path / "raw"))
    out = str(tmp_path / "out")
    pipeline.run("kuaisar", raw, out, max_seq_len=4, num_candidates=3, shards=2)
    victim = split_pattern(out, "train")[0]
    with open(victim, "r+b") as f:  # truncated, as by a half-finished copy
        f.truncate(10)
    with pytest.raises(storage.UncommittedError, match="missing or has changed"):
        split_pattern(out, "train")


def _preprocess_cmd(raw, out, *extra):
    return [sys.executable, "-m", "seminar_tf.cli", "preprocess", "--source", "kuaisar",
            "--input", raw, "--output", out, "--shards", "4", "--max-seq-len", "8",
            "--num-candidates", "5", "--multiprocess", *extra]


def test_kill_9_mid_write_then_rerun_publishes_the_uninterrupted_output(tmp_path):
    """`kill -9` of the whole process group of `seminar preprocess --multiprocess` once its
    staging area holds shard files, then the same command again: the published output
    equals an uninterrupted run's byte for byte (benchmarks/preprocess_kill.py does this at
    1M events and random moments)."""
    from seminar_tf.data import synthetic
    raw = str(tmp_path / "raw")
    synthetic.generate(raw, synthetic.SyntheticConfig(num_users=60, num_items=400,
                                                      seq_len=60, seed=3))
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3")
    ref = str(tmp_path / "ref")
    subprocess.run(_preprocess_cmd(raw, ref), check=True, env=env, cwd=ROOT,
                   capture_output=True)
    out = str(tmp_path / "out")
    proc = subprocess.Popen(_preprocess_cmd(raw, out), env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    staging = os.path.join(out, "_staging")
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if os.path.isdir(staging) and any(n.endswith(".tfrecord.gz")
                                          for n in os.listdir(staging)):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not os.path.exists(os.path.join(out, storage.MANIFEST))
    with pytest.raises(storage.UncommittedError):
        load_data_config(out)
    subprocess.run(_preprocess_cmd(raw, out), check=True, env=env, cwd=ROOT,
                   capture_output=True)
    assert published(out) == published(ref)
    assert tf.io.gfile.exists(os.path.join(out, "stats.json"))
