"""The base of the data sources: which files of an input directory hold what, how each
row kind is parsed, and what the source brings (real negatives, real queries)."""
from __future__ import annotations

import abc
import dataclasses
import os
from typing import Callable, Dict, List, Optional, Tuple

from apache_beam.io.filesystems import FileSystems

# row formats: "csv" rows are dicts by header, "json" raw lines, "tab"/"pipe"/"colons" split
ROW_FORMATS = ("csv", "json", "tab", "pipe", "colons")


@dataclasses.dataclass
class SourceSpec:
    """The files found for one run: (row kind, path) pairs, their encoding, and whether the
    logs hold real non-clicks (negatives)."""
    source: str
    files: List[Tuple[str, str]]
    encoding: str = "utf-8"
    has_negatives: bool = True
    timestamp_unit: Optional[str] = None  # "s" / "ms" for sources whose unit varies by input


class Source(abc.ABC):
    """One raw-log format. Subclasses set the class attributes and implement `find`.

    Attributes:
        name: the `--source` name.
        encoding: text encoding of its files.
        has_real_queries: its search actions carry real queries; without them the pipeline
            synthesises queries from the user's previous positive item (never the target's).
        parsers: row kind -> (parser, row format); a parser takes a row (dict, line or field
            list, by format) and returns an Event or an ItemRecord, or raises RecordError.
        columns: row kind -> the columns its parser reads (csv rows): the row dicts hold
            only these (those in the header), which saves building wide dicts per row;
            kinds not listed get every column.
    """
    name: str = ""
    encoding: str = "utf-8"
    has_real_queries: bool = True
    parsers: Dict[str, Tuple[Callable, str]] = {}
    columns: Dict[str, Tuple[str, ...]] = {}

    @classmethod
    @abc.abstractmethod
    def find(cls, input_dir: str) -> SourceSpec:
        """Locates the files of this source in `input_dir`.

        Raises:
            FileNotFoundError: a required file is missing (named in the message).
        """

    @classmethod
    def glob(cls, input_dir: str, *patterns: str) -> List[str]:
        """Sorted paths matching any pattern (any Beam filesystem: local, gs://, ...)."""
        found = set()
        for pat in patterns:
            for m in FileSystems.match([FileSystems.join(input_dir, pat)])[0].metadata_list:
                found.add(m.path)
        return sorted(found)

    @classmethod
    def need(cls, input_dir: str, kind: str, *patterns: str) -> List[Tuple[str, str]]:
        """(kind, path) of the files matching `patterns`; at least one must exist."""
        found = cls.glob(input_dir, *patterns)
        if not found:
            raise FileNotFoundError(f"{cls.name}: no {' or '.join(patterns)} in {input_dir}")
        return [(kind, p) for p in found]

    @classmethod
    def optional(cls, input_dir: str, kind: str, *patterns: str) -> List[Tuple[str, str]]:
        return [(kind, p) for p in cls.glob(input_dir, *patterns)]


def basename(path: str) -> str:
    return os.path.basename(path.rstrip("/"))
