"""A dummy PSU objective for the extension test: keeps item vectors near unit norm."""
import tensorflow as tf

from seminar_tf.tasks.objectives.base import Batch, Objective


class ItemNormObjective(Objective):
    def loss(self, psu, batch: Batch) -> tf.Tensor:
        items = batch.enc["item"][:, batch.cols]
        w = tf.cast(batch.mask[:, batch.cols], items.dtype)
        sq = (tf.reduce_sum(items * items, -1) - 1.0) ** 2
        return tf.reduce_sum(sq * w) / tf.maximum(tf.reduce_sum(w), 1.0)
