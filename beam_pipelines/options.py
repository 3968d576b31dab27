"""The `seminar preprocess` flags, kept free of Beam and TensorFlow imports so that
`seminar --help` answers at once."""
from __future__ import annotations

import argparse

from beam_pipelines.sources import SOURCES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `seminar preprocess` flags (unknown flags are passed to Beam)."""
    parser.add_argument("--source", choices=sorted(SOURCES), required=True)
    parser.add_argument("--input", required=True, help="directory of raw files")
    parser.add_argument("--output", required=True, help="output directory")
    parser.add_argument("--max-seq-len", type=int, default=200)
    parser.add_argument("--max-query-tokens", type=int, default=6)
    parser.add_argument("--num-attrs", type=int, default=4)
    parser.add_argument("--min-count", type=int, default=1,
                        help="vocabulary frequency threshold")
    parser.add_argument("--min-target-time-ms", type=int, default=None)
    parser.add_argument("--split", choices=("loo", "time"), default="loo")
    parser.add_argument("--valid-start-ms", type=int, default=0)
    parser.add_argument("--test-start-ms", type=int, default=0)
    parser.add_argument("--negatives", choices=("observed", "sampled", "both"), default=None,
                        help="training negatives: logged non-clicks, popularity-sampled items "
                             "the user has not interacted with up to that time, or both "
                             "(default: both where the source logs non-clicks, else sampled)")
    parser.add_argument("--vocab-from", choices=("train", "catalog"), default="train",
                        help="vocabularies and popularity from training-time events only "
                             "(items first seen in valid/test -> OOV), or also every item "
                             "record (a catalogue given up front)")
    parser.add_argument("--neg-per-pos", type=int, default=None,
                        help="sampled negatives per positive (default 1 when sampled)")
    parser.add_argument("--sampling", choices=("uniform", "popularity"), default="popularity")
    parser.add_argument("--num-candidates", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--text-vectors"), parser.add_argument("--text-ids")
    parser.add_argument("--image-vectors"), parser.add_argument("--image-ids")
    parser.add_argument("--format", choices=("store", "examples"), default="store",
                        help="store: each user's timeline once + light target records "
                             "(output bytes O(events)); examples: one self-contained Example "
                             "per target (bytes O(events x L))")
    parser.add_argument("--shards", type=int, default=None,
                        help="output shards; users are hashed to shards, each built and "
                             "written by one worker (default: 4 per 100 MB of input, >= 8)")
    parser.add_argument("--multiprocess", action="store_true",
                        help="DirectRunner with one process per core")
