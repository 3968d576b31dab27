"""The TF Serving kit in serving/config matches the TensorFlow that writes the export."""
import os
import re

import tensorflow as tf

CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "serving", "config")


def _version(text):
    return tuple(int(x) for x in text.split(".")[:2])


def test_compose_image_is_not_older_than_the_exporting_tensorflow():
    compose = open(os.path.join(CONFIG, "docker-compose.yml")).read()
    tags = re.findall(r"^\s*image:\s*tensorflow/serving:([0-9.]+)", compose, re.M)
    assert tags, "no tensorflow/serving image in the compose file"
    assert all(_version(t) >= _version(tf.__version__) for t in tags), (tags, tf.__version__)


def test_models_config_labels_only_versions_it_pins():
    text = open(os.path.join(CONFIG, "models.config")).read()
    active = "\n".join(ln.split("#")[0] for ln in text.splitlines())
    labelled = {int(v) for v in re.findall(r"version_labels\s*{[^}]*value:\s*(\d+)", active)}
    pinned = {int(v) for v in re.findall(r"versions:\s*(\d+)", active)}
    assert labelled <= pinned, f"labels name versions {labelled - pinned} that no policy loads"
