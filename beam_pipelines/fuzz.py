"""Corrupting raw input files, and counting their rows independently of the pipeline.

Used by `tests/beam_pipelines/test_fuzz_sources.py` and `benchmarks/fuzz_data.py` to check
that every row read ends up parsed, dead-lettered with a reason, or in a named skip count.
"""
from __future__ import annotations

import gzip
import os
import random
import zlib
from typing import List


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    """Byte flips, a cut (truncation) or both."""
    b = bytearray(data)
    mode = rng.choice(["flip", "truncate", "both"])
    if mode in ("flip", "both"):
        for _ in range(rng.randint(1, 8)):
            if b:
                b[rng.randrange(len(b))] = rng.randrange(256)
    if mode in ("truncate", "both") and len(b) > 1:
        b = b[:rng.randint(1, len(b) - 1)]
    return bytes(b)


def mutate_file(path: str, rng: random.Random, compressed_level: bool = False) -> None:
    """Corrupts `path` in place. For a .gz file, either the compressed stream itself
    (`compressed_level`) or the text inside it (re-compressed) is mutated."""
    raw = open(path, "rb").read()
    if path.endswith(".gz") and not compressed_level:
        raw = gzip.compress(mutate_bytes(gzip.decompress(raw), rng))
    else:
        raw = mutate_bytes(raw, rng)
    with open(path, "wb") as f:
        f.write(raw)


def count_rows(path: str) -> int:
    """Lines a line reader gets from `path`; a broken compressed stream counts one row
    for the unreadable rest (as the pipeline's dead letter does)."""
    opener = gzip.open if path.endswith(".gz") else open
    n = 0
    with opener(path, "rb") as f:
        try:
            for _ in f:
                n += 1
        except (OSError, EOFError, zlib.error):
            n += 1
    return n


def input_files(directory: str) -> List[str]:
    return sorted(os.path.join(directory, f) for f in os.listdir(directory)
                  if not f.endswith((".npy", ".txt")) and f != "meta.json")
