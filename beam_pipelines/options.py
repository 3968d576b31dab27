"""The preprocessing options: one dataclass from which the `seminar preprocess` flags,
`beam_pipelines.pipeline.run`, the pipeline stage and the KFP component's config are derived.

Each default is declared once, here (the history shapes come from `seminar_tf.config.DataConfig`,
the model's own data defaults). Kept free of Beam and TensorFlow imports so that
`seminar --help` answers at once. Adding an option: one field below (its `help` and, for a
closed set, `choices` in the field's metadata); it is then a flag, a `run` keyword and a key of
the pipeline config's `preprocess` section.
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional

from beam_pipelines.sources import SOURCES
from seminar_tf.config import DataConfig

_DATA = DataConfig()


def _opt(default, help: str = "", choices=None, flag: Optional[str] = None):
    return field(default=default, metadata={"help": help, "choices": choices, "flag": flag})


@dataclass(frozen=True)
class PreprocessOptions:
    """Options of one preprocessing run (see `beam_pipelines.pipeline.run`)."""
    max_seq_len: int = _opt(_DATA.max_seq_len, "L: history behaviours kept per target")
    max_query_tokens: int = _opt(_DATA.max_query_tokens, "Q: tokens kept per query")
    num_attrs: int = _opt(_DATA.num_attrs, "A: attribute ids per item")
    title_tokens: int = _opt(_DATA.title_tokens, "tokens per item title in the item table")
    min_count: int = _opt(1, "vocabulary frequency threshold")
    min_target_time_ms: Optional[int] = _opt(
        None, "targets before this time only serve as history (default: the generator's "
        "meta.json min_target_time, else 0)")
    split: str = _opt("loo", "leave-one-out or time split", ("loo", "time"))
    valid_start_ms: int = _opt(0, "time split: first validation time")
    test_start_ms: int = _opt(0, "time split: first test time")
    negatives: Optional[str] = _opt(
        None, "training negatives: logged non-clicks, popularity-sampled items the user has "
        "not interacted with up to that time, or both (default: both where the source logs "
        "non-clicks, else sampled)", ("observed", "sampled", "both"))
    vocab_from: str = _opt(
        "train", "vocabularies and popularity from training-time events only (items first seen "
        "in valid/test -> OOV), or also every item record (a catalogue given up front)",
        ("train", "catalog"))
    neg_per_pos: Optional[int] = _opt(None, "sampled negatives per positive (default 1 when "
                                      "sampled)")
    sampling: str = _opt("popularity", "how negatives are sampled", ("uniform", "popularity"))
    num_candidates: int = _opt(100, "candidates per evaluation group (1 positive + sampled)")
    seed: int = _opt(0, "sampling seed")
    synth_queries: Optional[bool] = _opt(
        None, "synthesise queries from titles (default: for sources without real queries)")
    text_vectors: Optional[str] = _opt(None, "text vectors .npy (default: the input's own)")
    text_ids: Optional[str] = _opt(None, "item ids of the text vectors")
    image_vectors: Optional[str] = _opt(None, "image vectors .npy (default: the input's own)")
    image_ids: Optional[str] = _opt(None, "item ids of the image vectors")
    fmt: str = _opt("store", "store: each user's timeline once + light target records "
                    "(output bytes O(events)); examples: one self-contained Example per target "
                    "(bytes O(events x L))", ("store", "examples"), flag="--format")
    shards: Optional[int] = _opt(None, "output shards; users are hashed to shards, each built "
                                 "and written by one worker (default: 4 per 100 MB of input, "
                                 ">= 8)")
    timestamp_unit: str = _opt(
        "auto", "events source: the unit of `timestamp` for the whole input (auto: ms if any "
        "of the first 1,000 rows is >= 1e11, else s; recorded in stats.json)",
        ("auto", "s", "ms"))
    multiprocess: bool = _opt(False, "DirectRunner with one process per core")
    overwrite: bool = _opt(False, "replace a non-empty output directory whole (without it a "
                           "non-empty output is refused: two runs' files never mix)")
    sampler_top: int = _opt(1_000_000, "negative sampler: items kept by count")
    tail_sample: int = _opt(1_000_000, "negative sampler: uniform sample of the other items")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "PreprocessOptions":
        """Options from a config section (e.g. the pipeline's `preprocess`); `format` is
        accepted for `fmt`. Unknown keys are errors naming them."""
        values = dict(values)
        if "format" in values:
            values["fmt"] = values.pop("format")
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown preprocess option(s) {unknown}; known: "
                             f"{sorted(f.name for f in dataclasses.fields(cls))}")
        return cls(**values)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "PreprocessOptions":
        return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})

    def beam_args(self, cpu_count: int) -> list:
        """The DirectRunner flags these options ask for."""
        return (["--direct_running_mode=multi_processing",
                 f"--direct_num_workers={cpu_count}"] if self.multiprocess else [])

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `seminar preprocess` flags: --source, --input, --output and one per option
    (unknown flags are passed to Beam)."""
    parser.add_argument("--source", choices=sorted(SOURCES), required=True)
    parser.add_argument("--input", required=True, help="directory of raw files")
    parser.add_argument("--output", required=True, help="output directory")
    for f in dataclasses.fields(PreprocessOptions):
        meta = f.metadata
        flag = meta["flag"] or "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            parser.add_argument(flag, dest=f.name, action="store_true", help=meta["help"])
            continue
        kind = {"int": int, "Optional[int]": int}.get(str(f.type), str)
        if str(f.type) == "Optional[bool]":
            parser.add_argument(flag, dest=f.name, default=None, help=meta["help"],
                                type=lambda v: v.lower() in ("1", "true", "yes"))
            continue
        parser.add_argument(flag, dest=f.name, type=kind, default=f.default,
                            choices=meta["choices"], help=meta["help"])
