"""Normalized record types and the value parsers every source shares.

Every source's row parser (`beam_pipelines.sources.*`) turns one raw row into an `Event` or
an `ItemRecord`, or raises `RecordError` with a reason; the pipeline routes such rows to the
dead-letter output with the source file and line number. The parsers are plain functions so
that they are unit-testable without Beam.
"""
from __future__ import annotations

import csv
import json
import math
import re
from typing import Dict, NamedTuple, Optional, Sequence, Tuple

from seminar_tf.raw_events import timestamp_ms
from seminar_tf.text import words as text_words

SOURCE_REC = 1
SOURCE_SEARCH = 2


class Event(NamedTuple):
    """One user action. Ids are raw strings; vocabularies map them later.

    Attributes:
        user: raw user id.
        timestamp_ms: unix milliseconds.
        item: raw item id.
        query: query tokens (raw strings); empty for recommendation actions.
        label: 1.0 clicked / positive, 0.0 shown but not clicked.
        source: SOURCE_REC or SOURCE_SEARCH.
    """
    user: str
    timestamp_ms: int
    item: str
    query: Tuple[str, ...]
    label: float
    source: int


class ItemRecord(NamedTuple):
    """Side information of one item.

    Attributes:
        item: raw item id.
        attrs: attribute values as "field:value" strings, in field order (e.g. category
            levels, author); "" for a missing field.
        title: title / caption tokens (raw strings).
        text_vector, image_vector: optional inline pretrained vectors (generic source).
    """
    item: str
    attrs: Tuple[str, ...]
    title: Tuple[str, ...]
    text_vector: Optional[Tuple[float, ...]] = None
    image_vector: Optional[Tuple[float, ...]] = None


class DeadLetter(NamedTuple):
    """A row that could not be parsed."""
    source_file: str
    line: int
    reason: str
    row: str


class RecordError(ValueError):
    """Raised by a parser; `reason` is a short category, the message gives detail."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


_LIST_RE = re.compile(r"^\s*\[\s*(.*?)\s*\]\s*$")
def parse_token_list(text: str, field: str) -> Tuple[str, ...]:
    """Parses a KuaiSAR list string like ``[20, 34, 3]`` (``[]`` is empty)."""
    if text and text[0] == "[" and text[-1] == "]":  # the common case, already canonical
        tokens = tuple(t.strip() for t in text[1:-1].split(","))
        if all(t.isascii() and t.isdigit() and (t[0] != "0" or t == "0") for t in tokens):
            return tokens
        if tokens == ("",):
            return ()
    m = _LIST_RE.match(text or "")
    if not m:
        raise RecordError("bad_token_list", f"{field}={text!r}")
    body = m.group(1)
    if not body:
        return ()
    tokens = tuple(t.strip().strip("'\"") for t in body.split(","))
    for t in tokens:
        if not t.lstrip("-").isdigit():
            raise RecordError("bad_token_list", f"{field}={text!r}")
    return tuple(str(int(t)) for t in tokens)


def parse_id(value, field: str) -> str:
    """A non-empty integer id (ints, integral floats and numeric strings accepted)."""
    if type(value) is str and value.isascii() and value.isdigit() and (
            value[0] != "0" or value == "0"):
        return value  # the common case, already canonical
    if value is None or (isinstance(value, str) and not value.strip()):
        raise RecordError("missing_id", field)
    if isinstance(value, bool):
        raise RecordError("bad_id", f"{field}={value!r}")
    if isinstance(value, (int, float)):
        if isinstance(value, float) and (not math.isfinite(value) or value != int(value)):
            raise RecordError("bad_id", f"{field}={value!r}")
        return str(int(value))
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        raise RecordError("bad_id", f"{field}={value!r}") from None
    if not math.isfinite(number) or number != int(number):
        raise RecordError("bad_id", f"{field}={value!r}")
    return str(int(number))


def parse_string_id(value, field: str) -> str:
    """A non-empty string id (Amazon ASINs, reviewer ids, generic ids)."""
    if value is None or isinstance(value, (dict, list, bool)):
        raise RecordError("missing_id" if value is None else "bad_id", field)
    text = str(value).strip()
    if not text:
        raise RecordError("missing_id", field)
    return text


def parse_timestamp_ms(value, field: str, unit: str = "ms") -> int:
    """Unix time in `unit` ('ms' or 's', or 'auto': < 1e11 means seconds) to milliseconds
    (`seminar_tf.raw_events.timestamp_ms`, which the serving client shares).

    Accepts floats in scientific notation such as ``1.684742676757e+12``.
    """
    try:
        return timestamp_ms(value, unit)
    except ValueError:
        raise RecordError("bad_timestamp", f"{field}={value!r}") from None


def parse_number(value, field: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RecordError("bad_number", f"{field}={value!r}") from None
    if not math.isfinite(number):
        raise RecordError("bad_number", f"{field}={value!r}")
    return number


def words(text: str) -> Tuple[str, ...]:
    """Query / title tokens: `seminar_tf.text.words`, the definition the served graph
    shares (`seminar_tf.text.words_tf`)."""
    return text_words(text)


def csv_row(line: str, header: Sequence[str], delimiter: str = ",",
            keep: Optional[Tuple[Sequence[str], Sequence[int]]] = None) -> Dict[str, str]:
    """Splits one CSV line and maps it onto the header; wrong column counts are errors.

    `keep` (`csv_keep`): (names, indices) of the only columns to return."""
    try:
        # a line without quotes, or with one quoted field free of quotes and delimiter
        # trouble, splits exactly as csv.reader splits it
        quotes = line.count('"')
        if quotes == 0:
            fields = line.split(delimiter)
        elif quotes == 2 and _one_quoted(line, delimiter):
            pre, quoted, post = line.split('"')
            fields = ((pre[:-1].split(delimiter) if pre else []) + [quoted]
                      + (post[1:].split(delimiter) if post else []))
        else:
            fields = next(csv.reader([line], delimiter=delimiter, strict=True))
    except (csv.Error, StopIteration) as e:
        raise RecordError("bad_csv", str(e)) from None
    if len(fields) != len(header):
        raise RecordError("wrong_column_count",
                          f"{len(fields)} columns, header has {len(header)}")
    if keep is not None:
        return dict(zip(keep[0], [fields[i] for i in keep[1]]))
    return dict(zip(header, fields))


def csv_keep(header: Sequence[str], columns: Optional[Sequence[str]]
             ) -> Optional[Tuple[Tuple[str, ...], Tuple[int, ...]]]:
    """`csv_row`'s `keep` for the wanted columns found in the header (a repeated name maps
    to its last column, as in the full dict); None (every column) without `columns`."""
    if columns is None:
        return None
    index = {name: i for i, name in enumerate(header)}
    found = [c for c in columns if c in index]
    return tuple(found), tuple(index[c] for c in found)


def _one_quoted(line: str, delimiter: str) -> bool:
    pre, _, post = line.split('"')
    return (not pre or pre.endswith(delimiter)) and (not post or post.startswith(delimiter))


def json_object(line: str) -> dict:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise RecordError("bad_json", str(e)) from None
    if not isinstance(obj, dict):
        raise RecordError("bad_json", "not an object")
    return obj
