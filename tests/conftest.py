"""Shared fixtures. Importing seminar_tf first selects Keras 2 for the whole test process."""
import os
import sys

import seminar_tf  # noqa: F401  (must precede any TensorFlow import)

sys.path.insert(0, os.path.dirname(__file__))
