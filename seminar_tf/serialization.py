"""The one Keras serialization decorator of the project: every public layer and model is
registered under the package name "seminar_tf" (`seminar_tf>ClassName` in saved configs)."""
import tensorflow as tf

register = tf.keras.utils.register_keras_serializable(package="seminar_tf")
