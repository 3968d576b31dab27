"""Names and ids of the example contract (`seminar_tf.features` documents the schema)."""
from __future__ import annotations

PAD_ID = 0
OOV_ID = 1
FIRST_ID = 2  # first id a vocabulary assigns to a real value

SOURCE_PAD = 0
SOURCE_REC = 1
SOURCE_SEARCH = 2

USER_ID = "user_id"
TIMESTAMP = "timestamp"
TARGET_ITEM = "target_item"
TARGET_QUERY = "target_query"
TARGET_ATTRS = "target_attrs"
TARGET_SOURCE = "target_source"
LABEL = "label"
GROUP_ID = "group_id"  # evaluation candidate group (0: not a candidate example)
HIST_ITEMS = "hist_items"
HIST_QUERY = "hist_query"
HIST_ATTRS = "hist_attrs"
HIST_SOURCES = "hist_sources"
HIST_TIME_GAPS = "hist_time_gaps"
HIST_MASK = "hist_mask"
TARGET_QUERY_MASK = "target_query_mask"
HIST_QUERY_MASK = "hist_query_mask"

SCALAR_INT_FEATURES = (USER_ID, TIMESTAMP, TARGET_ITEM, TARGET_SOURCE)
HISTORY_FEATURES = (HIST_ITEMS, HIST_QUERY, HIST_ATTRS, HIST_SOURCES, HIST_TIME_GAPS)
# The `rank` request: per-candidate features; everything else comes from the context Example.
CANDIDATE_FEATURES = (TARGET_ITEM, TARGET_ATTRS, LABEL, GROUP_ID)
CANDIDATE_MASK = "candidate_mask"
# A stored ranking record (the `candidate_lists` split): the same two parts in one Example.
RANK_CONTEXT = "context"
RANK_CANDIDATES = "candidates"


class ContractError(ValueError):
    """A record does not satisfy the example contract; the message names field and record."""
