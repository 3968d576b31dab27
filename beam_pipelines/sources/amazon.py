"""Amazon reviews (McAuley 5-core JSON lines + meta JSON lines): every review is a
positive; negatives are sampled; queries are synthesised."""
from __future__ import annotations

from beam_pipelines.records import (SOURCE_REC, Event, ItemRecord, json_object, parse_string_id,
                                    parse_timestamp_ms, words)
from beam_pipelines.sources.base import Source, SourceSpec


def amazon_review(line: str) -> Event:
    obj = json_object(line)
    return Event(user=parse_string_id(obj.get("reviewerID"), "reviewerID"),
                 timestamp_ms=parse_timestamp_ms(obj.get("unixReviewTime"),
                                                 "unixReviewTime", unit="s"),
                 item=parse_string_id(obj.get("asin"), "asin"), query=(), label=1.0,
                 source=SOURCE_REC)


def amazon_meta(line: str) -> ItemRecord:
    obj = json_object(line)
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




class Amazon(Source):
    name = "amazon"
    has_real_queries = False
    parsers = {"amazon_review": (amazon_review, "json"), "amazon_meta": (amazon_meta, "json")}

    @classmethod
    def find(cls, input_dir: str) -> SourceSpec:
        meta = cls.glob(input_dir, "meta_*.json", "meta_*.json.gz", "meta*.jsonl",
                        "meta*.jsonl.gz")
        reviews = [p for p in cls.glob(input_dir, "*.json", "*.json.gz", "*.jsonl",
                                       "*.jsonl.gz") if p not in meta]
        if not reviews:
            raise FileNotFoundError(f"amazon: no review JSON lines file in {input_dir}")
        return SourceSpec(cls.name, [("amazon_review", p) for p in reviews]
                          + [("amazon_meta", p) for p in meta], has_negatives=False)
