"""A longer fuzz run of the Beam readers than the tests: every source's fixture files, plain
and gzip (text-level and stream-level corruption), byte flips and truncations, `--seeds`
runs each. Checks that the job never fails on data and that every row read is parsed,
dead-lettered with a reason or a named skip, and that the row count matches an independent
line count. Writes benchmarks/results/fuzz_data.{json,md}.

    python benchmarks/fuzz_data.py [--seeds 5]
"""
import argparse
import collections
import gzip
import os
import random
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

import seminar_tf  # noqa: E402,F401
import raw_fixtures as fixtures  # noqa: E402  (the small raw files of every source format)

from beam_pipelines import fuzz, pipeline  # noqa: E402
from benchmarks.common import machine, markdown_table, write_results  # noqa: E402

WRITERS = {"kuaisar": fixtures.write_kuaisar, "amazon": fixtures.write_amazon,
           "movielens": fixtures.write_movielens_100k, "events": fixtures.write_events}


def one_run(source, compression, seed, work):
    d = WRITERS[source](os.path.join(work, "in"), bad=True) if source != "movielens" else \
        WRITERS[source](os.path.join(work, "in"))
    if compression != "plain":
        for f in fuzz.input_files(d):
            if not f.endswith(".gz"):
                with open(f, "rb") as src, gzip.open(f + ".gz", "wb") as dst:
                    dst.write(src.read())
                os.remove(f)
    rng = random.Random(seed)
    files = fuzz.input_files(d)
    for f in rng.sample(files, k=rng.randint(1, len(files))):
        fuzz.mutate_file(f, rng, compressed_level=compression == "gzip-stream")
    expected = sum(fuzz.count_rows(f) for f in files)
    stats = pipeline.run(source, d, os.path.join(work, "out"), max_seq_len=5,
                         num_candidates=3, overwrite=True)
    rows = stats["rows"]
    ok = rows["read"] == expected == (rows["parsed"] + rows["dead_letters"]
                                      + rows["skipped_header"] + rows["skipped_blank"])
    return ok, rows, stats["dead_letters"]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    args = p.parse_args()
    rows, t0 = [], time.time()
    for source in sorted(WRITERS):
        for compression in (["plain"] if source == "movielens" else
                            ["plain", "gzip", "gzip-stream"]):
            agg = collections.Counter()
            reasons = collections.Counter()
            crashes = unaccounted = 0
            for seed in range(args.seeds):
                work = tempfile.mkdtemp()
                try:
                    ok, counts, dead = one_run(source, compression, seed, work)
                    agg.update({k: v for k, v in counts.items() if isinstance(v, int)})
                    reasons.update(dead)
                    unaccounted += 0 if ok else 1
                except Exception as e:  # a crash is the finding: counted and shown
                    crashes += 1
                    reasons[f"CRASH {type(e).__name__}: {str(e)[:80]}"] += 1
                finally:
                    shutil.rmtree(work, ignore_errors=True)
            rows.append({"source": source, "compression": compression, "runs": args.seeds,
                         "rows_read": agg["read"], "parsed": agg["parsed"],
                         "dead_letters": agg["dead_letters"],
                         "skipped": agg["skipped_header"] + agg["skipped_blank"],
                         "runs_unaccounted": unaccounted, "crashes": crashes,
                         "dead_letter_reasons": dict(reasons)})
            print(rows[-1], flush=True)
    table = markdown_table(rows, ["source", "compression", "runs", "rows_read", "parsed",
                                  "dead_letters", "skipped", "runs_unaccounted", "crashes"])
    write_results("fuzz_data", {"machine": machine(), "config": vars(args), "rows": rows,
                                "seconds": round(time.time() - t0, 1)}, table, args.out)


if __name__ == "__main__":
    main()
