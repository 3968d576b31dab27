"""Bytes of a `rank` request with the behaviours' attributes in the request (the default
export) and looked up in the export's item table (`seminar export --context-attrs table`).

Distinct generated histories (4 attributes per item, 0-2 query tokens per behaviour), N
candidates; the serialized context Example and candidate Examples are measured as sent.

    python benchmarks/request_bytes.py [--lengths 1000 10000 100000] [--N 100]
"""
import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import seminar_tf  # noqa: E402,F401
import tensorflow as tf  # noqa: E402

from benchmarks.common import machine, markdown_table, write_results  # noqa: E402
from benchmarks.serving_load import user_requests  # noqa: E402
from seminar_tf import features as F  # noqa: E402


def _without(raw, name):
    ex = tf.train.Example.FromString(raw)
    del ex.features.feature[name]
    return ex.SerializeToString()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lengths", type=int, nargs="*", default=[1000, 10000, 100000])
    p.add_argument("--N", type=int, default=100)
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    args = p.parse_args()
    rows = []
    for L in args.lengths:
        context, cands, _ = user_requests(L, args.N, 1)[0]
        full = len(context) + sum(len(c) for c in cands)
        slim = len(_without(context, F.HIST_ATTRS)) + sum(
            len(_without(c, F.TARGET_ATTRS)) for c in cands)
        rows.append({"L": L, "N": args.N, "request_bytes": full, "table_bytes": slim,
                     "bytes_per_behaviour": round(len(context) / L, 1),
                     "table_bytes_per_behaviour": round(
                         len(_without(context, F.HIST_ATTRS)) / L, 1),
                     "saved": f"{1 - slim / full:.0%}"})
        print(rows[-1], flush=True)
    write_results("request_bytes", {"machine": machine(), "rows": rows, "config": vars(args)},
                  markdown_table(rows, list(rows[0])), args.out)


if __name__ == "__main__":
    main()
