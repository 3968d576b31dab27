"""Load test of the local TF-Serving-compatible server over gRPC, on a trained SEMINAR.

The model: SEMINAR (d=64, K=100) pretrained and trained on generated data
(`benchmarks.trained`), its weights re-exported at each history length L (no weight depends
on L) with codebooks built from them by `seminar build-codebooks`' own builder, as exports
of one run (`VARIANTS`): "pq" (the default codebooks), "pq_c32" (one combined codebook of 32
sub-spaces: 32 bytes per behaviour) and "exact" (`--xla`: XLA exports; `--context-attrs
table`: the export holds the item attribute table).

The requests: distinct generated users' most recent L clicks of the same catalogue (no
repeated prefixes) and N catalogue items as candidates, the user's last query as the query.

For each shape (L, N) and GSU, a server subprocess on loopback (TF threads `--intra`,
`--inter`) gets 1 and 4 concurrent gRPC clients' `rank` requests (round-robin over the users,
up to `--requests` at L=10,000, N=100 with 4 clients, else `--requests-other`, or
`--max-seconds`) and the same requests as `rank_raw` (string ids, query text, timestamps;
`raw_over_rank_p50`: its p50 over the integer one's, the two formats alternating over
`--rounds` rounds, the median of the rounds' ratios); per-candidate requests (N Examples) are
the baseline where they fit `--max-request-mb`. Rows: candidates/s, p50/p99, request bytes,
errors, the server's mean decode / call / encode ms (`seminar_serving_stage_ms`), PQ's union
size, the load time with warm-up; `profiles` split one `rank` call (`rank_profile.py`).

    python benchmarks/serving_load.py [--shapes 1000:100 10000:100 10000:1000 100000:100]
"""
import argparse
import dataclasses
import json
import os
import socket
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import seminar_tf  # noqa: E402,F401
import numpy as np  # noqa: E402

from benchmarks.common import machine, markdown_table, write_results  # noqa: E402
from benchmarks.grpc_load import load, loaded_event, stage_means, stage_totals  # noqa: E402
from benchmarks.trained import long_histories, trained_seminar  # noqa: E402
from seminar_tf import features as F  # noqa: E402
from seminar_tf.config import PQConfig  # noqa: E402

K = 100
# GSU variants: name -> (export GSU, PQ config overrides of `seminar build-codebooks`)
# "pq" is the library's default `PQConfig` (score-aware residual, 4 B), not the pq section
# the trained model's config.json was saved with
VARIANTS = {"pq": ("pq", dataclasses.asdict(PQConfig())),
            "pq_c32": ("pq", {"method": "pq", "whiten": False, "num_subspaces": 32,
                              "combine_parts": True}),  # the previous default: 32 B PQ
            "exact": ("exact", None)}


def model_dir_at(work, trained_dir, data, L, variant):
    """The trained weights as a model directory of history length L, with the codebooks of
    PQ `variant` (`VARIANTS`)."""
    from seminar_tf import storage
    from seminar_tf.config import SeminarConfig
    from seminar_tf.models.registry import build_model
    from seminar_tf.workflows.codebook_build import build_for_model_dir
    from seminar_tf.workflows.model_dir import load_item_table, save_model_dir, weights_path
    overrides = VARIANTS[variant][1]
    out = os.path.join(work, f"model-L{L}" + ("" if not overrides else f"-{variant}"))
    if not storage.is_committed(out):
        with open(os.path.join(trained_dir, "config.json"), encoding="utf-8") as f:
            cfg = SeminarConfig.from_json(f.read())
        cfg = cfg.replace(data=dict(max_seq_len=L), model=dict(top_k=K))
        model = build_model(cfg, item_table=load_item_table(data))
        model.load_weights(weights_path(trained_dir)).expect_partial()
        save_model_dir(model, out, "seminar", data)
    if overrides is not None and not storage.is_committed(os.path.join(out, "pq")):
        build_for_model_dir(out, data, **overrides)
    return out


def export_at(work, model_dir, L, variant, xla, context_attrs):
    """`<base>` holding `seminar_<variant>/1` of `model_dir`."""
    from seminar_tf import storage
    from seminar_tf.workflows.export import export_from_model_dir
    base = os.path.join(work, f"exports-L{L}{'-xla' if xla else ''}-{context_attrs}")
    if not storage.is_committed(os.path.join(base, f"seminar_{variant}", "1")):
        export_from_model_dir(model_dir, base, f"seminar_{variant}", version=1,
                              gsu=VARIANTS[variant][0], xla=xla, context_attrs=context_attrs)
    return base


