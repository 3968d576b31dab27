"""The preprocessing pipeline: raw logs -> the sequence store (or self-contained Examples),
vocabularies, item table, statistics and dead letters.

Runs on the DirectRunner by default; every other Beam option (``--runner=DataflowRunner``,
``--direct_num_workers=2 --direct_running_mode=multi_processing``, ...) is passed through
unchanged, so the same code runs on Dataflow, Flink or Spark.

No whole table reaches a worker: vocabulary ids come from a sorted, sharded rank, and item
records, attribute / title-token ids, text / image vectors and each shard's keys are joined
by key in bounded buckets (`beam_pipelines.ranks`, `beam_pipelines.item_table`); the
negative sampler is a bounded summary (`beam_pipelines.vocab.Sampler`). The driver only
concatenates the workers' vocabulary slices and item-table parts into the files below, and
deletes the shards' spilled events (`events.parts/`, `beam_pipelines.shards.scan_shard`).

Output directory (S-of-N shards of users, `beam_pipelines.shards`):
    timelines-S-of-N.tfrecord.gz                         --format store (default): timelines
    {split}-S-of-N.targets.tfrecord.gz                   ... and target records
    {split}-S-of-N.tfrecord.gz                           --format examples: one Example each
      (split: train, valid, test, candidates, candidate_lists; `seminar_tf.data.store`)
    vocab/{items,query_tokens,attrs,users}.txt          one key per line; line i has id i+2
    item_table.npz                                       attrs, title, text/image vectors+masks
    dead_letters-*.jsonl                                 malformed rows: file, line, reason, row
    stats.json, data_config.json, beam.log; _SUCCESS    the commit manifest, written last
      (all staged under `_staging/`, then published: `fileio.commit_staging`, design §8)
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import logging
import os
import time
from typing import Dict, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines import fileio
from beam_pipelines import records as R
from beam_pipelines.options import PreprocessOptions
from beam_pipelines.item_table import (ItemBucket, ReadVectorIds, assemble_item_table,
                                       item_bucket, vector_entries)
from beam_pipelines.ranks import (KINDS, AssignIds, concat_vocab_parts, entries_by_bucket, lookup,
                                  requests_by_bucket)
from beam_pipelines.reading import ReadAndParse, absolute_dead_letters, file_splits
from beam_pipelines.sequences import BuildOptions
from beam_pipelines.sources import source_class
from beam_pipelines.shards import (SPILL_DIR, WriteShard, counts_by_bucket, scan_shard,
                                   sum_bucket_counts)
from beam_pipelines.runner import default_runner, setup_log
from beam_pipelines.sources.base import SourceSpec
from beam_pipelines.stats import row_accounting, summarize
from beam_pipelines.vocab import SummaryRule
from seminar_tf import features as F
from seminar_tf.progress import Heartbeat
LOG = logging.getLogger("beam_pipelines")


# -------------------------------------------------------------------------------- helpers
def _write_single(pcoll, path: str, label: str):
    return pcoll | label >> beam.io.WriteToText(path, shard_name_template="",
                                                append_trailing_newlines=False)


def _by_kind(pairs) -> Dict[str, list]:
    out: Dict[str, list] = {}
    for kind, key in pairs:
        out.setdefault(kind, []).append(key)
    return out


def _sampler_summary(rows, tail_mass, sizes, top: int, tail_sample: int,
                     num_attrs: int) -> Dict:
    """The sampler's bounded summary (`beam_pipelines.vocab.SummaryRule`) from the item
    join's kept rows (id, count, attribute ids), with the kept items' attributes."""
    rows = sorted(rows)
    summary = SummaryRule(sizes["items"] - F.FIRST_ID, top, tail_sample).summary(
        [r[:2] for r in rows], tail_mass)
    summary["attrs"] = np.array([r[2] for r in rows], np.int64).reshape(len(rows), num_attrs)
    return summary


def build_pipeline(p: beam.Pipeline, spec: SourceSpec, output: str,
                   contract: F.FeatureContract, options: BuildOptions, *, min_count: int = 1,
                   title_tokens: int = 8, synth_queries: bool = False, shards: int = 8,
                   fmt: str = "store", buckets: int = 16,
                   vectors: Sequence[Tuple[str, str, str]] = (),
                   sampler_top: int = 1_000_000, tail_sample: int = 1_000_000) -> None:
    """Adds the preprocessing transforms to pipeline `p`.

    Args:
        shards: output shards of users; fmt: "store" or "examples" (`beam_pipelines.shards`).
        buckets: join buckets (`beam_pipelines.ranks`): each holds ~1/buckets of the keys.
        vectors: (name "text" | "image", vectors .npy, raw ids .txt) to join by item key.
        sampler_top, tail_sample: the negative sampler's bounded summary (`Sampler`).
    """
    parsed = (p
              | "Files" >> beam.Create(file_splits(spec.files))
              | "Spread" >> beam.Reshuffle()
              | "ReadParse" >> beam.ParDo(ReadAndParse(
                  spec.source, spec.encoding, shards=shards,
                  timestamp_unit=spec.timestamp_unit)).with_outputs(
                  "dead", "rows", "event_batches", "lines", main="records"))
    records = parsed.records
    items = records | "Items" >> beam.Filter(lambda r: isinstance(r, R.ItemRecord))

    # Events travel in batches per shard of users; every shard is built by one worker.
    by_shard = parsed.event_batches | "GroupByShard" >> beam.GroupByKey()
    # No leakage: vocabularies and popularity come from each user's events before their
    # first validation / test target (counted per key on the workers, `scan_shard`); with
    # vocab_from="catalog" every item record is in the item vocabulary as well. The same
    # pass lists the keys each shard will look up.
    scanned = by_shard | "ScanShards" >> beam.FlatMap(
        scan_shard, options, buckets, output).with_outputs("requests", "spilled",
                                                           main="counts")
    catalog = options.vocab_from == "catalog"

    def record_counts(records):  # title tokens, attributes (and catalogue items) of records
        c: collections.Counter = collections.Counter()
        for r in records:
            c.update(("query_tokens", t) for t in r.title)
            c.update(("attrs", a) for a in r.attrs)
            if catalog:
                c[("items", r.item)] += 1
        return counts_by_bucket(c, buckets)

    item_counts = (items | "BatchItemRecords" >> beam.BatchElements(min_batch_size=256,
                                                                     max_batch_size=4096)
                   | "ItemRecordCounts" >> beam.FlatMap(record_counts))
    # one element per (shard or batch of records, bucket), summed per bucket
    counts = ((scanned.counts, item_counts) | "AllCounts" >> beam.Flatten()
              | "CountsByBucket" >> beam.GroupByKey()
              | "SumBucketCounts" >> beam.FlatMap(sum_bucket_counts))
    assign = AssignIds(output, {"items": min_count, "query_tokens": min_count,
                                "attrs": min_count, "users": 1})
    groups = counts | "Ids" >> assign
    sizes = beam.pvalue.AsSingleton(assign.sizes)

    def entries_of(kind):
        def entries(group):
            if group[0] != kind:
                return []
            _, first, members = group
            cols = {"id": np.arange(first, first + len(members), dtype=np.int64)}
            if kind == "items":
                cols["count"] = np.array([c for _, c in members], np.int64)
            return entries_by_bucket(kind, [k for k, _ in members], cols, buckets)
        return groups | f"Entries{kind}" >> beam.FlatMap(entries)

    id_entries = {kind: entries_of(kind) for kind in KINDS}

    # the item join, by item key bucket: ids, records, attribute / title ids, vectors
    unique_items = (items | "DedupItems" >> beam.Map(lambda r: (r.item, r))
                    | "OneRecordPerItem" >> beam.CombinePerKey(
                        lambda recs: min(recs, key=lambda r: repr(r))))
    item_requests = (unique_items
                     | "ItemWants" >> beam.Map(lambda kv: (item_bucket(kv[0], buckets), set(
                         [("attrs", a) for a in kv[1].attrs if a]
                         + [("query_tokens", t) for t in kv[1].title])))
                     | "ItemWantsPerBucket" >> beam.CombinePerKey(
                         lambda sets: set().union(*sets))
                     | "ItemRequests" >> beam.FlatMap(
                         lambda kv: requests_by_bucket(kv[0], _by_kind(kv[1]), buckets)))
    item_lookup = lookup(item_requests, (id_entries["attrs"], id_entries["query_tokens"])
                         | "ItemEntries" >> beam.Flatten(), "ItemLookup")
    vector_batches = (p | "VectorFiles" >> beam.Create(list(vectors))
                      | "VectorIds" >> beam.ParDo(ReadVectorIds())
                      | "Vectors" >> beam.FlatMap(vector_entries, buckets))
    joined_items = ({"ids": id_entries["items"],
                     "recs": unique_items | "RecsByBucket" >> beam.Map(
                         lambda kv: (item_bucket(kv[0], buckets), kv)),
                     "lookup": item_lookup, "vectors": vector_batches}
                    | "JoinItems" >> beam.CoGroupByKey()
                    | "ItemBuckets" >> beam.ParDo(
                        ItemBucket(output, contract.num_attrs, title_tokens, buckets,
                                   sampler_top, tail_sample, synth_queries),
                        sizes).with_outputs(
                        "sampler", "tail_mass", main="info"))

    use_sampler = options.negatives != "observed" or options.num_candidates
    summary = None
    if use_sampler:
        tail_mass = joined_items.tail_mass | "TailMass" >> beam.CombineGlobally(sum)
        summary = (joined_items.sampler | "SamplerRows" >> beam.combiners.ToList()
                   | "SamplerSummary" >> beam.Map(
                       _sampler_summary, beam.pvalue.AsSingleton(tail_mass), sizes,
                       sampler_top, tail_sample, contract.num_attrs))
    else:
        summary = p | "NoSampler" >> beam.Create([None])

    # each shard's keys, answered by key: item info, query tokens, users
    shard_lookup = lookup(scanned.requests,
                          (joined_items.info, id_entries["users"],
                           id_entries["query_tokens"]) | "ShardEntries" >> beam.Flatten(),
                          "ShardLookup")
    built = ({"spilled": scanned.spilled, "lookup": shard_lookup}
             | "JoinShards" >> beam.CoGroupByKey()
             | "WriteShards" >> beam.ParDo(
                 WriteShard(output, shards, fmt, contract, options, spec.has_negatives,
                            synth_queries), beam.pvalue.AsSingleton(summary)))

    dead = parsed.dead | "LineInFile" >> beam.Map(
        absolute_dead_letters, beam.pvalue.AsList(parsed.lines))
    _ = (dead | "DeadJson" >> beam.Map(lambda d: json.dumps(d._asdict(), ensure_ascii=False))
         | "WriteDead" >> beam.io.WriteToText(fileio.join(output, "dead_letters"),
                                              file_name_suffix=".jsonl"))

    summary_parts = (
        (dead | "DeadReason" >> beam.Map(lambda d: d.reason.split(":")[0])
         | "CountDead" >> beam.combiners.Count.PerElement()
         | "DeadParts" >> beam.Map(lambda kv: ("dead", kv[0], kv[1])),
         built,
         parsed.event_batches | "CountEvents" >> beam.Map(lambda sb: sb[1][0])
         | "SumEvents" >> beam.CombineGlobally(sum)
         | "EventParts" >> beam.Map(lambda n: ("events", None, n)),
         by_shard | "ShardsWithEvents" >> beam.Map(lambda kv: ("rows", "shards_with_events", 1)),
         parsed.rows | "SumRows" >> beam.CombinePerKey(sum)
         | "RowParts" >> beam.Map(lambda kv: ("rows", kv[0], kv[1])),
         items | "CountItemRecords" >> beam.combiners.Count.Globally()
         | "ItemRecParts" >> beam.Map(lambda n: ("rows", "item_records", n)),
         assign.sizes | "SizeParts" >> beam.FlatMap(
             lambda sz: [("sizes", k, n) for k, n in sz.items()]),
         unique_items | "CountUniqueItems" >> beam.combiners.Count.Globally()
         | "UniqueItemParts" >> beam.Map(lambda n: ("rows", "unique_item_records", n)))
        | "SummaryParts" >> beam.Flatten() | "SummaryList" >> beam.combiners.ToList()
        | "Summarize" >> beam.Map(summarize))
    _write_single(summary_parts, fileio.join(output, "beam_summary.json"), "WriteSummary")


# ------------------------------------------------------------------------------ driver
def run(source: str, input_dir: str, output: str,
        options: Optional[PreprocessOptions] = None, *, beam_args: Sequence[str] = (),
        progress: bool = False, **changes) -> Dict:
    """Runs the pipeline and writes stats.json / data_config.json; returns the stats.

    Args:
        source: a name of `beam_pipelines.sources.SOURCES`.
        input_dir, output: raw files in, dataset out (local paths or any Beam filesystem).
        options: the `PreprocessOptions` (default: all defaults); `**changes` replace
            fields of it (`run(..., max_seq_len=20)`).
        beam_args: extra Beam pipeline flags. progress: print a heartbeat.

    `min_target_time_ms` defaults to the `min_target_time` of a generator's `meta.json` in the
    input directory (0 otherwise). `negatives` defaults to "both" for sources that log
    non-clicks (KuaiSAR impressions, MovieLens low ratings, events with a label column) and
    "sampled" otherwise (Amazon); `neg_per_pos` (sampled per positive) defaults to 1 when
    sampled negatives are on. `synth_queries` defaults to on for Amazon and MovieLens.
    `vocab_from`: "train" (items, query tokens, users and popularity from events before each
    user's first validation / test target; items first seen later map to OOV) or "catalog"
    (also every item of the item records, as a production catalogue given up front).
    `shards`: shards of users in the output (default 4 per 100 MB of input, at least 8);
    `fmt`: "store" (the sequence store) or "examples" (`beam_pipelines.shards`).
    `sampler_top`, `tail_sample`: the negative sampler's summary, every one of the top items
    and a uniform sample of the rest (`beam_pipelines.vocab.Sampler`).

    Raises:
        ValueError: `negatives="observed"` for a source without non-clicks, or `neg_per_pos`
            > 0 with `negatives="observed"`.
    """
    o = dataclasses.replace(options or PreprocessOptions(), **changes)
    beam_args = list(beam_args) + o.beam_args(os.cpu_count() or 2)
    max_seq_len, max_query_tokens, num_attrs = o.max_seq_len, o.max_query_tokens, o.num_attrs
    title_tokens, shards, fmt, synth_queries = o.title_tokens, o.shards, o.fmt, o.synth_queries
    source_cls = source_class(source)
    spec = source_cls.find(input_dir)
    if o.timestamp_unit != "auto":
        if spec.timestamp_unit is None:
            raise ValueError(f"--timestamp-unit applies to sources whose unit varies by "
                             f"input (events), not {source!r}")
        spec = dataclasses.replace(spec, timestamp_unit=o.timestamp_unit)
    final_output, output = output, fileio.prepare_output(output, o.overwrite, LOG.info)
    setup_log(output)  # everything is written under the staging area, then committed
    meta_path = fileio.join(input_dir, "meta.json")
    min_target_time_ms = o.min_target_time_ms
    if min_target_time_ms is None:
        min_target_time_ms = 0
        if fileio.exists(meta_path):
            min_target_time_ms = int(fileio.read_json(meta_path).get("min_target_time", 0))
    negatives, neg_per_pos = resolve_negatives(source, spec.has_negatives, o.negatives,
                                               o.neg_per_pos)
    if o.vocab_from not in ("train", "catalog"):
        raise ValueError(f"vocab_from must be 'train' or 'catalog', not {o.vocab_from!r}")
    if synth_queries is None:
        synth_queries = not source_cls.has_real_queries
    options = BuildOptions(max_seq_len=max_seq_len, max_query_tokens=max_query_tokens,
                           num_attrs=num_attrs, min_target_time_ms=min_target_time_ms,
                           split=o.split, valid_start_ms=o.valid_start_ms,
                           test_start_ms=o.test_start_ms, neg_per_pos=neg_per_pos,
                           negatives=negatives, vocab_from=o.vocab_from, sampling=o.sampling,
                           num_candidates=o.num_candidates, seed=o.seed)
    # Vocabulary sizes are unknown before the run; the contract only serializes here.
    contract = F.FeatureContract(max_seq_len, max_query_tokens, num_attrs, 2**62, 2**62,
                                 2**62, 2**62)
    t0 = time.time()
    LOG.info("preprocess %s: %d input files -> %s", source, len(spec.files), output)
    input_mb = sum(fileio.size(f) for _, f in spec.files) / 2**20
    if shards is None:  # ~4 shards of users per 100 MB of input, at least 8: every shard
        shards = max(8, int(input_mb / 25))  # looks its keys up once, so fewer is cheaper
    if shards < 1:
        raise ValueError(f"--shards must be >= 1, got {shards}")
    # join buckets of at most ~50k keys: distinct keys <= events, ~10^4 events per MB of
    # raw input; at least 16
    buckets = max(16, int(input_mb / 5))
    vectors = []
    for name, vec, ids in (("text", o.text_vectors, o.text_ids),
                           ("image", o.image_vectors, o.image_ids)):
        vec = vec or _default(input_dir, f"{name}_vectors.npy")
        if vec:
            vectors.append((name, vec, ids or vec.replace(f"{name}_vectors.npy",
                                                          f"{name}_item_ids.txt")))
    with Heartbeat("preprocess", status=lambda: f"Beam job on {len(spec.files)} files, "
                   f"{input_mb:.1f} MB") if progress else contextlib.nullcontext():
        try:
            with beam.Pipeline(runner=default_runner(beam_args),
                               options=PipelineOptions(list(beam_args))) as p:
                build_pipeline(p, spec, output, contract, options, min_count=o.min_count,
                               title_tokens=title_tokens, synth_queries=synth_queries,
                               shards=shards, fmt=fmt, buckets=buckets, vectors=vectors,
                               sampler_top=o.sampler_top, tail_sample=o.tail_sample)
        except BaseException:  # the spilled events go; beam.log stays for the post-mortem
            fileio.delete_tree(fileio.join(output, SPILL_DIR))
            raise
    seconds = time.time() - t0
    LOG.info("beam pipeline finished in %.1f s", seconds)

    concat_vocab_parts(output)
    fileio.delete_tree(fileio.join(output, SPILL_DIR))
    summary = fileio.read_json(fileio.join(output, "beam_summary.json"))
    sizes = {k: summary["sizes"].get(k, F.FIRST_ID) for k in KINDS}
    table_stats = assemble_item_table(output, sizes["items"], num_attrs, title_tokens)
    stats = {
        "source": source,
        "input": os.path.abspath(input_dir) if fileio.is_local(input_dir) else input_dir,
        "seconds": round(seconds, 2),
        "events": summary["events"], "users": sizes["users"] - F.FIRST_ID,
        "items": sizes["items"] - F.FIRST_ID, "examples": summary["examples"],
        "history_length_histogram": dict(sorted(summary["length_hist"].items(),
                                                key=lambda kv: int(kv[0].split("-")[0]))),
        "dead_letters": summary["dead_letters"],
        "dead_letters_total": sum(summary["dead_letters"].values()),
        "rows": row_accounting(summary["rows"], sum(summary["dead_letters"].values())),
        "vocab_sizes": sizes, "item_table": table_stats, "options": options._asdict(),
        "synth_queries": synth_queries, "has_negatives": spec.has_negatives,
        "timestamp_unit": spec.timestamp_unit,
        "format": fmt, "shards": shards,
    }
    fileio.write_json(fileio.join(output, "stats.json"), stats)
    data_config = {"max_seq_len": max_seq_len, "max_query_tokens": max_query_tokens,
                   "num_attrs": num_attrs, "item_vocab_size": sizes["items"],
                   "query_vocab_size": sizes["query_tokens"],
                   "attr_vocab_size": max(sizes["attrs"], 3),
                   "user_vocab_size": sizes["users"], "text_dim": table_stats["text_dim"],
                   "image_dim": table_stats["image_dim"], "title_tokens": title_tokens}
    fileio.write_json(fileio.join(output, "data_config.json"), data_config)
    fileio.commit_staging(final_output, "dataset", source=source, shards=shards)
    n_dead = stats["dead_letters_total"]
    rows = stats["rows"]
    if rows["short_candidate_groups"]:
        print(f"[preprocess] warning: {rows['short_candidate_groups']} candidate groups are "
              f"short of {rows['missing_candidates']} negatives in all (the catalogue has too "
              "few items the user never clicked)", flush=True)
    LOG.info("examples per split %s; dead letters %d %s", summary["examples"], n_dead,
             summary["dead_letters"])
    print(f"[preprocess] {stats['events']} events, {stats['users']} users, {stats['items']} "
          f"items -> examples {summary['examples']}; dropped {n_dead} malformed rows "
          f"{summary['dead_letters'] or ''} ({seconds:.1f} s)", flush=True)
    return stats


def resolve_negatives(source: str, has_negatives: bool, negatives: Optional[str],
                      neg_per_pos: Optional[int]):
    """(negatives, neg_per_pos) after per-source defaults, refusing impossible choices."""
    if negatives is None:
        negatives = "both" if has_negatives else "sampled"
    if negatives not in ("observed", "sampled", "both"):
        raise ValueError(f"--negatives must be observed, sampled or both, not {negatives!r}")
    if negatives == "observed" and not has_negatives:
        raise ValueError(f"source {source!r} logs no non-clicks: use --negatives sampled or "
                         "both")
    if neg_per_pos is None:
        neg_per_pos = 0 if negatives == "observed" else 1
    if negatives == "observed" and neg_per_pos > 0:
        raise ValueError("--neg-per-pos needs --negatives sampled or both")
    if negatives != "observed" and neg_per_pos < 1:
        raise ValueError(f"--negatives {negatives} needs --neg-per-pos >= 1")
    return negatives, neg_per_pos


def _default(input_dir: str, name: str) -> Optional[str]:
    path = fileio.join(input_dir, name)
    return path if fileio.exists(path) else None


def run_from_args(args, beam_args: Sequence[str]) -> Dict:
    """`seminar preprocess`: the flags of `beam_pipelines.options` -> `run`."""
    return run(args.source, args.input, args.output, PreprocessOptions.from_args(args),
               beam_args=beam_args, progress=True)
