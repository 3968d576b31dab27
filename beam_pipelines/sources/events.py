"""Generic events: events*.jsonl {user_id, item_id, timestamp, query?, label?, source?} and
optional items*.jsonl {item_id, title, categories, text_vector?, image_vector?}."""
from __future__ import annotations

from beam_pipelines.records import (Event, ItemRecord, RecordError,
                                    json_object, parse_number, parse_string_id, parse_timestamp_ms,
                                    words)
from beam_pipelines.sources.base import Source, SourceSpec
from seminar_tf.raw_events import source_id


def generic_event(line: str, timestamp_unit: str = "ms") -> Event:
    """One events*.jsonl row; `timestamp` in `timestamp_unit` ("s" or "ms"), decided once
    for the whole input (`GenericEvents.find`, or `--timestamp-unit`), never per row."""
    obj = json_object(line)
    query = obj.get("query")
    if query is None:
        tokens = ()
    elif isinstance(query, str):
        tokens = words(query)
    elif isinstance(query, list):
        tokens = tuple(str(t) for t in query)
    else:
        raise RecordError("bad_query", f"query={query!r}")
    try:  # the definition the served graph and the client share
        source = source_id(obj.get("source"), tokens)
    except ValueError:
        raise RecordError("bad_source", f"source={obj.get('source')!r}") from None
    label = obj.get("label", 1.0)
    return Event(user=parse_string_id(obj.get("user_id"), "user_id"),
                 timestamp_ms=parse_timestamp_ms(obj.get("timestamp"), "timestamp",
                                                 unit=timestamp_unit),
                 item=parse_string_id(obj.get("item_id"), "item_id"), query=tokens,
                 label=1.0 if parse_number(label, "label") > 0 else 0.0, source=source)


def generic_item(line: str) -> ItemRecord:
    obj = json_object(line)
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




class GenericEvents(Source):
    name = "events"
    has_real_queries = True
    parsers = {"generic_event": (generic_event, "json"), "generic_item": (generic_item, "json")}

    @classmethod
    def find(cls, input_dir: str) -> SourceSpec:
        from beam_pipelines.reading import any_has_key
        files = cls.need(input_dir, "generic_event", "events*.jsonl", "events*.jsonl.gz",
                         "events*.json")
        files += cls.optional(input_dir, "generic_item", "items*.jsonl", "items*.jsonl.gz")
        events = [p for k, p in files if k == "generic_event"]
        return SourceSpec(cls.name, files, has_negatives=any_has_key(events, "label"),
                          timestamp_unit=probe_timestamp_unit(events))


def probe_timestamp_unit(paths, probe: int = 1000) -> str:
    """The unit of the input's `timestamp` values, decided once from its first rows: "ms"
    if any probed value is >= 1e11 (a Unix time in ms after 1973), else "s". Relative
    millisecond clocks below 1e11 need `--timestamp-unit ms`."""
    from beam_pipelines.reading import first_values
    values = first_values(paths, "timestamp", probe)
    return "ms" if any(v >= 1e11 for v in values) else "s"