def codebook_info(model_dir):
    """Bytes per behaviour and layout of the model directory's codebooks ({}: none)."""
    path = os.path.join(model_dir, "pq", "pq.json")
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        info = json.load(f)
    return {"bytes_per_behaviour": info["bytes_per_behaviour"],
            "pq_subspaces": info["pq_config"]["num_subspaces"],
            "pq_combine_parts": info["pq_config"]["combine_parts"]}


def user_requests(contract, ctx, attrs_table, N, seed=0, per_candidate_fits=True):
    """Per user row of `ctx` (numpy context features): (context Example, N candidate
    Examples, the N full Examples or None)."""
    from serving.client import examples_from_events, rank_request_from_events
    out = []
    for b in range(len(ctx[F.HIST_ITEMS])):
        real = ctx[F.HIST_ITEMS][b] != F.PAD_ID
        history = [{"item": int(i), "attrs": [int(a) for a in at],
                    "query": [int(t) for t in q if t], "source": int(s), "age_seconds": float(g)}
                   for i, at, q, s, g in zip(
                       ctx[F.HIST_ITEMS][b][real], ctx[F.HIST_ATTRS][b][real],
                       ctx[F.HIST_QUERY][b][real], ctx[F.HIST_SOURCES][b][real],
                       ctx[F.HIST_TIME_GAPS][b][real])]
        rng = np.random.default_rng(seed + b)
        query = [int(t) for t in ctx[F.TARGET_QUERY][b] if t]
        cands = [{"item": int(i), "attrs": [int(a) for a in attrs_table[i]], "query": query,
                  "source": F.SOURCE_SEARCH}
                 for i in rng.integers(2, len(attrs_table), N)]
        context, listed = rank_request_from_events(contract, 3 + b, history, cands,
                                                   query=query, source=F.SOURCE_SEARCH)
        per = examples_from_events(contract, 3 + b, history, cands) if per_candidate_fits \
            else None
        out.append((context, listed, per))
    return out


def build_requests(name, users, fmt, raw=None):
    """gRPC PredictRequests (one per user) of format "rank", "rank_raw" (the same request as
    a client logs it: string ids, query text, millisecond timestamps; `raw` = (the dataset's
    `raw_features.Vocabularies`, contract) map the ids back) or "per_candidate"."""
    from serving.client import GrpcClient
    c = GrpcClient("127.0.0.1:1", name)
    if fmt == "rank":
        return [c.rank_request([ctx], [listed]) for ctx, listed, _ in users]
    if fmt == "rank_raw":
        vocab, contract = raw
        return [c.inputs_request("rank_raw", vocab.raw_rank_inputs(contract, [ctx], [listed]))
                for ctx, listed, _ in users]
    return [c.predict_request(per) for _, _, per in users]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(base, name, intra=None, inter=None):
    """(process, gRPC port, REST port, the load event of its first version: seconds of load
    and warm-up, warm-up requests) of a server started on `<base>/<name>`."""
    port, rest = free_port(), free_port()
    env = dict(os.environ)
    if intra:
        env["TF_NUM_INTRAOP_THREADS"] = str(intra)
    if inter:
        env["TF_NUM_INTEROP_THREADS"] = str(inter)
    log_path = os.path.join(base, f"server-{name}.log")
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen([sys.executable, "-m", "seminar_tf.cli", "serve",
                                 "--model-base", base, "--name", name, "--grpc-port",
                                 str(port), "--rest-port", str(rest)], stdout=subprocess.PIPE,
                                stderr=log, text=True, env=env)
    line = ""
    while '"ready"' not in line:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            raise RuntimeError(f"server exited: see {log_path}")
    return proc, port, rest, loaded_event(log_path)


def parse_shapes(shapes):
    by_L = {}
    for shape in shapes:
        L, N = (int(x) for x in shape.split(":"))
        by_L.setdefault(L, []).append(N)
    return by_L


