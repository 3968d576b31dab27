"""Thin re-export: the `seminar` command lives in `seminar_tf.orchestration.cli` (kept so that
`python -m seminar_tf.cli` keeps working)."""
import sys

from seminar_tf.orchestration.cli import main  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
