"""A dummy GSU for the extension test: the K oldest behaviours."""
import tensorflow as tf

from seminar_tf.layers.retrieval.base import Retrieval
from seminar_tf.serialization import register


@register
class OldestRetrieval(Retrieval):
    needs_keys = False

    def call(self, inputs):
        mask = inputs["mask"]
        L = mask.shape[1]
        first = tf.argmax(tf.cast(mask, tf.int32), axis=1, output_type=tf.int32)  # left pad
        idx = tf.minimum(first[:, None] + tf.range(self.top_k, dtype=tf.int32)[None, :], L - 1)
        valid = tf.gather(mask, idx, batch_dims=1)
        return {"indices": idx, "scores": tf.zeros_like(idx, tf.float32), "valid": valid}
