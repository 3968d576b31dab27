"""SEMINAR-TF: lifelong multi-modal sequence models for CTR prediction and search ranking.

Importing this package selects Keras 2 (tf-keras) for TensorFlow; it must therefore be imported
before TensorFlow (see `seminar_tf._keras_mode`).
"""
from seminar_tf._keras_mode import ensure_legacy_keras as _ensure_legacy_keras

_ensure_legacy_keras()

__version__ = "0.1.0"
