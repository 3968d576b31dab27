"""`kill -9` during preprocessing, then a rerun: is the published output an uninterrupted
run's, byte for byte?

Generates ~`--events` KuaiSAR-schema events, runs `seminar preprocess --multiprocess` once
uninterrupted (the reference), then `--kills` times: starts the same command in its own
process group, sends SIGKILL to the whole group at a random moment (uniform over 5-95 % of
the reference's duration, seeded), records what a reader would see (committed or not, files
staged), reruns the same command and compares every file the manifest lists with the
reference (stats.json without its wall-clock `seconds`).

    python benchmarks/preprocess_kill.py [--events 1000000] [--kills 3] [--seed 0]
"""
import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.beam_preprocess import EVENTS_PER_USER_EVENT  # noqa: E402
from benchmarks.common import machine, markdown_table, write_results  # noqa: E402

ENV = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3")


def cmd(raw, out, max_seq_len):
    return [sys.executable, "-m", "seminar_tf.cli", "preprocess", "--source", "kuaisar",
            "--input", raw, "--output", out, "--max-seq-len", str(max_seq_len),
            "--multiprocess"]


def published(out):
    """{path: bytes} of every file the manifest lists (stats.json without `seconds`)."""
    with open(os.path.join(out, "_SUCCESS"), encoding="utf-8") as f:
        files = json.load(f)["files"]
    got = {}
    for rel in files:
        with open(os.path.join(out, rel), "rb") as f:
            data = f.read()
        if rel == "stats.json":
            stats = json.loads(data)
            stats.pop("seconds")
            data = json.dumps(stats, sort_keys=True).encode()
        got[rel] = data
    return got


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--kills", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-seq-len", type=int, default=200)
    p.add_argument("--work", default=os.path.join(ROOT, "runs", "preprocess_kill"))
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    args = p.parse_args()
    from seminar_tf.data import synthetic
    raw = os.path.join(args.work, f"raw-{args.events}")
    if not os.path.exists(os.path.join(raw, "meta.json")):
        synthetic.generate(raw, synthetic.SyntheticConfig(
            num_users=max(10, int(args.events / (200 * EVENTS_PER_USER_EVENT))),
            num_items=max(2000, args.events // 50), seq_len=200, seed=1))
    ref = os.path.join(args.work, "ref")
    shutil.rmtree(ref, ignore_errors=True)
    t0 = time.time()
    subprocess.run(cmd(raw, ref, args.max_seq_len), check=True, env=ENV, cwd=ROOT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ref_seconds = time.time() - t0
    reference = published(ref)
    rng = random.Random(args.seed)
    rows = []
    for k in range(args.kills):
        out = os.path.join(args.work, f"killed-{k}")
        shutil.rmtree(out, ignore_errors=True)
        at = rng.uniform(0.05, 0.95) * ref_seconds
        proc = subprocess.Popen(cmd(raw, out, args.max_seq_len), env=ENV, cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        time.sleep(at)
        finished = proc.poll() is not None
        if not finished:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        staging = os.path.join(out, "_staging")
        staged = sum(len(f) for _, _, f in os.walk(staging)) if os.path.isdir(staging) else 0
        committed = os.path.exists(os.path.join(out, "_SUCCESS"))
        t1 = time.time()
        rerun = subprocess.run(cmd(raw, out, args.max_seq_len), env=ENV, cwd=ROOT,
                               capture_output=True, text=True)
        rerun_seconds = time.time() - t1
        if rerun.returncode != 0:  # e.g. killed after the commit: published, so refused
            row_err = rerun.stderr.strip().splitlines()[-1:] or [""]
        else:
            row_err = [""]
        got = published(out) if os.path.exists(os.path.join(out, "_SUCCESS")) else {}
        differing = sorted(set(reference) ^ set(got)) + sorted(
            r for r in set(reference) & set(got) if reference[r] != got[r])
        rows.append({"kill": k, "kill_at_s": round(at, 2), "finished_before_kill": finished,
                     "committed_at_kill": committed, "files_staged_at_kill": staged,
                     "rerun_exit": rerun.returncode, "rerun_error": row_err[0][:120],
                     "rerun_seconds": round(rerun_seconds, 1),
                     "published_files": len(got), "equal_to_uninterrupted": not differing,
                     "differing_files": differing[:5]})
        print(json.dumps(rows[-1]), flush=True)
    cols = ["kill", "kill_at_s", "committed_at_kill", "files_staged_at_kill", "rerun_exit",
            "rerun_seconds", "published_files", "equal_to_uninterrupted"]
    write_results("preprocess_kill", {
        "machine": machine(), "config": vars(args), "reference_seconds": round(ref_seconds, 1),
        "reference_files": len(reference), "rows": rows},
        f"Reference (uninterrupted) run: {ref_seconds:.1f} s, {len(reference)} published "
        f"files.\n\n" + markdown_table(rows, cols), args.out)
    if not all(r["equal_to_uninterrupted"] for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
