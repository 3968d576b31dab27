import json

import pytest

from seminar_tf.config import ConfigError, SeminarConfig, load_config, save_config


def test_json_round_trip(tmp_path):
    cfg = SeminarConfig().replace(model={"top_k": 10, "modalities": ["id", "text"]},
                                  train={"learning_rate": 0.01, "steps_per_epoch": 7})
    path = tmp_path / "cfg.json"
    save_config(cfg, str(path))
    again = load_config(str(path))
    assert again == cfg
    assert again.model.modalities == ("id", "text")
    assert again.train.steps_per_epoch == 7


def test_partial_file_uses_defaults(tmp_path):
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({"model": {"embedding_dim": 32, "num_heads": 2}}))
    cfg = load_config(str(path))
    assert cfg.model.embedding_dim == 32 and cfg.data.max_seq_len == 200


@pytest.mark.parametrize("overrides, fields", [
    ({"model": {"top_k": 300}}, ["model.top_k (300)", "data.max_seq_len (200)"]),
    ({"model": {"num_heads": 3}}, ["model.num_heads (3)", "model.embedding_dim (64)"]),
    ({"model": {"gsu": "magic"}}, ["model.gsu"]),
    ({"model": {"modalities": ["id", "smell"]}}, ["model.modalities"]),
    ({"pq": {"num_codewords": 512}}, ["pq.num_codewords (512)"]),
    ({"pq": {"method": "pq", "num_subspaces": 5}}, ["pq.num_subspaces (5)"]),
    ({"train": {"temperature": 0.0}}, ["train.temperature"]),
    ({"data": {"item_vocab_size": 2}}, ["data.item_vocab_size"]),
    ({"train": {"batch_size": "big"}}, ["train.batch_size"]),
])
def test_validation_names_fields(overrides, fields):
    with pytest.raises(ConfigError) as e:
        SeminarConfig().replace(**overrides)
    for f in fields:
        assert f in str(e.value)


def test_unknown_fields_rejected():
    with pytest.raises(ConfigError, match="model.topk"):
        SeminarConfig.from_dict({"model": {"topk": 3}})
    with pytest.raises(ConfigError, match="modle"):
        SeminarConfig.from_dict({"modle": {}})
    with pytest.raises(ConfigError, match="not valid JSON"):
        SeminarConfig.from_json("{")
