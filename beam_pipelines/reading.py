"""Reading raw files: every row with its line number, parsed by its source's parser, every
row accounted for (parsed, dead-lettered with a reason, or a named skip)."""
from __future__ import annotations

import csv
import functools
import gzip
import inspect
import json
import math
import os
import zlib
from typing import List, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics

from beam_pipelines import records as R
from beam_pipelines.sources import source_class


def any_has_key(paths: Sequence[str], key: str, probe: int = 1000) -> bool:
    for p in paths:
        with open_file(p) as f:
            try:
                for i, raw in enumerate(f):
                    if i >= probe:
                        break
                    try:
                        obj = json.loads(raw)
                    except (json.JSONDecodeError, UnicodeDecodeError):
                        continue  # a malformed row: the reader dead-letters it later
                    if isinstance(obj, dict) and key in obj:
                        return True
            except (OSError, EOFError, zlib.error):
                continue  # a corrupt stream: the reader dead-letters the rest later
    return False


def first_values(paths: Sequence[str], key: str, probe: int = 1000) -> list:
    """Numeric values of `key` in the first `probe` JSON rows of the files (malformed rows
    and non-numbers skipped: the reader dead-letters them later)."""
    out = []
    for p in paths:
        with open_file(p) as f:
            try:
                for raw in f:
                    if len(out) >= probe:
                        return out
                    try:
                        value = float(json.loads(raw).get(key))
                    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError,
                            TypeError, ValueError):
                        continue
                    if math.isfinite(value):
                        out.append(value)
            except (OSError, EOFError, zlib.error):
                continue
    return out


def open_file(path: str):
    """Opens a local or remote (any Beam filesystem) file for reading bytes, gunzipping
    `.gz` files."""
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems
    f = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    return gzip.GzipFile(fileobj=f, mode="rb") if path.endswith(".gz") else f


