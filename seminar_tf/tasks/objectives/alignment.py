"""Multi-modal alignment: symmetric InfoNCE between the modality embeddings of the same item
(ID-text, ID-image, text-image, and query-item where a query exists), in-batch negatives."""
from __future__ import annotations

import tensorflow as tf

from seminar_tf.tasks.objectives.base import Batch, Objective
from seminar_tf.tasks.psu import MultiModalAlignmentTask

MODALITY_PAIRS = (("id", "text"), ("id", "image"), ("text", "image"))


class AlignmentObjective(Objective):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.task = MultiModalAlignmentTask("alignment")

    def loss(self, psu, batch: Batch) -> tf.Tensor:
        enc, cols, T = batch.enc, batch.cols, batch.T
        B = tf.shape(batch.items)[0]
        d = enc["pair"].shape[-1]
        mods = list(psu.pair_encoder.item_encoder.modalities)
        raw = tf.reshape(enc["raw"][:, cols], [B * T, len(mods), d])
        valid = tf.reshape(enc["valid"][:, cols] & batch.scored[..., None],
                           [B * T, len(mods)])
        ids = tf.reshape(batch.items[:, cols], [B * T])
        terms = []
        for a, b in MODALITY_PAIRS:
            if a in mods and b in mods:
                i, j = mods.index(a), mods.index(b)
                terms.append(self.task(raw[:, i], raw[:, j], valid[:, i] & valid[:, j], ids,
                                       batch.temperature))
        has_q = tf.reshape(enc["has_query"][:, cols] & batch.scored, [B * T])
        terms.append(self.task(tf.reshape(enc["query"][:, cols], [B * T, d]),
                               tf.reshape(enc["item"][:, cols], [B * T, d]), has_q, ids,
                               batch.temperature))
        return tf.add_n(terms) / float(len(terms))
