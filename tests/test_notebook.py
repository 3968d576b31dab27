"""Executes the code cells of examples/quickstart.ipynb top to bottom (small size)."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_quickstart_notebook_runs(tmp_path):
    nb = json.load(open(os.path.join(ROOT, "examples", "quickstart.ipynb")))
    code = [("".join(c["source"])) for c in nb["cells"] if c["cell_type"] == "code"]
    assert len(code) >= 5
    script = tmp_path / "nb.py"
    script.write_text("\n\n".join(f"# cell {i}\n{src}\nprint('CELL_OK', {i})"
                                  for i, src in enumerate(code)))
    env = dict(os.environ, SEMINAR_NOTEBOOK_WORK=str(tmp_path / "work"),
               SEMINAR_NOTEBOOK_SMALL="1")
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env,
                       timeout=900, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("CELL_OK") == len(code)


def test_public_surface():
    import seminar_tf
    for name in ("load_config", "make_dataset", "build_model", "pretrain", "finetune",
                 "evaluate", "export_saved_model"):
        assert callable(getattr(seminar_tf, name))
