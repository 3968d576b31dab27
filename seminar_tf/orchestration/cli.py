"""The `seminar` command line: one subcommand per stage of the pipeline."""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import List, Optional

from seminar_tf.config import INPUT_MODES


def _cmd_generate(args) -> int:
    from seminar_tf.data import synthetic
    cfg = synthetic.SyntheticConfig(num_users=args.users, num_items=args.items,
                                    seq_len=args.seq_len, seed=args.seed, regime=args.regime)
    t0 = time.time()
    stats = synthetic.generate(args.out, cfg)
    stats["seconds"] = round(time.time() - t0, 2)
    print(json.dumps(stats, indent=2))
    return 0


def _cmd_preprocess(args, beam_args) -> int:
    from beam_pipelines import pipeline
    pipeline.run_from_args(args, beam_args)
    return 0


def _train_overrides(args) -> dict:
    train = {}
    for flag, key in (("epochs", "epochs"), ("batch_size", "batch_size"),
                      ("steps_per_epoch", "steps_per_epoch"), ("learning_rate", "learning_rate"),
                      ("seed", "seed"), ("input_mode", "input_mode")):
        if getattr(args, flag, None) is not None:
            train[key] = getattr(args, flag)
    if getattr(args, "freeze_psu", False):
        train["freeze_psu"] = True
    model = {}
    for flag in ("top_k", "gsu"):
        if getattr(args, flag, None) is not None:
            model[flag] = getattr(args, flag)
    return {k: v for k, v in (("train", train), ("model", model)) if v}


def _cmd_train(args) -> int:
    from seminar_tf.workflows import training
    if args.strategy == "parameter_server" and training.run_parameter_server_task():
        return 0  # a ps / worker task served until the chief finished
    cfg = training.config_for(args.model, args.data, args.config, **_train_overrides(args))
    result = training.train(args.model, args.data, args.out, cfg, init_from=args.init_from,
                            verbose=2 if args.verbose else 1, strategy=args.strategy)
    print(json.dumps({"train_seconds": result["train_seconds"], "steps": result["steps"]}))
    _, _, is_chief = training.cluster_role()
    if not args.no_eval and is_chief:
        print(training.format_metrics(training.evaluate(args.out, args.data)))
    return 0


def _cmd_evaluate(args) -> int:
    from seminar_tf.workflows import training
    result = training.evaluate(args.model_dir, args.data, gsu=args.gsu)
    print(training.format_metrics(result))
    print(f"wrote {args.model_dir}/" + ("metrics.json" if args.gsu is None
                                        else f"metrics_{args.gsu}.json"))
    return 0


def exact_model(model_dir: str):
    """A trained ranker with exact (float-key) retrieval: what codebooks quantize."""
    from seminar_tf.workflows.model_dir import load_model
    return load_model(model_dir, gsu="exact")


def _beam_encoder(beam_args):
    """Codebook training and item encoding by the Beam job (`--beam`)."""
    from beam_pipelines import codebooks as beam_codebooks

    def encoder(model_dir, data_dir, out, pq, queries):
        parts = beam_codebooks.ModelKeyParts(model_dir, data_dir, exact_model,
                                             pq.combine_parts)
        quantizer, codes = beam_codebooks.run(parts, out, pq, queries=queries,
                                              beam_args=beam_args)
        return quantizer, codes, beam_codebooks.encode_stats(out)
    return encoder


def _cmd_build_codebooks(args, beam_args) -> int:
    from seminar_tf.workflows.codebook_build import build_for_model_dir
    overrides = {k: v for k, v in (("num_subspaces", args.subspaces), ("method", args.method),
                                   ("num_codewords", args.codewords), ("whiten", args.whiten),
                                   ("combine_parts", args.combine_parts)) if v is not None}
    encoder = _beam_encoder(beam_args) if args.beam else None
    print(json.dumps(build_for_model_dir(args.model_dir, args.data, encoder=encoder,
                                         **overrides), indent=2))
    return 0


def _cmd_pq_recall(args) -> int:
    from seminar_tf.workflows.codebook_build import pq_recall
    print(json.dumps(pq_recall(args.model_dir, args.data, args.split), indent=2))
    return 0


def _cmd_pretrain(args) -> int:
    from seminar_tf.workflows import training
    from seminar_tf.workflows.pretraining import pretrain
    overrides = _train_overrides(args)
    train = overrides.setdefault("train", {})
    from seminar_tf.tasks.objectives import OBJECTIVES
    weights = {k: getattr(args, f"{k}_weight") for k in OBJECTIVES
               if getattr(args, f"{k}_weight") is not None}
    if weights:
        train["objective_weights"] = weights
    cfg = training.config_for("seminar", args.data, args.config, **overrides)
    result = pretrain(args.data, args.out, cfg, verbose=2 if args.verbose else 1)
    print(json.dumps({k: result[k] for k in ("seconds", "alignment_before",
                                              "alignment_after")}, indent=2))
    return 0


