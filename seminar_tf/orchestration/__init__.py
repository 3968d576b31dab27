"""Orchestration: the `seminar` command (`cli`), the pipeline's stages (`stages`) and their
runners (`run_pipeline` for `seminar run-pipeline` / `seminar demo`, `kfp_pipeline` for
Kubeflow Pipelines), the run report (`report`) and the measurements the demo records
(`measurements`). It may import every other floor; nothing imports it.
"""
