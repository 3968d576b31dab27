"""One options dataclass: the CLI flags, `run`'s keywords and the stage's config section are
all derived from `PreprocessOptions`, each default declared once."""
import argparse
import dataclasses

import pytest

from beam_pipelines.options import PreprocessOptions, add_arguments
from seminar_tf.config import DataConfig


def _parse(*flags):
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(["--source", "kuaisar", "--input", "i", "--output", "o", *flags])


def test_every_option_is_a_flag_with_the_dataclass_default():
    assert PreprocessOptions.from_args(_parse()) == PreprocessOptions()
    got = PreprocessOptions.from_args(_parse(
        "--max-seq-len", "50", "--format", "examples", "--multiprocess", "--negatives",
        "sampled", "--neg-per-pos", "3", "--shards", "2", "--synth-queries", "true"))
    assert got == PreprocessOptions(max_seq_len=50, fmt="examples", multiprocess=True,
                                    negatives="sampled", neg_per_pos=3, shards=2,
                                    synth_queries=True)
    with pytest.raises(SystemExit):
        _parse("--split", "random")  # choices come from the field's metadata


def test_history_shapes_default_to_the_model_data_config():
    o, d = PreprocessOptions(), DataConfig()
    assert (o.max_seq_len, o.max_query_tokens, o.num_attrs, o.title_tokens) == (
        d.max_seq_len, d.max_query_tokens, d.num_attrs, d.title_tokens)


def test_config_section_and_unknown_keys():
    o = PreprocessOptions.from_dict({"max_seq_len": 30, "format": "examples"})
    assert (o.max_seq_len, o.fmt) == (30, "examples")
    with pytest.raises(ValueError, match="max_seq_lenn"):
        PreprocessOptions.from_dict({"max_seq_lenn": 30})
    assert o.beam_args(2) == [] and dataclasses.replace(o, multiprocess=True).beam_args(2) == [
        "--direct_running_mode=multi_processing", "--direct_num_workers=2"]
