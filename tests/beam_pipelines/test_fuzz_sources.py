"""Byte-flip / truncation fuzz of every source's files, plain and gzip: the job never fails
on data, and every row read is parsed, dead-lettered with a reason, or a named skip."""
import gzip
import os
import random

import pytest

import raw_fixtures as fixtures
from beam_pipelines import fuzz, pipeline

WRITERS = {"kuaisar": fixtures.write_kuaisar, "amazon": fixtures.write_amazon,
           "movielens": fixtures.write_movielens_100k, "events": fixtures.write_events}


def _gzip_all(d):
    for f in fuzz.input_files(d):
        if not f.endswith(".gz"):
            with open(f, "rb") as src, gzip.open(f + ".gz", "wb") as dst:
                dst.write(src.read())
            os.remove(f)


def _corrupt(d, source, compressed, seed):
    rng = random.Random(seed)
    files = fuzz.input_files(d)
    for f in rng.sample(files, k=max(1, len(files) // 2)):
        fuzz.mutate_file(f, rng, compressed_level=compressed and f.endswith(".gz"))
    return files


# MovieLens ships u.data / u.item uncompressed (the reader takes no .gz for it).
CASES = [(source, compression, seed) for source in sorted(WRITERS)
         for compression in (["plain"] if source == "movielens" else
                             ["plain", "gzip", "gzip-stream"])
         for seed in ([0, 1] if source == "movielens" else [0])]


@pytest.mark.parametrize("source,compression,seed", CASES)
def test_every_row_is_accounted_for(tmp_path, source, compression, seed):
    d = WRITERS[source](str(tmp_path / "in"))
    if compression != "plain":
        _gzip_all(d)
    files = _corrupt(d, source, compression == "gzip-stream", seed)
    expected_rows = sum(fuzz.count_rows(f) for f in files)
    stats = pipeline.run(source, d, str(tmp_path / "out"), max_seq_len=5, num_candidates=3)
    rows = stats["rows"]
    assert rows["read"] == expected_rows, rows
    assert rows["read"] == (rows["parsed"] + rows["dead_letters"] + rows["skipped_header"]
                            + rows["skipped_blank"])
    dead_lines = sum(1 for f in os.listdir(tmp_path / "out") if f.startswith("dead_letters")
                     for _ in open(tmp_path / "out" / f, encoding="utf-8"))
    assert dead_lines == rows["dead_letters"]


def test_corrupt_gzip_dead_letters_the_rest_with_its_line(tmp_path):
    d = fixtures.write_amazon(str(tmp_path / "in"))
    path = os.path.join(d, "Movies_and_TV_5.json.gz")
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) * 2 // 3])  # cut inside the deflate stream
    stats = pipeline.run("amazon", d, str(tmp_path / "out"), max_seq_len=5, num_candidates=3)
    assert stats["dead_letters"].get("corrupt_stream") == 1
    dead = [ln for f in os.listdir(tmp_path / "out") if f.startswith("dead_letters")
            for ln in open(tmp_path / "out" / f, encoding="utf-8")]
    assert any("corrupt_stream" in ln and "unreadable from line" in ln for ln in dead)
    assert stats["rows"]["parsed"] > 0  # the rows before the break were kept


def test_duplicate_rows_counted_once(tmp_path):
    d = fixtures.write_kuaisar(str(tmp_path / "in"))
    path = os.path.join(d, "rec_inter.csv")
    lines = open(path, encoding="utf-8").read().splitlines()
    with open(path, "a", encoding="utf-8") as f:
        f.write("\n".join(lines[1:3]) + "\n\n")  # two repeated rows and a blank line
    stats = pipeline.run("kuaisar", d, str(tmp_path / "out"), max_seq_len=5, num_candidates=3)
    assert stats["rows"]["duplicate_events"] == 2 and stats["rows"]["skipped_blank"] == 1
    assert stats["events"] == 13 + 2  # parsed events include the repeats; examples do not


def test_sampler_fills_groups_or_reports_them():
    import numpy as np
    from beam_pipelines.sequences import Sampler
    s = Sampler(list(range(2, 12)), [1000] + [1] * 9, mode="popularity")
    rng = np.random.default_rng(0)
    got = s.draw(rng, 7, exclude={2, 3})
    assert len(got) == 7 and len(set(got)) == 7 and not {2, 3} & set(got)  # filled
    assert sorted(s.draw(rng, 20, exclude={2})) == list(range(3, 12))  # all there is
