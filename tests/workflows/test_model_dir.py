"""`config_for`: registry entry < keys written in the config file < flags."""
import json

from seminar_tf.config import save_config
from seminar_tf.workflows.model_dir import config_for


def test_config_file_modalities_reach_a_baseline(tiny_dataset, tmp_path, capsys):
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({"model": {"modalities": ["id", "attr", "text", "image"],
                                          "top_k": 6}}))
    cfg = config_for("twin", tiny_dataset, str(path))
    assert set(cfg.model.modalities) == {"id", "attr", "text", "image"}
    assert cfg.model.gsu == "exact" and cfg.model.top_k == 6
    assert "model.modalities" in capsys.readouterr().err  # said, not silent
    flags = config_for("twin", tiny_dataset, str(path), model={"top_k": 5})
    assert flags.model.top_k == 5  # flags win over the file


def test_full_saved_config_does_not_turn_twin_into_seminar(tiny_dataset, tmp_path, capsys):
    seminar = config_for("seminar", tiny_dataset, model={"top_k": 7})
    path = str(tmp_path / "saved.json")
    save_config(seminar, path)
    cfg = config_for("twin", tiny_dataset, path)
    assert set(cfg.model.modalities) == {"id", "attr"} and not cfg.model.use_projections
    assert cfg.model.top_k == 7  # the rest of the saved config applies
    err = capsys.readouterr().err
    assert "full saved config" in err and "model.use_projections" in err


def test_no_config_file_is_the_registry_entry(tiny_dataset, capsys):
    cfg = config_for("sim_hard", tiny_dataset, model={"top_k": 5})
    assert cfg.model.gsu == "sim_hard" and capsys.readouterr().err == ""
