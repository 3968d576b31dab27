"""MovieLens in the GroupLens layouts: u.data + u.item (100k) or ratings.dat + movies.dat
(1m), latin-1; rating >= 4 positive, below negative; queries are synthesised."""
from __future__ import annotations

import re
from typing import List, Sequence, Tuple

from beam_pipelines.records import (SOURCE_REC, Event, ItemRecord, RecordError, parse_id,
                                    parse_number, parse_timestamp_ms, words)
from beam_pipelines.sources.base import Source, SourceSpec

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




class MovieLens(Source):
    name = "movielens"
    encoding = "latin-1"
    has_real_queries = False
    parsers = {"ml100k_rating": (movielens_rating, "tab"),
               "ml100k_item": (movielens_100k_item, "pipe"),
               "ml1m_rating": (movielens_rating, "colons"),
               "ml1m_item": (movielens_1m_item, "colons")}

    @classmethod
    def find(cls, input_dir: str) -> SourceSpec:
        if cls.glob(input_dir, "u.data"):
            files = (cls.need(input_dir, "ml100k_rating", "u.data")
                     + cls.need(input_dir, "ml100k_item", "u.item"))
        else:
            files = (cls.need(input_dir, "ml1m_rating", "ratings.dat")
                     + cls.need(input_dir, "ml1m_item", "movies.dat"))
        return SourceSpec(cls.name, files, encoding=cls.encoding, has_negatives=True)
