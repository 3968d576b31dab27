"""Selects Keras 2 (tf-keras) before TensorFlow is imported.

tensorflow-recommenders refuses Keras 3, and TFX / tensorflow-transform use Keras 2 as well.
TensorFlow decides once, at its own import, whether `tf.keras` is Keras 2 (`tf_keras`) or
Keras 3, by reading `TF_USE_LEGACY_KERAS`. This module sets that variable (without overriding
an explicit user choice) and refuses to continue if TensorFlow was already imported in Keras 3
mode, because the process would then silently mix two Keras implementations.
"""
import os
import sys

_HOW_TO_FIX = (
    "seminar_tf needs Keras 2 (tf-keras) as tf.keras, but TensorFlow was already imported with "
    "Keras 3 active. Fix: import seminar_tf before tensorflow (or tensorflow_recommenders), or "
    "export TF_USE_LEGACY_KERAS=1 before starting Python (in a notebook: set "
    "os.environ['TF_USE_LEGACY_KERAS'] = '1' and restart the kernel)."
)


def ensure_legacy_keras() -> None:
    """Sets TF_USE_LEGACY_KERAS=1 if unset and checks TensorFlow's Keras mode.

    Raises:
        ImportError: TensorFlow was imported with Keras 3 as tf.keras, or the environment
            explicitly disables legacy Keras.
    """
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    if os.environ["TF_USE_LEGACY_KERAS"] not in ("1", "true", "True"):
        raise ImportError(
            f"TF_USE_LEGACY_KERAS={os.environ['TF_USE_LEGACY_KERAS']!r} is set in the "
            "environment. " + _HOW_TO_FIX)
    tf_module = sys.modules.get("tensorflow")
    if tf_module is not None and getattr(tf_module, "_tf_uses_legacy_keras", True) is False:
        raise ImportError(_HOW_TO_FIX)
