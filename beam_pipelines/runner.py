"""The local Beam runner choice and Beam's log routing, shared by the Beam jobs."""
from __future__ import annotations

import logging
import os
from typing import Sequence


def default_runner(beam_args: Sequence[str]):
    """The in-process portable runner unless --runner is given.

    Beam's "DirectRunner" first tries to download the Prism runner binary from the network;
    this project never downloads at run time, so the default is the FnApiRunner that
    DirectRunner falls back to (it honours --direct_num_workers / --direct_running_mode).
    """
    if any(a == "--runner" or a.startswith("--runner=") for a in beam_args):
        return None
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    return FnApiRunner()


def setup_log(output: str) -> None:
    """Routes Beam's and the pipeline's logs to `<output>/beam.log` (local outputs; for
    remote ones, to `beam.log` in a local temporary directory, named in the log)."""
    from apache_beam.io.filesystems import FileSystems
    if FileSystems.get_scheme(output) not in (None, "file"):
        import tempfile
        output = tempfile.mkdtemp(prefix="beam_log_")
    handler = logging.FileHandler(os.path.join(output, "beam.log"), mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    for name in ("beam_pipelines", "apache_beam"):
        lg = logging.getLogger(name)
        lg.handlers = [h for h in lg.handlers if not isinstance(h, logging.FileHandler)]
        lg.addHandler(handler)
        lg.setLevel(logging.INFO)
    for name in ("apache_beam", "beam_pipelines"):
        logging.getLogger(name).propagate = False  # details go to beam.log only