def run_gsu(args, base, gsu, L, requests_by_N, raw):
    """Load rows of one export (`VARIANTS` name `gsu`) for every N of this L and client
    count: the integer and raw formats alternate over `args.rounds` rounds of 1/rounds of
    the requests each (row field `round`), so drift of the machine hits both alike."""
    name, rows = f"seminar_{gsu}", []
    proc, port, rest, loaded = start_server(base, name, args.intra, args.inter)
    try:
        for N, users in requests_by_N.items():
            formats = [(f, c, i) for i in range(args.rounds) for c in args.clients
                       for f in ("rank", "rank_raw")[:1 + args.raw]]
            if gsu in args.per_candidate_gsus:
                formats.append(("per_candidate", max(args.clients), 0))
            built = {}
            for fmt, clients, rnd in formats:
                if fmt == "per_candidate" and (users[0][2] is None or len(
                        users[0][2][0]) * N > args.max_request_mb * 2**20):
                    print(f"L={L} N={N}: per-candidate request over {args.max_request_mb} MB,"
                          " not run", flush=True)
                    continue
                if fmt not in built:
                    built[fmt] = build_requests(name, users, fmt, raw)
                main_shape = (L, N, clients) == (10000, 100, 4)
                n_req = ((args.requests if main_shape else args.requests_other)
                         // args.rounds if fmt != "per_candidate"
                         else args.per_candidate_requests)
                limit = (args.max_seconds_main if main_shape else args.max_seconds)
                before = stage_totals(rest)
                r = load(port, name, built[fmt], clients, n_req, limit / args.rounds)
                r.update(stage_means(before, stage_totals(rest)))
                r.update({"L": L, "N": N, "format": fmt, "gsu": gsu, "xla": args.xla,
                          "context_attrs": args.context_attrs, "clients": clients,
                          "round": rnd, "users": len(users),
                          "candidates_per_s": r["throughput_rps"] * N, "trained": True,
                          **loaded})
                print(json.dumps(r), flush=True)
                rows.append(r)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return rows


