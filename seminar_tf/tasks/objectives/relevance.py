"""Query-item relevance: each search behaviour's query against its clicked item, negatives
from the batch and from the same sequence."""
from __future__ import annotations

import tensorflow as tf

from seminar_tf.tasks.objectives.base import Batch, Objective
from seminar_tf.tasks.psu import QueryItemRelevanceTask


class RelevanceObjective(Objective):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.task = QueryItemRelevanceTask("relevance")

    def loss(self, psu, batch: Batch) -> tf.Tensor:
        enc, cols, mask = batch.enc, batch.cols, batch.mask
        return self.task(enc["query"][:, cols], enc["item"][:, cols],
                         enc["has_query"][:, cols] & batch.scored, batch.items[:, cols],
                         enc["item"], batch.items, mask, batch.temperature)
