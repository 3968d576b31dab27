"""The one name -> class lookup of the variant tables (GSUs, PSU objectives, Beam sources).

A table maps a name to an entry with `module` and `cls` *names*, so that configs can be
validated without importing TensorFlow or Beam; the class is imported on first use.
"""
from __future__ import annotations

import importlib
from typing import Mapping


def load_class(table: Mapping, name: str, package: str, unknown: str):
    """The class registered under `name` in `table`.

    Args:
        table: name -> entry with `module` (a module of `package`, or a fully qualified
            module path) and `cls`.
        name: the registered name.
        package: the package that holds the table's own modules.
        unknown: the error message for a name not in the table.

    Raises:
        ValueError: `name` is not in `table`.
    """
    if name not in table:
        raise ValueError(unknown)
    entry = table[name]
    path = entry.module if "." in entry.module else f"{package}.{entry.module}"
    return getattr(importlib.import_module(path), entry.cls)
