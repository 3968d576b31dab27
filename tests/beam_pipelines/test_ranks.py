"""Vocabulary ids by a sharded rank and bucketed joins: against in-memory references."""
import os

import apache_beam as beam
import numpy as np
from apache_beam.testing.util import assert_that, equal_to

from beam_pipelines.ranks import (AssignIds, concat_vocab_parts, entries_by_bucket, lookup,
                                  merged, requests_by_bucket)
from beam_pipelines.vocab import Vocab


def test_sharded_rank_equals_the_in_memory_vocabulary(tmp_path):
    rng = np.random.default_rng(0)
    counts = {}
    for kind, n in (("items", 700), ("query_tokens", 90), ("users", 40)):
        # heavy ties: most keys share a handful of counts, so counts split into ranges
        for k in range(n):
            counts[(kind, f"{kind[0]}{k}")] = int(rng.zipf(2.0)) if k % 3 else 1
    out = str(tmp_path)
    with beam.Pipeline() as p:
        assign = AssignIds(out, {"items": 2, "query_tokens": 1, "users": 1}, bucket_size=16)
        groups = p | beam.Create(sorted(counts.items())) | assign
        ids = groups | beam.FlatMap(lambda g: [(g[0], k, g[1] + i)
                                               for i, (k, _) in enumerate(g[2])])
        want, sizes = [], {"attrs": 2}
        for kind, mc in (("items", 2), ("query_tokens", 1), ("users", 1)):
            vocab = Vocab.from_counts([(k, c) for (kd, k), c in counts.items() if kd == kind],
                                      min_count=mc)
            want += [(kind, k, vocab.id(k)) for k in vocab.keys]
            sizes[kind] = len(vocab)
        assert_that(ids, equal_to(want))
        assert_that(assign.sizes, equal_to([sizes]), label="sizes")
    concat_vocab_parts(out)
    vocab = Vocab.from_counts([(k, c) for (kd, k), c in counts.items() if kd == "items"], 2)
    with open(os.path.join(out, "vocab", "items.txt"), encoding="utf-8") as f:
        assert f.read() == vocab.lines()
    assert not os.path.exists(os.path.join(out, "vocab", "items.parts"))
    assert open(os.path.join(out, "vocab", "attrs.txt")).read() == ""


def test_lookup_answers_each_requester_with_its_keys_only():
    keys = [f"k{i}" for i in range(50)]
    wanted = {"r1": {"a": ["k1", "k7", "missing"], "b": ["k1"]},
              "r2": {"a": ["k7", "k49", "k7"]}}

    def found(kv):
        who, blobs = kv
        return who, sorted((kind, k, int(i), t) for kind, (ks, cols) in merged(blobs).items()
                           for k, i, t in zip(ks, cols["id"], cols["tag"]))

    with beam.Pipeline() as p:
        entries = p | "E" >> beam.Create(entries_by_bucket(
            "a", keys, {"id": np.arange(50), "tag": [k.upper() for k in keys]}, 4))
        requests = p | "R" >> beam.Create(
            [r for who, w in wanted.items() for r in requests_by_bucket(who, w, 4)])
        answers = (lookup(requests, entries, "L") | beam.GroupByKey() | beam.Map(found))
        assert_that(answers, equal_to([("r1", [("a", "k1", 1, "K1"), ("a", "k7", 7, "K7")]),
                                       ("r2", [("a", "k49", 49, "K49"),
                                               ("a", "k7", 7, "K7")])]))
