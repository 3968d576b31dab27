"""The Keras-mode guard, exercised in fresh interpreters."""
import os
import subprocess
import sys


def _run(code, **env):
    full = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    full.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=full, timeout=300)


def test_import_sets_legacy_keras_and_tfrs_works():
    r = _run("import seminar_tf, os\n"
             "import tensorflow as tf, tensorflow_recommenders as tfrs\n"
             "assert os.environ['TF_USE_LEGACY_KERAS'] == '1'\n"
             "assert tf.keras.__name__.startswith('tf_keras'), tf.keras.__name__\n"
             "assert issubclass(tfrs.models.Model, tf.keras.Model)\n"
             "print('ok')")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "ok" in r.stdout


def test_tensorflow_imported_first_in_keras3_mode_fails_clearly():
    r = _run("import tensorflow as tf\nimport seminar_tf")
    assert r.returncode != 0
    assert "ImportError" in r.stderr
    assert "import seminar_tf before tensorflow" in r.stderr
    assert "TF_USE_LEGACY_KERAS=1" in r.stderr


def test_explicit_opt_out_is_refused():
    r = _run("import seminar_tf", TF_USE_LEGACY_KERAS="0")
    assert r.returncode != 0
    assert "TF_USE_LEGACY_KERAS='0'" in r.stderr
