"""SEMINAR-TF: lifelong multi-modal sequence models for CTR prediction and search ranking.

Importing this package selects Keras 2 (tf-keras) for TensorFlow; it must therefore be imported
before TensorFlow (see `seminar_tf._keras_mode`). The notebook API (`load_config`,
`make_dataset`, `build_model`, `pretrain`, `finetune`, `evaluate`, `export_saved_model`) is
loaded on first use, so `import seminar_tf` itself stays light.
"""
from seminar_tf._keras_mode import ensure_legacy_keras as _ensure_legacy_keras

_ensure_legacy_keras()

__version__ = "0.1.0"

_API = ("load_config", "make_dataset", "build_model", "pretrain", "finetune", "evaluate",
        "export_saved_model")
__all__ = list(_API)


def __getattr__(name):
    if name in _API:
        from seminar_tf import api
        return getattr(api, name)
    raise AttributeError(f"module 'seminar_tf' has no attribute {name!r}")
