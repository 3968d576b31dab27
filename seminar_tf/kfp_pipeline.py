"""Thin re-export: the Kubeflow Pipelines components and builders of
`seminar_tf.orchestration.kfp_pipeline`, at the path pipelines already import."""
from seminar_tf.orchestration.kfp_pipeline import (  # noqa: F401
    DEFAULT_IMAGE, baseline_op, build, codebooks_op, compile_pipeline, evaluate_op, export_op,
    finetune_op, full_config, generate_op, preprocess_op, pretrain_op, run_local)
