"""SEMINAR-TF: lifelong multi-modal sequence models for CTR prediction and search ranking.

Importing this package selects Keras 2 (tf-keras) for TensorFlow; it must therefore be imported
before TensorFlow (see `seminar_tf._keras_mode`). The notebook API (`load_config`,
`make_dataset`, `build_model`, `pretrain`, `finetune`, `evaluate`, `export_saved_model`) is
loaded on first use, so `import seminar_tf` itself stays light.

The floors are folders: the model library is this package's own modules and subpackages
(`config`, `features`, `data`, `layers`, `models`, `tasks`, `pq`, `metrics`, ...), the
workflows are `seminar_tf.workflows`, the orchestration is `seminar_tf.orchestration`
(docs/design.md, section 2).
"""
import sys

from seminar_tf._keras_mode import ensure_legacy_keras as _ensure_legacy_keras

_ensure_legacy_keras()

__version__ = "0.1.0"

_API = ("load_config", "make_dataset", "build_model", "pretrain", "finetune", "evaluate",
        "export_saved_model")
__all__ = list(_API)


# workflow modules that lived at the top level before the floors became folders:
# `from seminar_tf import training` keeps working
_MOVED = {"training": "training", "evaluation": "evaluation", "pretraining": "pretraining",
          "export": "export", "model_dir": "model_dir", "api": "api",
          "codebooks": "codebook_build"}


class _MovedModules:
    """`import seminar_tf.training` (and the other moved workflow modules): the module of
    its new home under its old name (a meta path finder, no file at the old path)."""

    @staticmethod
    def find_spec(fullname, path=None, target=None):
        import importlib.util
        prefix, _, name = fullname.partition(".")
        if prefix != "seminar_tf" or name not in _MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, _MovedModules())

    @staticmethod
    def create_module(spec):
        import importlib
        return importlib.import_module(f"seminar_tf.workflows.{_MOVED[spec.name[11:]]}")

    @staticmethod
    def exec_module(module):
        pass


sys.meta_path.append(_MovedModules())


def __getattr__(name):
    if name in _API:
        from seminar_tf.workflows import api
        return getattr(api, name)
    if name in _MOVED:
        import importlib
        return importlib.import_module(f"seminar_tf.workflows.{_MOVED[name]}")
    raise AttributeError(f"module 'seminar_tf' has no attribute {name!r}")