def _cmd_export(args) -> int:
    from seminar_tf.workflows.export import export_from_model_dir
    print(json.dumps(export_from_model_dir(
        args.model_dir, args.out, args.name, args.version, args.gsu, args.data, xla=args.xla,
        context_attrs=args.context_attrs, raw=args.raw), indent=2))
    return 0


def _cmd_serve(args) -> int:
    from serving.server import serve_forever
    return serve_forever(args.model_base, args.name, host=args.host, grpc_port=args.grpc_port,
                         rest_port=args.rest_port, poll_seconds=args.poll_seconds,
                         max_batch=args.max_batch, workers=args.workers,
                         max_request_bytes=args.max_request_mb * 2**20,
                         request_deadline=args.request_deadline,
                         max_connections=args.max_connections,
                         max_concurrent_rpcs=args.max_concurrent_rpcs,
                         max_inflight_bytes=args.max_inflight_mb * 2**20)


def _cmd_demo(args) -> int:
    from seminar_tf.orchestration import demo
    code = demo.run_demo(args.out, force=args.force, size=args.size,
                         verbose=2 if args.verbose else 1)
    if code == 0 and not args.no_report:
        from seminar_tf.orchestration.report import write_report
        print(f"report: {write_report(args.out)}")
    return code


def _cmd_run_pipeline(args) -> int:
    from seminar_tf.orchestration.run_pipeline import STAGES, Pipeline
    from seminar_tf import storage
    cfg = storage.read_json(args.config)
    run_dir = args.run_dir or cfg.pop("run_dir", None)
    if not run_dir:
        raise UserError("give --run-dir or 'run_dir' in the config")
    cfg.pop("run_dir", None)
    stages = args.stages or list(STAGES)
    if args.force_push:
        cfg.setdefault("push", {})["force"] = True
    Pipeline(run_dir, cfg, verbose=2 if args.verbose else 1).run(stages, args.force)
    return 0


def _cmd_compile_pipeline(args) -> int:
    from seminar_tf.orchestration.kfp_pipeline import compile_pipeline
    print(f"wrote {compile_pipeline(args.out, args.base_image)} (Kubeflow Pipelines v2 IR)")
    return 0