def paired_ratios(rows):
    """PQ over exact candidates/s (same L, N, format, clients, round) and raw over integer
    `rank` p50 (same L, N, GSU, clients, round), each as the median over rounds with its
    range."""
    pairs = {}
    for r in rows:
        key = tuple(r[k] for k in ("L", "N", "gsu", "format", "clients"))
        for e in rows:
            if e["round"] != r["round"]:
                continue
            if VARIANTS[r["gsu"]][0] == "pq" and e["gsu"] == "exact" and all(
                    e[k] == r[k] for k in ("L", "N", "format", "clients")):
                pairs.setdefault((key, "pq_over_exact_candidates_per_s"), []).append(
                    r["candidates_per_s"] / e["candidates_per_s"])
            if (r["format"], e["format"]) == ("rank_raw", "rank") and all(
                    e[k] == r[k] for k in ("L", "N", "gsu", "clients")):
                pairs.setdefault((key, "raw_over_rank_p50"), []).append(
                    r["p50_ms"] / e["p50_ms"])
    return [dict(zip(("L", "N", "gsu", "format", "clients"), key), **{
        metric: float(np.median(v)), "min": min(v), "max": max(v), "rounds": len(v)})
        for (key, metric), v in pairs.items()]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shapes", nargs="*", default=["1000:100", "10000:100", "10000:1000",
                                                    "100000:100"], help="L:N")
    p.add_argument("--requests", type=int, default=10000,
                   help="rank requests at the acceptance shape (L=10,000, N=100, 4 clients)")
    p.add_argument("--requests-other", type=int, default=1000)
    p.add_argument("--per-candidate-requests", type=int, default=100)
    p.add_argument("--max-seconds", type=float, default=150)
    p.add_argument("--max-seconds-main", type=float, default=900,
                   help="time bound of the acceptance shape's run")
    p.add_argument("--clients", type=int, nargs="*", default=[1, 4])
    p.add_argument("--rounds", type=int, default=3,
                   help="alternating rounds of the integer and raw formats (ratios: median)")
    p.add_argument("--users", type=int, default=16, help="distinct users up to L=10,000")
    p.add_argument("--users-long", type=int, default=4, help="distinct users above 10,000")
    p.add_argument("--long-events", type=int, default=16000,
                   help="generated events per user (at least 1.6 L)")
    p.add_argument("--max-request-mb", type=float, default=32,
                   help="the per-candidate format only where a request fits")
    p.add_argument("--gsus", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--per-candidate-gsus", nargs="*", default=["pq", "exact"],
                   help="exports that also run the per-candidate baseline")
    p.add_argument("--xla", action="store_true", help="export with XLA")
    p.add_argument("--no-raw", dest="raw", action="store_false",
                   help="leave out the raw-feature `rank_raw` rows")
    p.add_argument("--context-attrs", default="request", choices=["request", "table"])
    p.add_argument("--intra", type=int, default=1, help="TF intra-op threads (server)")
    p.add_argument("--inter", type=int, default=2, help="TF inter-op threads (server)")
    p.add_argument("--name", default="serving_load", help="results file name")
    p.add_argument("--work", default=os.path.join(ROOT, "runs", "serving_bench"))
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    args = p.parse_args()
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(args.intra)
    tf.config.threading.set_inter_op_parallelism_threads(args.inter)
    from benchmarks.rank_profile import profile_rank, serving_module, union_sizes
    from seminar_tf.config import SeminarConfig
    from seminar_tf.workflows.model_dir import load_item_table, load_model
    from seminar_tf.workflows.raw_features import Vocabularies, vocab_paths
    os.makedirs(args.work, exist_ok=True)
    trained_dir, data = trained_seminar(args.work, top_k=K)
    vocab = Vocabularies(vocab_paths(data))
    attrs_table = load_item_table(data)["attrs"]
    rows, profiles, histories = [], [], {}
    for L, Ns in parse_shapes(args.shapes).items():
        mdirs = {g: model_dir_at(args.work, trained_dir, data, L, g) for g in args.gsus}
        base = None
        for g in args.gsus:
            base = export_at(args.work, mdirs[g], L, g, args.xla, args.context_attrs)
        with open(os.path.join(mdirs[args.gsus[0]], "config.json"), encoding="utf-8") as f:
            cfg = SeminarConfig.from_json(f.read())
        users = args.users if L <= 10000 else args.users_long
        ctx, stats = long_histories(cfg.data, data, args.work, users,
                                    max(args.long_events, int(1.6 * L)), cfg.data.item_vocab_size,
                                    L)
        histories[L] = stats
        contract = F.FeatureContract.from_config(cfg.data)
        by_N = {N: user_requests(contract, ctx, attrs_table, N,
                                 per_candidate_fits=L * N <= 10**6) for N in Ns}
        for gsu in args.gsus:
            got = run_gsu(args, base, gsu, L, by_N, (vocab, contract))
            for r in got:
                if VARIANTS[gsu][0] == "pq":
                    r.update(codebook_info(mdirs[gsu]))
            model = load_model(mdirs[gsu], gsu=VARIANTS[gsu][0])
            module = serving_module(model, attrs_table if args.context_attrs == "table"
                                    else None)
            for N, users_N in by_N.items():
                contexts = [np.array([c], dtype=object) for c, _, _ in users_N]
                cands = [np.array([k], dtype=object) for _, k, _ in users_N]
                prof = profile_rank(module, contexts[0], cands[0])
                prof.update({"L": L, "N": N, "gsu": gsu, "threads": [args.intra, args.inter]})
                if VARIANTS[gsu][0] == "pq":
                    sizes = union_sizes(module, contexts, cands)
                    prof["union_sizes"] = sizes
                    for r in got:
                        if r["N"] == N:
                            r["union_size"] = float(np.mean(sizes))
                profiles.append(prof)
                print(json.dumps(prof), flush=True)
            rows.extend(got)
    ratios = paired_ratios(rows)
    cols = ["L", "N", "gsu", "bytes_per_behaviour", "format", "clients", "round", "requests",
            "errors",
            "candidates_per_s", "p50_ms", "p99_ms", "request_bytes", "decode_ms", "call_ms", "encode_ms",
            "union_size"]
    prof_rows = [dict(p_, **p_["stages_ms"]) for p_ in profiles]
    table = (markdown_table(rows, cols) + "\n\n" + markdown_table(
        ratios, ["L", "N", "gsu", "format", "clients", "pq_over_exact_candidates_per_s",
                 "raw_over_rank_p50", "min", "max", "rounds"]) + "\n\n"
        + markdown_table(prof_rows, ["L", "N", "gsu", "parse", "targets", "history_all",
                                     "retrieve", "history_read", "esu_towers", "full",
                                     "union_size"]))
    write_results(args.name, {"machine": machine(), "rows": rows, "profiles": profiles,
                              "pq_over_exact": ratios, "histories": histories,
                              "threads": {"intra_op": args.intra, "inter_op": args.inter},
                              "config": vars(args)}, table, args.out)


if __name__ == "__main__":
    main()
