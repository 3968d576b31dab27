"""A longer fuzz run of the server than the tests: hostile requests over gRPC and REST for
every signature, against `seminar serve` in a subprocess (a crash would end it: checked).

Case classes and their expected statuses are `serving.request_fuzz.EXPECTED`; after every bad
request a good one must succeed. Reports cases tried per interface and case class, statuses
seen, unexpected outcomes (crashes) and whether the server stayed up.

    python benchmarks/fuzz_serving.py [--cases 2000] [--L 200]
"""
import argparse
import collections
import json
import os
import random
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import seminar_tf  # noqa: E402,F401
import grpc  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.common import machine, markdown_table, write_results  # noqa: E402
from benchmarks.serving_faults import start_server  # noqa: E402
from benchmarks.serving_load import free_port, make_exports  # noqa: E402
from serving import request_fuzz as fuzz  # noqa: E402

SIGNATURES = ("serving_default", "predict", "retrieve", "rank")
MAX_BATCH = 1024


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", type=int, default=2000, help="per interface")
    p.add_argument("--L", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default=os.path.join(ROOT, "runs", "fuzz_serving"))
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    args = p.parse_args()
    from seminar_tf.features import FeatureContract
    base = make_exports(args.work, args.L)
    contract = FeatureContract(args.L, 6, 4, 20000, 5000, 2000, 10000)
    gport, rport = free_port(), free_port()
    log = open(os.path.join(args.work, "server.log"), "w")
    name = "seminar_pq"
    proc = start_server(base, gport, rport, poll=60, stderr=log, name=name)
    from tensorflow_serving.apis import prediction_service_pb2_grpc
    stub = prediction_service_pb2_grpc.PredictionServiceStub(
        grpc.insecure_channel(f"127.0.0.1:{gport}"))
    good = {"examples": np.array(fuzz.make_examples(contract, random.Random(0), 3, 10),
                                 dtype=object)}
    calls = {"grpc": lambda s, x: fuzz.grpc_call(stub, name, s, x),
             "rest": lambda s, x: fuzz.rest_call(rport, name, s, x)}
    rows, unexpected = [], []
    t0 = time.time()
    try:
        for interface, call in calls.items():
            rng = random.Random(args.seed)
            seen = collections.defaultdict(collections.Counter)
            for i in range(args.cases):
                case = rng.choice(fuzz.CASES)
                sig, inputs = fuzz.build_case(case, rng.choice(SIGNATURES), contract, rng,
                                              MAX_BATCH)
                status, out = call(sig, inputs)
                seen[case][status] += 1
                bad_scores = status == "OK" and any(
                    v.dtype.kind == "f" and not np.all(np.isfinite(v)) for v in out.values())
                if status not in fuzz.EXPECTED[case] or bad_scores:
                    unexpected.append({"interface": interface, "case": case, "signature": sig,
                                       "status": status, "detail": str(out)[:300]})
                after, detail = call("serving_default", good)
                if after != "OK" or proc.poll() is not None:
                    unexpected.append({"interface": interface, "case": case, "signature": sig,
                                       "status": f"GOOD_REQUEST_AFTER_IT: {after}",
                                       "detail": str(detail)[:300],
                                       "server_exit_code": proc.poll()})
                    break
            if unexpected and unexpected[-1]["status"].startswith("GOOD_REQUEST"):
                break
            for case in fuzz.CASES:
                rows.append({"interface": interface, "case": case,
                             "tried": sum(seen[case].values()),
                             "statuses": dict(seen[case]),
                             "expected": sorted(fuzz.EXPECTED[case])})
    finally:
        alive = proc.poll() is None
        proc.terminate()
        proc.wait(timeout=30)
    totals = {i: sum(r["tried"] for r in rows if r["interface"] == i) for i in calls}
    payload = {"machine": machine(), "config": vars(args), "rows": rows,
               "cases_per_interface": totals, "unexpected": unexpected,
               "server_alive_at_end": alive, "seconds": round(time.time() - t0, 1)}
    table = markdown_table(rows, ["interface", "case", "tried", "statuses", "expected"])
    table += (f"\n\ncases per interface: {totals}; unexpected outcomes: {len(unexpected)}; "
              f"server alive at the end: {alive}")
    write_results("fuzz_serving", payload, table, args.out)
    if unexpected:
        print(json.dumps(unexpected[:10], indent=1))
        sys.exit(1)


if __name__ == "__main__":
    main()
