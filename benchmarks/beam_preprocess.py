"""Beam preprocessing throughput on generated KuaiSAR-schema logs.

Generates 100k, 1M and 10M events (by default), runs `seminar preprocess` on the in-process
runner (single process and/or multi-processing with 2 workers) in both output formats
(`--formats store examples`) at each `--max-seq-len`, and reports seconds, events/second,
examples written, peak memory (RSS of the driver and its worker processes, sampled every
0.2 s) and output bytes per event (all `*.tfrecord.gz` files).

    python benchmarks/beam_preprocess.py [--events 100000 1000000 10000000]
        [--max-seq-len 200 2000] [--formats store examples] [--modes multi_processing]
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


def run_case(raw, out, mode, max_seq_len, fmt="store", shards=0):
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "seminar_tf.cli", "preprocess", "--source", "kuaisar",
           "--input", raw, "--output", out, "--max-seq-len", str(max_seq_len),
           "--format", fmt] + (["--shards", str(shards)] if shards else [])
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
    size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out)
               if f.endswith(".tfrecord.gz"))
    shutil.rmtree(out, ignore_errors=True)  # 10M-event outputs are large
    return {"mode": mode, "format": fmt, "L": max_seq_len, "shards": stats["shards"],
            "events": stats["events"], "seconds": round(seconds, 1),
            "events_per_s": round(stats["events"] / seconds, 0),
            "examples": sum(v for k, v in stats["examples"].items() if k != "candidates"),
            "examples_per_split": stats["examples"], "rows": stats["rows"],
            "peak_rss_mb": round(peak[0], 0), "beam_seconds": stats["seconds"],
            "output_mb": round(size / 2**20, 1),
            "bytes_per_event": round(size / max(stats["events"], 1), 1)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--events", type=int, nargs="*", default=[100_000, 1_000_000, 10_000_000])
    p.add_argument("--max-seq-len", type=int, nargs="*", default=[200])
    p.add_argument("--formats", nargs="*", default=["store", "examples"])
    p.add_argument("--seq-len", type=int, default=200,
                   help="generated events per user (histories grow with it)")
    p.add_argument("--shards", type=int, default=0,
                   help="output shards (default: the preprocess default, 4 per 100 MB "
                   "of input, at least 8)")
    p.add_argument("--work", default=os.path.join(ROOT, "runs", "beam_bench"))
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    p.add_argument("--modes", nargs="*", default=["multi_processing"])
    p.add_argument("--name", default="beam_preprocess", help="results file name")
    args = p.parse_args()
    from seminar_tf.data import synthetic
    rows = []
    for target in args.events:
        raw = os.path.join(args.work, f"raw-{target}" + (
            f"-seq{args.seq_len}" if args.seq_len != 200 else ""))
        if not os.path.exists(os.path.join(raw, "meta.json")):
            users = max(10, int(target / (args.seq_len * EVENTS_PER_USER_EVENT)))
            synthetic.generate(raw, synthetic.SyntheticConfig(
                num_users=users, num_items=max(2000, target // 50), seq_len=args.seq_len,
                seed=1))
        shards = args.shards
        for mode in args.modes:
            for fmt in args.formats:
                for L in args.max_seq_len:
                    row = run_case(raw, os.path.join(args.work, f"out-{target}"), mode, L,
                                   fmt, shards)
                    row["target_events"] = target
                    row["events_per_user"] = args.seq_len
                    print(json.dumps(row), flush=True)
                    rows.append(row)
    for r in rows:  # growth against the smallest size of the same configuration
        b = min((x for x in rows if (x["mode"], x["format"], x["L"]) ==
                 (r["mode"], r["format"], r["L"])), key=lambda x: x["events"])
        r["events_vs_smallest"] = round(r["events"] / b["events"], 2)
        r["time_vs_smallest"] = round(r["seconds"] / b["seconds"], 2)
        r["time_per_event_vs_smallest"] = round(r["time_vs_smallest"]
                                                / r["events_vs_smallest"], 2)
    cols = ["mode", "format", "L", "events", "examples", "seconds", "events_per_s",
            "peak_rss_mb", "bytes_per_event", "events_vs_smallest", "time_vs_smallest",
            "time_per_event_vs_smallest"]
    write_results(args.name, {"machine": machine(), "rows": rows,
                              "config": {k: v for k, v in vars(args).items()
                                         if k not in ("work", "out")}},
                  markdown_table(rows, cols), args.out)


if __name__ == "__main__":
    main()
