"""A dummy source for the extension test: `clicks*.tsv` with user, item, unix seconds."""
from beam_pipelines.records import (SOURCE_REC, Event, RecordError, parse_id,
                                    parse_timestamp_ms)
from beam_pipelines.sources.base import Source, SourceSpec


def tsv_click(fields):
    if len(fields) != 3:
        raise RecordError("wrong_column_count", f"{len(fields)} fields, expected 3")
    return Event(user=parse_id(fields[0], "user"), item=parse_id(fields[1], "item"),
                 timestamp_ms=parse_timestamp_ms(fields[2], "ts", unit="s"), query=(),
                 label=1.0, source=SOURCE_REC)


class TsvClicks(Source):
    name = "tsv"
    has_real_queries = False
    parsers = {"tsv_click": (tsv_click, "tab")}

    @classmethod
    def find(cls, input_dir):
        return SourceSpec(cls.name, cls.need(input_dir, "tsv_click", "clicks*.tsv"),
                          has_negatives=False)
