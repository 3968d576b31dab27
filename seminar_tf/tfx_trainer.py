"""Thin re-export: the TFX Trainer module path (`module_file`/`module_path`
"seminar_tf.tfx_trainer") of `seminar_tf.workflows.tfx_trainer.run_fn`."""
from seminar_tf.workflows.tfx_trainer import run_fn  # noqa: F401
