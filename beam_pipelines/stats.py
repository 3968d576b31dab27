"""The pipeline's statistics: the summary written to stats.json and the row accounting."""
from __future__ import annotations

import json
from typing import Dict

from beam_pipelines.sequences import SPLITS


def summarize(parts):
    out = {"dead_letters": {}, "examples": {s: 0 for s in SPLITS}, "length_hist": {},
           "events": 0, "labels": {}, "rows": {}, "sizes": {}}
    for kind, key, value in parts:
        if kind == "rows":
            out["rows"][key] = out["rows"].get(key, 0) + value
        elif kind == "dead":
            out["dead_letters"][key] = out["dead_letters"].get(key, 0) + value
        elif kind == "len":
            split, length = key
            out["examples"][split] += value
            b = bucket(length)
            out["length_hist"][b] = out["length_hist"].get(b, 0) + value
        elif kind == "sizes":
            out["sizes"][key] = value
        elif kind == "events":
            out["events"] += value
        elif kind == "cands":
            out["examples"]["candidates"] += value
    out["examples"].pop("candidate_lists")
    return json.dumps(out, sort_keys=True)


def row_accounting(rows: Dict[str, int], dead: int) -> Dict[str, int]:
    """Where every input row went: read = parsed + dead_letters + skipped_header +
    skipped_blank; parsed rows are events or item records, of which `duplicate_events` and
    `duplicate_item_records` (exact repeats) were counted once. Also checks that every
    shard of users with events was written exactly once.

    Raises:
        RuntimeError: the counts do not add up (a row was lost: a bug, never data).
    """
    out = {k: int(rows.get(k, 0)) for k in (
        "read", "parsed", "skipped_header", "skipped_blank", "duplicate_events",
        "item_records", "unique_item_records", "short_candidate_groups",
        "missing_candidates")}
    out["dead_letters"] = dead
    out["duplicate_item_records"] = out.pop("item_records") - out.pop("unique_item_records")
    accounted = out["parsed"] + dead + out["skipped_header"] + out["skipped_blank"]
    if accounted != out["read"]:
        raise RuntimeError(f"row accounting does not add up: {out}")
    written, expected = rows.get("shards_written", 0), rows.get("shards_with_events", 0)
    if written != expected:  # a shard's output (or its statistics) went missing
        raise RuntimeError(f"{written} shards written, {expected} shards have events")
    return out


def bucket(n: int) -> str:
    if n == 0:
        return "0"
    lo = 1 << (n.bit_length() - 1)
    return f"{lo}-{2 * lo - 1}"
