import subprocess
import sys

from seminar_tf import cli


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
