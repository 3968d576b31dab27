import subprocess
import sys

from seminar_tf.orchestration import cli


def test_help_lists_subcommands():
    r = subprocess.run([sys.executable, "-m", "seminar_tf.cli", "--help"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0
    parser = cli.build_parser()
    names = parser._subparsers._group_actions[0].choices.keys()
    for name in names:
        assert name in r.stdout


def test_generate_writes_files(tmp_path, capsys):
    assert cli.main(["generate", "--out", str(tmp_path), "--users", "10", "--items", "50",
                     "--seq-len", "20"]) == 0
    assert (tmp_path / "rec_inter.csv").exists()
    assert '"events"' in capsys.readouterr().out


def test_train_and_evaluate_commands(tiny_dataset, tmp_path, capsys):
    import json
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"model": {"embedding_dim": 8, "num_heads": 2, "top_k": 5,
                                         "short_term_len": 5, "mlp_units": [8],
                                         "tower_units": [4]}}))
    out = tmp_path / "m"
    assert cli.main(["train", "--model", "din", "--data", tiny_dataset, "--out", str(out),
                     "--config", str(cfg), "--epochs", "1", "--batch-size", "128"]) == 0
    text = capsys.readouterr().out
    assert "| model |" in text and "| popularity |" in text
    assert cli.main(["evaluate", "--model-dir", str(out)]) == 0
    assert "metrics.json" in capsys.readouterr().out
    assert (out / "metrics.json").exists()


def test_help_does_not_import_tensorflow():
    code = ("import sys\nfrom seminar_tf import cli\ntry:\n    cli.main(['--help'])\n"
            "except SystemExit:\n    pass\nprint('TF', 'tensorflow' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and "TF False" in r.stdout, r.stderr[-2000:]


def test_user_errors_are_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"model": {"top_k": -1}}')
    for args, word in [
            (["preprocess", "--source", "kuaisar", "--input", str(tmp_path / "none"),
              "--output", str(tmp_path / "o")], "rec_inter.csv"),
            (["train", "--model", "twin", "--data", str(tmp_path / "none"), "--out",
              str(tmp_path / "m")], "not a committed dataset"),
            (["run-pipeline", "--config", str(bad), "--run-dir", str(tmp_path / "r")],
             "model.top_k")]:
        r = subprocess.run([sys.executable, "-m", "seminar_tf.cli", *args],
                           capture_output=True, text=True, timeout=300)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert r.returncode == 2, (args, r.stderr[-2000:])
        assert len(lines) == 1 and word in lines[0] and lines[0].startswith("seminar "), lines
        assert not (tmp_path / "r" / "generate").exists()  # validated before any stage
