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
