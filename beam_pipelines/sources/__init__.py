"""Data sources: one module per raw-log format, one name -> class table (`SOURCES`).

Each source subclasses `base.Source`, declaring its files (`find`), its row parsers and
whether it has real negatives and real queries. Adding a source: one new module here plus one
line below (docs/design.md, "Adding a variant"). The table holds names so that the CLI can
offer `--source` without importing Beam.
"""
from __future__ import annotations

from typing import Dict, NamedTuple

from seminar_tf.lazy_table import load_class


class Entry(NamedTuple):
    module: str
    cls: str


SOURCES: Dict[str, Entry] = {
    "kuaisar": Entry("kuaisar", "KuaiSAR"),
    "amazon": Entry("amazon", "Amazon"),
    "movielens": Entry("movielens", "MovieLens"),
    "events": Entry("events", "GenericEvents"),
}


def source_class(name: str):
    """The Source class registered under `name` (a module of this package, or a fully
    qualified module path)."""
    return load_class(SOURCES, name, __name__,
                      f"--source must be one of {sorted(SOURCES)}, got {name!r}")
