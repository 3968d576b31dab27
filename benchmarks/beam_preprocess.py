"""Beam preprocessing throughput on generated KuaiSAR-schema logs.

Generates 100k, 300k and 1,000,000 events, runs `beam_pipelines.pipeline` on the in-process
runner single-process and multi-processing (2 workers), and reports events/second, examples
written and peak memory (RSS of the driver and its worker processes, sampled every 0.2 s).

    python benchmarks/beam_preprocess.py [--events 100000 300000 1000000] [--max-seq-len 200]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.common import machine, markdown_table, write_results  # noqa: E402

EVENTS_PER_USER_EVENT = 1.6  # rows per generated event (a search session writes 3 rows)


def tree_rss_mb(pid: int) -> float:
    """RSS of a process and all its descendants (Linux /proc)."""
    total = 0
    todo = [pid]
    seen = set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            pass
    return total / 1024.0


def run_case(raw, out, mode, max_seq_len):
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "seminar_tf.cli", "preprocess", "--source", "kuaisar",
           "--input", raw, "--output", out, "--max-seq-len", str(max_seq_len)]
    if mode == "multi_processing":
        cmd.append("--multiprocess")
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    peak = [0.0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], tree_rss_mb(proc.pid))
            time.sleep(0.2)
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    stdout, _ = proc.communicate()
    stop.set()
    th.join()
    if proc.returncode != 0:
        raise RuntimeError(f"preprocess failed ({mode})")
    seconds = time.time() - t0
    with open(os.path.join(out, "stats.json")) as f:
        stats = json.load(f)
    return {"mode": mode, "events": stats["events"], "seconds": round(seconds, 1),
            "events_per_s": stats["events"] / seconds,
            "examples": sum(v for k, v in stats["examples"].items() if k != "candidates"),
            "peak_rss_mb": round(peak[0], 0), "beam_seconds": stats["seconds"]}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--events", type=int, nargs="*", default=[100_000, 300_000, 1_000_000])
    p.add_argument("--max-seq-len", type=int, default=200)
    p.add_argument("--work", default=os.path.join(ROOT, "runs", "beam_bench"))
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    p.add_argument("--modes", nargs="*", default=["single", "multi_processing"])
    p.add_argument("--name", default="beam_preprocess", help="results file name")
    args = p.parse_args()
    from seminar_tf.data import synthetic
    rows = []
    for target in args.events:
        raw = os.path.join(args.work, f"raw-{target}")
        if not os.path.exists(os.path.join(raw, "meta.json")):
            users = max(10, int(target / (200 * EVENTS_PER_USER_EVENT)))
            synthetic.generate(raw, synthetic.SyntheticConfig(
                num_users=users, num_items=max(2000, target // 50), seq_len=200, seed=1))
        for mode in args.modes:
            row = run_case(raw, os.path.join(args.work, f"out-{target}-{mode}"), mode,
                           args.max_seq_len)
            row["target_events"] = target
            print(json.dumps(row), flush=True)
            rows.append(row)
    base = {r["mode"]: r for r in rows if r["target_events"] == min(args.events)}
    for r in rows:
        b = base[r["mode"]]
        r["time_vs_smallest"] = r["seconds"] / b["seconds"]
        r["events_vs_smallest"] = r["events"] / b["events"]
    cols = ["mode", "events", "examples", "seconds", "events_per_s", "peak_rss_mb",
            "events_vs_smallest", "time_vs_smallest"]
    write_results(args.name, {"machine": machine(), "rows": rows,
                                      "max_seq_len": args.max_seq_len},
                  markdown_table(rows, cols), args.out)


if __name__ == "__main__":
    main()