def _cmd_report(args) -> int:
    from seminar_tf.orchestration.report import write_report
    print(write_report(args.run))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="seminar", description="SEMINAR-TF: lifelong multi-modal sequence models.")
    p.add_argument("--verbose", action="store_true",
                   help="show TensorFlow's and Beam's own log lines and Keras' epoch logs")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    g = sub.add_parser("generate", help="write a synthetic lifelong dataset in KuaiSAR schema")
    g.add_argument("--out", required=True, help="output directory")
    g.add_argument("--users", type=int, default=500)
    g.add_argument("--items", type=int, default=5000)
    g.add_argument("--seq-len", type=int, default=200, help="events per user (about)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--regime", choices=("category", "semantic"), default="category",
                   help="what the lifelong interest is: a category (SIM-hard's rule finds it) "
                        "or a semantic cluster across categories (seminar_tf.data.synthetic)")
    g.set_defaults(func=_cmd_generate)

    pp = sub.add_parser("preprocess", help="Beam: raw logs -> TFRecords, vocabularies, item "
                        "table (unknown flags are passed to Beam)")
    from beam_pipelines.options import add_arguments
    add_arguments(pp)
    pp.set_defaults(func=_cmd_preprocess, passes_unknown=True)

    from seminar_tf.models.registry import MODELS
    t = sub.add_parser("train", help="train a ranker (SEMINAR or a baseline) and evaluate it")
    t.add_argument("--model", choices=sorted(MODELS), required=True)
    t.add_argument("--data", required=True, help="output directory of `seminar preprocess`")
    t.add_argument("--out", required=True, help="model directory (a killed run resumes)")
    t.add_argument("--config", help="JSON config file (partial sections allowed)")
    t.add_argument("--init-from", help="PSU directory from `seminar pretrain` (SEMINAR)")
    t.add_argument("--freeze-psu", action="store_true", help="keep restored PSU weights fixed")
    t.add_argument("--epochs", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--steps-per-epoch", type=int)
    t.add_argument("--learning-rate", type=float)
    t.add_argument("--top-k", type=int)
    t.add_argument("--seed", type=int)
    t.add_argument("--input-mode", choices=INPUT_MODES,
                   help="train.input_mode (default auto: timeline batches over the sequence "
                        "store, per-example batches otherwise)")
    t.add_argument("--no-eval", action="store_true", help="skip evaluation after training")
    t.add_argument("--strategy", choices=("default", "mirrored", "multi_worker",
                                          "parameter_server"), default="default",
                   help="tf.distribute strategy; the cluster comes from TF_CONFIG")
    t.set_defaults(func=_cmd_train)

    pt = sub.add_parser("pretrain", help="pretrain the PSU (SEMINAR's encoders and attention)")
    pt.add_argument("--data", required=True)
    pt.add_argument("--out", required=True, help="PSU directory (for train --init-from)")
    pt.add_argument("--config")
    pt.add_argument("--epochs", type=int)
    pt.add_argument("--batch-size", type=int)
    pt.add_argument("--steps-per-epoch", type=int)
    pt.add_argument("--learning-rate", type=float)
    pt.add_argument("--seed", type=int)
    pt.add_argument("--input-mode", choices=INPUT_MODES,
                   help="train.input_mode (default auto: timeline batches over the sequence "
                        "store, per-example batches otherwise)")
    from seminar_tf.tasks.objectives import OBJECTIVES
    for name, entry in OBJECTIVES.items():
        pt.add_argument(f"--{name.replace('_', '-')}-weight", type=float,
                        help=f"weight of the {name} objective (default {entry.weight}; "
                             "0 switches it off)")
    pt.set_defaults(func=_cmd_pretrain)

    e = sub.add_parser("evaluate", help="AUC/GAUC/logloss and HIT/NDCG/MRR of a model")
    e.add_argument("--model-dir", required=True)
    e.add_argument("--data", help="dataset directory (default: the one it was trained on)")
    e.add_argument("--gsu", choices=("exact", "pq"), help="swap the GSU at evaluation")
    e.set_defaults(func=_cmd_evaluate)

    b = sub.add_parser("build-codebooks", help="PQ codebooks + item codes for a trained model")
    b.add_argument("--model-dir", required=True)
    b.add_argument("--data", help="dataset directory (default: the one it was trained on)")
    b.add_argument("--method", choices=("rq", "pq", "opq"), help="default: the config's (rq)")
    b.add_argument("--subspaces", type=int, help="S sub-spaces (pq, opq) / stages (rq) per part")
    b.add_argument("--codewords", type=int, help="C codewords (a power of two <= 256)")
    b.add_argument("--whiten", action=argparse.BooleanOptionalAction, help="score-aware")
    b.add_argument("--combine-parts", action=argparse.BooleanOptionalAction,
                   help="one part (the summed modalities) or one per modality")
    b.add_argument("--beam", action="store_true",
                   help="train/encode with the Beam job (unknown flags go to Beam)")
    b.set_defaults(func=_cmd_build_codebooks, passes_unknown=True)

    r = sub.add_parser("pq-recall", help="recall@K of PQ vs exact GSU, and AUC/NDCG of both")
    r.add_argument("--model-dir", required=True)
    r.add_argument("--data")
    r.add_argument("--split", default="test")
    r.set_defaults(func=_cmd_pq_recall)

    x = sub.add_parser("export", help="TF Serving SavedModel in BASE/NAME/VERSION")
    x.add_argument("--model-dir", required=True)
    x.add_argument("--out", required=True, help="model base path (BASE)")
    x.add_argument("--name", required=True)
    x.add_argument("--version", type=int, help="default: the next free version")
    x.add_argument("--gsu", choices=("exact", "pq"), help="default: as trained")
    x.add_argument("--data", help="dataset for warmup requests (default: the training data)")
    x.add_argument("--xla", action="store_true",
                   help="compile the dense part of every signature with XLA (TF Serving "
                        "then needs --xla_cpu_compilation_enabled=true)")
    x.add_argument("--context-attrs", choices=("request", "table"), default="request",
                   help="table: `rank` requests need not carry attributes (the export's table)")
    x.add_argument("--no-raw-features", dest="raw", action="store_false", default=None,
                   help="leave out rank_raw / score_raw (default: in, with the vocabularies)")
    x.set_defaults(func=_cmd_export)

    sv = sub.add_parser("serve", help="TF-Serving-compatible gRPC + REST server")
    sv.add_argument("--model-base", required=True, help="BASE (holds NAME/VERSION dirs)")
    sv.add_argument("--name", required=True)
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--grpc-port", type=int, default=8500)
    sv.add_argument("--rest-port", type=int, default=8501)
    sv.add_argument("--poll-seconds", type=float, default=2.0)
    sv.add_argument("--max-batch", type=int, default=1024)
    sv.add_argument("--workers", type=int, help="compute pool size (default 4 x cores, >= 4)")
    sv.add_argument("--max-request-mb", type=int, default=64,
                    help="largest gRPC message / REST body")
    sv.add_argument("--request-deadline", type=float, default=10.0,
                    help="seconds a whole REST request may take to arrive (408 past it)")
    sv.add_argument("--max-connections", type=int, default=512,
                    help="open REST connections at most (503 at once past it)")
    sv.add_argument("--max-inflight-mb", type=int, default=256,
                    help="REST request bodies held at once (503 past it)")
    sv.add_argument("--max-concurrent-rpcs", type=int, default=64,
                    help="gRPC calls in flight at most (RESOURCE_EXHAUSTED past it)")
    sv.set_defaults(func=_cmd_serve)

    rp = sub.add_parser("run-pipeline", help="run the TFX-style stages of a pipeline JSON")
    rp.add_argument("--config", required=True)
    rp.add_argument("--run-dir")
    rp.add_argument("--stages", nargs="*", help="subset of stages to run")
    rp.add_argument("--force", action="store_true", help="rerun finished stages")
    rp.add_argument("--force-push", action="store_true",
                    help="publish the export even if the blessing gate (push section) fails")
    rp.set_defaults(func=_cmd_run_pipeline)

    cp = sub.add_parser("compile-pipeline", help="write the Kubeflow Pipelines v2 IR (YAML)")
    cp.add_argument("--out", required=True, help="pipeline.yaml to write")
    cp.add_argument("--base-image", default="seminar-tf:latest",
                    help="container image with this project installed")
    cp.set_defaults(func=_cmd_compile_pipeline)

    rep = sub.add_parser("report", help="report.md + PNG plots of a run directory")
    rep.add_argument("--run", required=True)
    rep.set_defaults(func=_cmd_report)

    d = sub.add_parser("demo", help="run the main job end to end on generated data")
    d.add_argument("--out", default="runs/demo", help="run directory")
    d.add_argument("--size", choices=("tiny", "small"), default="small")
    d.add_argument("--no-report", action="store_true", help="skip report.md and the plots")
    d.add_argument("--force", action="store_true", help="rerun finished stages")
    d.set_defaults(func=_cmd_demo)
    return p


class UserError(Exception):
    """A mistake in the command's input (reported as one line, exit code 2)."""


def _quiet(command: str):
    """Sends the process's C-level stderr (TensorFlow's C++ start-up lines, absl, Beam's
    worker processes, which inherit it) to a log file, keeping Python's own stderr (our
    messages, real tracebacks) on the terminal. Returns the log path."""
    import logging
    import os
    import tempfile
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    path = os.path.join(tempfile.gettempdir(), f"seminar-{command}-{os.getpid()}.log")
    log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    terminal = os.dup(2)
    os.dup2(log, 2)
    os.close(log)
    sys.stderr = os.fdopen(terminal, "w", buffering=1, encoding="utf-8", errors="replace")
    for name in ("tensorflow", "absl", "apache_beam", "h5py"):
        logging.getLogger(name).setLevel(logging.ERROR)
    logging.getLogger().setLevel(logging.ERROR)
    import warnings
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    return path


def main(argv: Optional[List[str]] = None) -> int:
    """Runs one `seminar` command; user errors are one line on stderr and exit code 2."""
    parser = build_parser()
    quiet = argv is None  # a real command line; in-process callers keep their streams
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in argv  # accepted before or after the command
    args, unknown = parser.parse_known_args([a for a in argv if a != "--verbose"])
    args.verbose = verbose
    if unknown and not getattr(args, "passes_unknown", False):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    log = None
    if quiet and not args.verbose and args.command != "serve":
        log = _quiet(args.command)
    from seminar_tf.config import ConfigError
    from seminar_tf.features import ContractError
    code = 1
    try:
        if getattr(args, "passes_unknown", False):
            code = args.func(args, unknown)
        else:
            code = args.func(args)
        return code
    except (UserError, ConfigError, ContractError, FileNotFoundError, NotADirectoryError,
            json.JSONDecodeError) as e:
        print(f"seminar {args.command}: error: {e}", file=sys.stderr)
        code = 2
        return code
    finally:
        if log and code in (0, 2):
            import os
            os.remove(log)  # a clean run or a user error: nothing worth keeping
        elif log:
            print(f"(TensorFlow / Beam messages of this run: {log})", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
