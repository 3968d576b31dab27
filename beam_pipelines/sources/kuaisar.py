"""KuaiSAR (Kuaishou search + recommendation): rec_inter.csv, src_inter.csv,
item_features.csv; real non-clicks, real (anonymised) keyword queries."""
from __future__ import annotations

from typing import Dict

from beam_pipelines.records import (SOURCE_REC, SOURCE_SEARCH, Event, ItemRecord, parse_id,
                                    parse_number, parse_timestamp_ms, parse_token_list)
from beam_pipelines.sources.base import Source, SourceSpec

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




class KuaiSAR(Source):
    name = "kuaisar"
    has_real_queries = True
    parsers = {"kuaisar_rec": (kuaisar_rec, "csv"), "kuaisar_src": (kuaisar_src, "csv"),
               "kuaisar_item": (kuaisar_item, "csv")}
    columns = {"kuaisar_rec": ("user_id", "timestamp", "item_id", "click"),
               "kuaisar_src": ("user_id", "search_session_timestamp", "item_id", "keyword",
                               "click_cnt"),
               "kuaisar_item": ("item_id", "caption") + KUAISAR_ATTR_FIELDS}

    @classmethod
    def find(cls, input_dir: str) -> SourceSpec:
        files = (cls.need(input_dir, "kuaisar_rec", "rec_inter.csv", "rec_inter*.csv.gz")
                 + cls.optional(input_dir, "kuaisar_src", "src_inter.csv", "src_inter*.csv.gz")
                 + cls.need(input_dir, "kuaisar_item", "item_features.csv",
                            "item_features*.csv.gz"))
        return SourceSpec(cls.name, files, has_negatives=True)
