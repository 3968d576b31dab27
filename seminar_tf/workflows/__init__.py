"""Workflows: what a user runs on the model library, each a plain function over directories.

Training (`training`), evaluation (`evaluation`), PSU pretraining (`pretraining`), PQ codebooks
(`codebook_build`), the TF Serving export (`export`), the model directory (`model_dir`), the
notebook API (`api`) and the TFX Trainer module (`tfx_trainer`). Workflows import the library
(`seminar_tf.*`), never the Beam jobs, the server or the orchestration.
"""