# ------------------------------------------------------------------------ reading + parsing
class ReadAndParse(beam.DoFn):
    """Reads one file line by line (with line numbers) and parses each row.

    Main output: Event or ItemRecord; with `shards` > 0, events leave instead as tagged
    output "event_batches": (shard, (count, packed events)) per chunk of up to `chunk`
    events (one Beam element per chunk and shard, `beam_pipelines.shards`); tagged output
    "dead": DeadLetter; tagged output "rows": (count name, n) once per file, so that every
    row read is accounted for:
    read = parsed + dead letters + skipped (header, blank). A compressed stream that breaks
    (corrupt or truncated gzip) dead-letters the rest of its file as one "corrupt_stream"
    row naming the line it broke at, instead of failing the job.
    """

    def __init__(self, source: str, encoding: str, shards: int = 0, chunk: int = 20000,
                 timestamp_unit: Optional[str] = None):
        self.source, self.encoding = source, encoding
        self.timestamp_unit = timestamp_unit
        self.shards, self.chunk = shards, chunk
        self.rows = Metrics.counter("preprocess", "rows")

    def setup(self):
        self.parsers = dict(source_class(self.source).parsers)
        for kind, (parser, fmt) in self.parsers.items():  # the input's one timestamp unit
            if self.timestamp_unit and "timestamp_unit" in inspect.signature(
                    parser).parameters:
                self.parsers[kind] = (functools.partial(
                    parser, timestamp_unit=self.timestamp_unit), fmt)
        self.columns = source_class(self.source).columns

    def process(self, split):
        kind, path, start, end = split if len(split) == 4 else (*split, 0, None)
        parser, fmt = self.parsers[kind]
        header = _csv_header(path, self.encoding) if fmt == "csv" and start > 0 else None
        keep = R.csv_keep(header, self.columns.get(kind)) if header else None
        name = os.path.basename(path)
        counts = {"read": 0, "parsed": 0, "skipped_header": 0, "skipped_blank": 0}
        buf = []
        key = (path, start)
        with open_file(path) as f:
            lines = enumerate(_range_lines(f, start, end), start=1)
            while True:
                try:
                    line_no, raw = next(lines)
                except StopIteration:
                    break
                except (OSError, EOFError, zlib.error) as e:  # corrupt compressed stream
                    counts["read"] += 1
                    yield self._dead(key, name, counts["read"], "corrupt_stream",
                                     f"unreadable from line {counts['read']} to the end", e)
                    break
                counts["read"] += 1
                try:
                    line = raw.decode(self.encoding).rstrip("\r\n")
                except UnicodeDecodeError as e:
                    yield self._dead(key, name, line_no, "undecodable_bytes", repr(raw[:200]),
                                     e)
                    continue
                if not line.strip():
                    counts["skipped_blank"] += 1
                    continue
                if fmt == "csv" and header is None:
                    header = next(iter(csv.reader([line])))
                    keep = R.csv_keep(header, self.columns.get(kind))
                    counts["skipped_header"] += 1
                    continue
                try:
                    rec = self._parse(parser, fmt, line, header, keep)
                except R.RecordError as e:
                    yield self._dead(key, name, line_no, e.reason, line, e)
                    continue
                except (KeyError, IndexError) as e:
                    yield self._dead(key, name, line_no, "missing_column", line, e)
                    continue
                except (ValueError, TypeError, AttributeError, csv.Error) as e:
                    yield self._dead(key, name, line_no, "malformed_row", line, e)
                    continue
                counts["parsed"] += 1
                if self.shards and isinstance(rec, R.Event):
                    buf.append(rec)
                    if len(buf) >= self.chunk:
                        yield from self._flush(buf)
                        buf = []
                else:
                    yield rec
        yield from self._flush(buf)
        self.rows.inc(counts["read"])  # once per range: a counter call per row costs
        for count, n in counts.items():
            yield beam.pvalue.TaggedOutput("rows", (count, n))
        yield beam.pvalue.TaggedOutput("lines", (key, counts["read"]))

    def _flush(self, events):
        from beam_pipelines.shards import batch_by_shard
        for shard_batch in batch_by_shard(events, self.shards) if events else ():
            yield beam.pvalue.TaggedOutput("event_batches", shard_batch)

    @staticmethod
    def _parse(parser, fmt: str, line: str, header, keep):
        if fmt == "csv":
            return parser(R.csv_row(line, header, keep=keep))
        if fmt == "json":
            return parser(line)
        return parser(line.split({"tab": "\t", "pipe": "|", "colons": "::"}[fmt]))

    @staticmethod
    def _dead(key, name, line_no, reason, row, err):
        Metrics.counter("dead_letters", reason).inc()
        return beam.pvalue.TaggedOutput(
            "dead", (key, R.DeadLetter(name, line_no, f"{reason}: {err}", row[:1000])))


# ------------------------------------------------------------------------ byte-range splits
def file_splits(files, split_bytes: int = 8 << 20
                ) -> List[Tuple[str, str, int, Optional[int]]]:
    """(kind, path, start, end) byte ranges of ~`split_bytes` per uncompressed file (read by
    parallel workers; a range holds the lines that start inside it); a gzip file is one
    range (not splittable)."""
    from beam_pipelines import fileio
    out = []
    for kind, path in files:
        size = fileio.size(path)
        if path.endswith(".gz") or size <= split_bytes:
            out.append((kind, path, 0, None))
            continue
        bounds = list(range(0, size, split_bytes)) + [size]
        out += [(kind, path, a, b) for a, b in zip(bounds[:-1], bounds[1:])]
    return out


def absolute_dead_letters(keyed, lines_per_split) -> R.DeadLetter:
    """A dead letter's line number within its range -> within its file."""
    (path, start), dead = keyed
    before = sum(n for (p, s), n in lines_per_split if p == path and s < start)
    return dead._replace(line=dead.line + before)


def _range_lines(f, start: int, end: Optional[int]):
    """The raw lines of `f` that start at a byte offset in [start, end) (end None: to EOF)."""
    pos = 0
    if start > 0:
        f.seek(start - 1)
        pos = start - 1 + len(f.readline())  # the line that began before `start` is not ours
    for raw in f:
        if end is not None and pos >= end:
            return
        pos += len(raw)
        yield raw


def _csv_header(path: str, encoding: str):
    """The header (first non-blank line) of a CSV file, for ranges after the first."""
    with open_file(path) as f:
        for raw in f:
            line = raw.decode(encoding).rstrip("\r\n")
            if line.strip():
                return next(iter(csv.reader([line])))
    return None
