"""The `seminar` command line: one subcommand per stage of the pipeline."""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import List, Optional

from seminar_tf import _keras_mode  # noqa: F401


def _cmd_generate(args) -> int:
    from seminar_tf.data import synthetic
    cfg = synthetic.SyntheticConfig(num_users=args.users, num_items=args.items,
                                    seq_len=args.seq_len, seed=args.seed)
    t0 = time.time()
    stats = synthetic.generate(args.out, cfg)
    stats["seconds"] = round(time.time() - t0, 2)
    print(json.dumps(stats, indent=2))
    return 0


def _cmd_preprocess(args, beam_args) -> int:
    from beam_pipelines import pipeline
    pipeline.run_from_args(args, beam_args)
    return 0


def _cmd_demo(args) -> int:
    from seminar_tf import demo
    return demo.run_demo(args.out, force=args.force, size=args.size)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="seminar", description="SEMINAR-TF: lifelong multi-modal sequence models.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    g = sub.add_parser("generate", help="write a synthetic lifelong dataset in KuaiSAR schema")
    g.add_argument("--out", required=True, help="output directory")
    g.add_argument("--users", type=int, default=500)
    g.add_argument("--items", type=int, default=5000)
    g.add_argument("--seq-len", type=int, default=200, help="events per user (about)")
    g.add_argument("--seed", type=int, default=0)
    g.set_defaults(func=_cmd_generate)

    pp = sub.add_parser("preprocess", help="Beam: raw logs -> TFRecords, vocabularies, item "
                        "table (unknown flags are passed to Beam)")
    from beam_pipelines.pipeline import add_arguments
    add_arguments(pp)
    pp.set_defaults(func=_cmd_preprocess, passes_unknown=True)

    d = sub.add_parser("demo", help="run the main job end to end on generated data")
    d.add_argument("--out", default="runs/demo", help="run directory")
    d.add_argument("--size", choices=("tiny", "small"), default="small")
    d.add_argument("--force", action="store_true", help="rerun finished stages")
    d.set_defaults(func=_cmd_demo)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if getattr(args, "passes_unknown", False):
        return args.func(args, unknown)
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
