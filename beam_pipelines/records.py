"""Normalized record types and the per-source row parsers.

Every reader turns one raw row into an `Event` or an `ItemRecord`, or raises `RecordError`
with a reason; the pipeline routes such rows to the dead-letter output with the source file and
line number. The parsers are plain functions so that they are unit-testable without Beam.
"""
from __future__ import annotations

import csv
import json
import math
import re
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

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
_WORD_RE = re.compile(r"[0-9a-z]+")


def parse_token_list(text: str, field: str) -> Tuple[str, ...]:
    """Parses a KuaiSAR list string like ``[20, 34, 3]`` (``[]`` is empty)."""
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
    """Unix time in `unit` ('ms' or 's', or 'auto': < 1e11 means seconds) to milliseconds.

    Accepts floats in scientific notation such as ``1.684742676757e+12``.
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RecordError("bad_timestamp", f"{field}={value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise RecordError("bad_timestamp", f"{field}={value!r}")
    if unit == "auto":
        unit = "s" if number < 1e11 else "ms"
    return int(round(number * 1000)) if unit == "s" else int(round(number))


def parse_number(value, field: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RecordError("bad_number", f"{field}={value!r}") from None
    if not math.isfinite(number):
        raise RecordError("bad_number", f"{field}={value!r}")
    return number


def words(text: str) -> Tuple[str, ...]:
    """Lower-cased alphanumeric words of a title (the text tokenizer of Amazon/MovieLens)."""
    return tuple(_WORD_RE.findall((text or "").lower()))


def csv_row(line: str, header: Sequence[str], delimiter: str = ",") -> Dict[str, str]:
    """Splits one CSV line and maps it onto the header; wrong column counts are errors."""
    try:
        fields = next(csv.reader([line], delimiter=delimiter, strict=True))
    except (csv.Error, StopIteration) as e:
        raise RecordError("bad_csv", str(e)) from None
    if len(fields) != len(header):
        raise RecordError("wrong_column_count",
                          f"{len(fields)} columns, header has {len(header)}")
    return dict(zip(header, fields))


# --------------------------------------------------------------------------- KuaiSAR
KUAISAR_ATTR_FIELDS = ("first_level_category_id", "second_level_category_id",
                       "third_level_category_id", "author_id")


def kuaisar_rec(row: Dict[str, str]) -> Event:
    return Event(user=parse_id(row["user_id"], "user_id"),
                 timestamp_ms=parse_timestamp_ms(row["timestamp"], "timestamp"),
                 item=parse_id(row["item_id"], "item_id"), query=(),
                 label=1.0 if parse_number(row["click"], "click") > 0 else 0.0,
                 source=SOURCE_REC)


def kuaisar_src(row: Dict[str, str]) -> Event:
    return Event(user=parse_id(row["user_id"], "user_id"),
                 timestamp_ms=parse_timestamp_ms(row["search_session_timestamp"],
                                                 "search_session_timestamp"),
                 item=parse_id(row["item_id"], "item_id"),
                 query=parse_token_list(row["keyword"], "keyword"),
                 label=1.0 if parse_number(row["click_cnt"], "click_cnt") > 0 else 0.0,
                 source=SOURCE_SEARCH)


def kuaisar_item(row: Dict[str, str]) -> ItemRecord:
    attrs = []
    for field in KUAISAR_ATTR_FIELDS:
        value = (row.get(field) or "").strip()
        missing = value in ("", "0", "-124", "nan")  # 0 is KuaiSAR's padding id
        if not missing:
            value = parse_id(value, field)
        attrs.append("" if missing else f"{field.split('_')[0]}:{value}")
    return ItemRecord(item=parse_id(row["item_id"], "item_id"), attrs=tuple(attrs),
                      title=parse_token_list(row.get("caption") or "[]", "caption"))


# --------------------------------------------------------------------------- Amazon
def amazon_review(line: str) -> Event:
    obj = _json_object(line)
    return Event(user=parse_string_id(obj.get("reviewerID"), "reviewerID"),
                 timestamp_ms=parse_timestamp_ms(obj.get("unixReviewTime"),
                                                 "unixReviewTime", unit="s"),
                 item=parse_string_id(obj.get("asin"), "asin"), query=(), label=1.0,
                 source=SOURCE_REC)


def amazon_meta(line: str) -> ItemRecord:
    obj = _json_object(line)
    cats = obj.get("category") or obj.get("categories") or []
    if cats and isinstance(cats[0], list):  # older dumps: list of category paths
        cats = cats[0]
    cats = [str(c) for c in cats if str(c).strip()]
    levels = cats[1:4] if len(cats) > 1 else cats[:3]  # skip the root (e.g. "Movies & TV")
    levels = levels + [""] * (3 - len(levels))
    attrs = tuple(f"cat{i + 1}:{c}" if c else "" for i, c in enumerate(levels))
    brand = str(obj.get("brand") or "").strip()
    return ItemRecord(item=parse_string_id(obj.get("asin"), "asin"),
                      attrs=attrs + ((f"brand:{brand}",) if brand else ("",)),
                      title=words(str(obj.get("title") or "")))


# --------------------------------------------------------------------------- MovieLens
ML100K_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                 "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical",
                 "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western")
POSITIVE_RATING = 4.0


def movielens_rating(fields: List[str]) -> Event:
    if len(fields) != 4:
        raise RecordError("wrong_column_count", f"{len(fields)} fields, expected 4")
    user, item, rating, ts = fields
    return Event(user=parse_id(user, "user_id"),
                 timestamp_ms=parse_timestamp_ms(ts, "timestamp", unit="s"),
                 item=parse_id(item, "item_id"), query=(),
                 label=1.0 if parse_number(rating, "rating") >= POSITIVE_RATING else 0.0,
                 source=SOURCE_REC)


def _genre_attrs(genres: Sequence[str]) -> Tuple[str, ...]:
    genres = [g for g in genres if g and g != "unknown"][:3]
    return tuple(f"genre:{g}" for g in genres) + ("",) * (3 - len(genres))


def movielens_100k_item(fields: List[str]) -> ItemRecord:
    if len(fields) != 5 + len(ML100K_GENRES):
        raise RecordError("wrong_column_count",
                          f"{len(fields)} fields, expected {5 + len(ML100K_GENRES)}")
    flags = fields[5:]
    if any(f not in ("0", "1") for f in flags):
        raise RecordError("bad_genre_flags", "|".join(flags))
    genres = [g for g, f in zip(ML100K_GENRES, flags) if f == "1"]
    year = re.search(r"\((\d{4})\)\s*$", fields[1])
    return ItemRecord(item=parse_id(fields[0], "movie_id"),
                      attrs=_genre_attrs(genres) + ((f"year:{year.group(1)}",) if year
                                                    else ("",)),
                      title=words(re.sub(r"\(\d{4}\)\s*$", "", fields[1])))


def movielens_1m_item(fields: List[str]) -> ItemRecord:
    if len(fields) != 3:
        raise RecordError("wrong_column_count", f"{len(fields)} fields, expected 3")
    year = re.search(r"\((\d{4})\)\s*$", fields[1])
    return ItemRecord(item=parse_id(fields[0], "movie_id"),
                      attrs=_genre_attrs(fields[2].split("|")) + (
                          (f"year:{year.group(1)}",) if year else ("",)),
                      title=words(re.sub(r"\(\d{4}\)\s*$", "", fields[1])))


# --------------------------------------------------------------------------- generic
def generic_event(line: str) -> Event:
    obj = _json_object(line)
    query = obj.get("query")
    if query is None:
        tokens = ()
    elif isinstance(query, str):
        tokens = words(query)
    elif isinstance(query, list):
        tokens = tuple(str(t) for t in query)
    else:
        raise RecordError("bad_query", f"query={query!r}")
    source = obj.get("source")
    if source is None:
        source = SOURCE_SEARCH if tokens else SOURCE_REC
    elif source in ("search", SOURCE_SEARCH):
        source = SOURCE_SEARCH
    elif source in ("rec", "recommendation", SOURCE_REC):
        source = SOURCE_REC
    else:
        raise RecordError("bad_source", f"source={source!r}")
    label = obj.get("label", 1.0)
    return Event(user=parse_string_id(obj.get("user_id"), "user_id"),
                 timestamp_ms=parse_timestamp_ms(obj.get("timestamp"), "timestamp",
                                                 unit="auto"),
                 item=parse_string_id(obj.get("item_id"), "item_id"), query=tokens,
                 label=1.0 if parse_number(label, "label") > 0 else 0.0, source=source)


def generic_item(line: str) -> ItemRecord:
    obj = _json_object(line)
    cats = obj.get("categories") or []
    if isinstance(cats, str):
        cats = [cats]
    cats = [str(c) for c in cats][:4]
    attrs = tuple(f"cat{i + 1}:{c}" for i, c in enumerate(cats)) + ("",) * (4 - len(cats))

    def vector(name):
        v = obj.get(name)
        if v is None:
            return None
        if not isinstance(v, list) or not v:
            raise RecordError("bad_vector", name)
        return tuple(parse_number(x, name) for x in v)

    return ItemRecord(item=parse_string_id(obj.get("item_id"), "item_id"), attrs=attrs,
                      title=words(str(obj.get("title") or "")),
                      text_vector=vector("text_vector"), image_vector=vector("image_vector"))


def _json_object(line: str) -> dict:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise RecordError("bad_json", str(e)) from None
    if not isinstance(obj, dict):
        raise RecordError("bad_json", "not an object")
    return obj
