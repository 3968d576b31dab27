"""Query synthesis for sources without real queries (applied per user by
`beam_pipelines.shards.WriteShard` before its targets are planned)."""
from __future__ import annotations

from typing import List, Mapping, Tuple

from beam_pipelines import records as R


def synthesize_queries(events, titles: Mapping[str, Tuple[str, ...]]) -> List[R.Event]:
    """Documented query synthesiser for sources without queries (Amazon, MovieLens).

    An event without a query gets as query the title tokens of the user's most recent
    *earlier* positive item (strictly earlier timestamp): the user's previous intent. The
    target's own text is never used, so the query cannot leak the target. The first event
    keeps an empty query. The source is left unchanged.

    Args:
        titles: raw item id -> its title tokens that have query-token ids (at most the
            item table's title length; `beam_pipelines.item_table.ItemBucket`).
    """
    from beam_pipelines.sequences import sort_events
    out, last_title, pending, pending_ts = [], (), (), None
    for e in sort_events(events):
        if pending_ts is not None and e.timestamp_ms > pending_ts:
            last_title, pending_ts = pending, None
        if not e.query and last_title:
            e = e._replace(query=last_title)
        out.append(e)
        if e.label > 0:
            pending = titles.get(e.item, ())
            pending_ts = e.timestamp_ms
    return out
