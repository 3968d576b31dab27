"""What a client logs, as the model reads it: one definition for the Beam job, the served
graph (`seminar_tf.workflows.raw_features`) and the client (`serving.client`).

- Query text -> tokens: `seminar_tf.text.words` (graph: `words_tf`).
- Source: "search" / 2 -> 2, "rec" / "recommendation" / 1 -> 1; missing ("" or None) ->
  search if the query has a token, else recommendation (`source_id`; graph: the same table).
- Time gap of a behaviour: `(request_ms - behaviour_ms) / 1000` seconds, in float64, then
  float32 (`time_gaps`; graph: `seminar_tf.data.store.time_gaps`, tested equal).
- Timestamps: unix milliseconds, or seconds with `unit="s"` (`timestamp_ms`).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

SOURCE_REC = 1
SOURCE_SEARCH = 2
# string form of a source -> its id ("" is missing: inferred from the query)
SOURCE_NAMES = {"search": SOURCE_SEARCH, "rec": SOURCE_REC, "recommendation": SOURCE_REC,
                str(SOURCE_SEARCH): SOURCE_SEARCH, str(SOURCE_REC): SOURCE_REC}


def source_id(value, tokens: Sequence[str]) -> int:
    """The source id of a logged source value (name, id or missing) and query tokens.

    Raises:
        ValueError: an unknown source value.
    """
    if value is None or value == "":
        return SOURCE_SEARCH if tokens else SOURCE_REC
    if isinstance(value, bool):
        raise ValueError(f"source={value!r}")
    if isinstance(value, int) and value in (SOURCE_REC, SOURCE_SEARCH):
        return value
    if isinstance(value, str) and value in SOURCE_NAMES:
        return SOURCE_NAMES[value]
    raise ValueError(f"source={value!r}")


def source_name(value, tokens: Sequence[str]) -> str:
    """The string the raw signatures take for a logged source value ("search" / "rec")."""
    return "search" if source_id(value, tokens) == SOURCE_SEARCH else "rec"


def timestamp_ms(value, unit: str = "ms") -> int:
    """Unix time in `unit` ("ms" or "s"; "auto": below 1e11 is seconds) -> milliseconds.

    Raises:
        ValueError: not a finite non-negative number, or an unknown unit.
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"timestamp={value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"timestamp={value!r}")
    if unit == "auto":
        unit = "s" if number < 1e11 else "ms"
    if unit not in ("s", "ms"):
        raise ValueError(f"timestamp unit must be 's', 'ms' or 'auto', not {unit!r}")
    return int(round(number * 1000)) if unit == "s" else int(round(number))


def time_gaps(request_ms, behaviour_ms) -> np.ndarray:
    """Seconds from each behaviour to the request (float32), as the model reads them."""
    diff = np.asarray(request_ms, np.int64) - np.asarray(behaviour_ms, np.int64)
    return (diff / 1000.0).astype(np.float32)


def label_of(value: Optional[object]) -> float:
    """A logged label as the Beam job reads it: missing is a positive, > 0 is a positive."""
    return 1.0 if value is None or float(value) > 0 else 0.0


# The raw signatures' history: one value per behaviour, except the two text fields, which a
# request carries once per distinct value (a history repeats its session queries and holds a
# couple of sources): the values [B, U] ("" pads) and each behaviour's index [B, H] into its
# row's values (-1: none, i.e. "").
HISTORY_FIELDS = ("hist_item_ids", "hist_queries", "hist_sources", "hist_timestamps_ms")
DICTIONARY_FIELDS = {"hist_queries": "hist_query_index", "hist_sources": "hist_source_index"}


def dictionary_encode(rows: Sequence[Sequence[str]], width: int):
    """Per-row string lists -> (distinct values [B, U] object array, "" padded; indices
    [B, width] int32 into the row's values, -1 for "" and past a row's end)."""
    values, index = [], np.full((len(rows), width), -1, np.int32)
    for b, row in enumerate(rows):
        seen = {}
        for h, v in enumerate(row):
            if v != "":
                index[b, h] = seen.setdefault(v, len(seen))
        values.append(list(seen))
    u = max((len(v) for v in values), default=0)
    out = np.full((len(rows), u), "", object)
    for b, v in enumerate(values):
        out[b, :len(v)] = v
    return out, index


def request_arrays(rows: Sequence[dict], target: str = "candidates") -> dict:
    """The raw signatures' inputs of B rows, each a dict of `user_id`, `query`, `source`,
    `request_time_ms` and per-behaviour lists `HISTORY_FIELDS` (oldest first) and
    `candidates`: histories and candidate lists padded with "" (timestamps with 0), the text
    fields dictionary-encoded (`DICTIONARY_FIELDS`). `target="item_id"` gives `score_raw`
    inputs from rows with one candidate each.

    Raises:
        ValueError: a row's history fields differ in length; `item_id` rows with other than
            one candidate.
    """
    out = {k: np.array([r[k] for r in rows], dtype=np.int64 if k == "request_time_ms"
                       else object) for k in ("user_id", "query", "source", "request_time_ms")}
    for b, r in enumerate(rows):
        lengths = {len(r[k]) for k in HISTORY_FIELDS}
        if len(lengths) > 1:
            raise ValueError(f"row {b}: the history fields {HISTORY_FIELDS} differ in length")
    h = max((len(r["hist_item_ids"]) for r in rows), default=0)
    for key in HISTORY_FIELDS:
        if key in DICTIONARY_FIELDS:
            out[key], out[DICTIONARY_FIELDS[key]] = dictionary_encode([r[key] for r in rows], h)
            continue
        pad = 0 if key == "hist_timestamps_ms" else ""
        out[key] = np.full((len(rows), h), pad, np.int64 if pad == 0 else object)
        for b, r in enumerate(rows):
            out[key][b, :len(r[key])] = r[key]
    n = max((len(r["candidates"]) for r in rows), default=0)
    out["candidates"] = np.full((len(rows), n), "", object)
    for b, r in enumerate(rows):
        out["candidates"][b, :len(r["candidates"])] = r["candidates"]
    if target == "item_id":
        if out["candidates"].shape[1] != 1:
            raise ValueError("score_raw rows take exactly one candidate each")
        out["item_id"] = out.pop("candidates")[:, 0]
    return out
