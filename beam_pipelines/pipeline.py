"""The preprocessing pipeline: raw logs -> the sequence store (or self-contained Examples),
vocabularies, item table, statistics and dead letters.

Runs on the DirectRunner by default; every other Beam option (``--runner=DataflowRunner``,
``--direct_num_workers=2 --direct_running_mode=multi_processing``, ...) is passed through
unchanged, so the same code runs on Dataflow, Flink or Spark.

Output directory (S-of-N shards of users, `beam_pipelines.shards`):
    timelines-S-of-N.tfrecord.gz                         --format store (default): timelines
    {split}-S-of-N.targets.tfrecord.gz                   ... and target records
    {split}-S-of-N.tfrecord.gz                           --format examples: one Example each
      (split: train, valid, test, candidates, candidate_lists; `seminar_tf.data.store`)
    vocab/{items,query_tokens,attrs,users}.txt          one key per line; line i has id i+2
    items.jsonl                                          per item: id, attribute and title ids
    item_table.npz                                       attrs, title, text/image vectors+masks
    dead_letters-*.jsonl                                 malformed rows: file, line, reason, row
    stats.json, data_config.json, beam.log
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from typing import Dict, Optional, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines import fileio
from beam_pipelines import records as R
from beam_pipelines.item_table import build_item_table, load_vectors
from beam_pipelines.reading import ReadAndParse, absolute_dead_letters, file_splits
from beam_pipelines.sequences import BuildOptions, Sampler, Vocab
from beam_pipelines.sources import source_class
from beam_pipelines.shards import WriteShard, train_counts as train_counts_of
from beam_pipelines.runner import default_runner, setup_log
from beam_pipelines.sources.base import SourceSpec
from beam_pipelines.stats import row_accounting, summarize
from seminar_tf import features as F
from seminar_tf.progress import Heartbeat
LOG = logging.getLogger("beam_pipelines")


# -------------------------------------------------------------------------------- helpers
def _vocab(counts, label: str, min_count: int):
    """(key, count) pairs (one per key) -> a Vocab (ids by (-count, key))."""
    return (counts
            | f"List{label}" >> beam.combiners.ToList()
            | f"Vocab{label}" >> beam.Map(lambda kc: Vocab.from_counts(kc, min_count)))


def _item_side(item: R.ItemRecord, vocabs, num_attrs: int, title_tokens: int):
    attr_ids = vocabs["attrs"].ids(item.attrs)[:num_attrs]
    attr_ids += [F.PAD_ID] * (num_attrs - len(attr_ids))
    title_ids = [t for t in vocabs["query_tokens"].ids(item.title) if t != F.OOV_ID]
    return vocabs["items"].id(item.item), (attr_ids, title_ids[:title_tokens])


def _write_single(pcoll, path: str, label: str):
    return pcoll | label >> beam.io.WriteToText(path, shard_name_template="",
                                                append_trailing_newlines=False)


def build_pipeline(p: beam.Pipeline, spec: SourceSpec, output: str,
                   contract: F.FeatureContract, options: BuildOptions, *, min_count: int = 1,
                   title_tokens: int = 8, synth_queries: bool = False, shards: int = 8,
                   fmt: str = "store") -> None:
    """Adds the preprocessing transforms to pipeline `p` (`shards` output shards of users,
    `fmt` "store" or "examples": `beam_pipelines.shards`)."""
    parsed = (p
              | "Files" >> beam.Create(file_splits(spec.files))
              | "Spread" >> beam.Reshuffle()
              | "ReadParse" >> beam.ParDo(ReadAndParse(
                  spec.source, spec.encoding, shards=shards)).with_outputs(
                  "dead", "rows", "event_batches", "lines", main="records"))
    records = parsed.records
    items = records | "Items" >> beam.Filter(lambda r: isinstance(r, R.ItemRecord))

    # Events travel in batches per shard of users; every shard is built by one worker.
    by_shard = parsed.event_batches | "GroupByShard" >> beam.GroupByKey()
    # No leakage: vocabularies and popularity come from each user's events before their
    # first validation / test target (counted per key on the workers, `train_time_events`);
    # with vocab_from="catalog" every item record is in the item vocabulary as well.
    train_counts = (by_shard | "TrainCounts" >> beam.FlatMap(
        lambda sb: train_counts_of(sb, options)) | "SumCounts" >> beam.CombinePerKey(sum))

    def counts_of(kind):
        return train_counts | f"Counts{kind}" >> beam.FlatMap(
            lambda kv: [(kv[0][1], kv[1])] if kv[0][0] == kind else [])

    item_keys = counts_of("items")
    if options.vocab_from == "catalog":
        item_keys = ((item_keys, items | "CatalogKeys" >> beam.Map(lambda r: (r.item, 1)))
                     | "TrainAndCatalog" >> beam.Flatten()
                     | "SumCatalog" >> beam.CombinePerKey(sum))
    vocab_items = _vocab(item_keys, "Items", min_count)
    tokens = ((counts_of("query_tokens"),
               items | "TitleTokens" >> beam.FlatMap(lambda r: [(t, 1) for t in r.title]))
              | "AllTokens" >> beam.Flatten() | "SumTokens" >> beam.CombinePerKey(sum))
    vocab_tokens = _vocab(tokens, "Tokens", min_count)
    vocab_attrs = _vocab(items | "AttrKeys" >> beam.FlatMap(lambda r: [(a, 1) for a in r.attrs])
                         | "SumAttrs" >> beam.CombinePerKey(sum), "Attrs", min_count)
    vocab_users = _vocab(counts_of("users"), "Users", 1)
    vocabs = ((vocab_items | "KItems" >> beam.Map(lambda v: ("items", v)),
               vocab_tokens | "KTokens" >> beam.Map(lambda v: ("query_tokens", v)),
               vocab_attrs | "KAttrs" >> beam.Map(lambda v: ("attrs", v)),
               vocab_users | "KUsers" >> beam.Map(lambda v: ("users", v)))
              | "Vocabs" >> beam.Flatten() | "VocabDict" >> beam.combiners.ToDict())
    vocabs_si = beam.pvalue.AsSingleton(vocabs)

    for name, v in (("items", vocab_items), ("query_tokens", vocab_tokens),
                    ("attrs", vocab_attrs), ("users", vocab_users)):
        _write_single(v | f"Lines{name}" >> beam.Map(lambda voc: voc.lines()),
                      fileio.join(output, "vocab", f"{name}.txt"), f"WriteVocab{name}")

    item_side = (items
                 | "DedupItems" >> beam.Map(lambda r: (r.item, r))
                 | "OneRecordPerItem" >> beam.CombinePerKey(
                     lambda recs: min(recs, key=lambda r: repr(r)))
                 | "ItemSide" >> beam.Map(lambda kv, voc: (kv[1], _item_side(
                     kv[1], voc, contract.num_attrs, title_tokens)), vocabs_si))
    item_side_dict = (item_side | "SideOnly" >> beam.Map(lambda r_s: r_s[1])
                      | "KnownItems" >> beam.Filter(lambda kv: kv[0] >= F.FIRST_ID)
                      | "ItemSideDict" >> beam.combiners.ToDict())
    _write_single(item_side
                  | "ItemJson" >> beam.Map(lambda r_s: json.dumps({
                      "id": r_s[1][0], "attrs": r_s[1][1][0], "title": r_s[1][1][1],
                      "text_vector": r_s[0].text_vector, "image_vector": r_s[0].image_vector
                  }, sort_keys=True))
                  | "SortItems" >> beam.combiners.ToList()
                  | "ItemLines" >> beam.Map(lambda ls: "".join(f"{x}\n" for x in sorted(ls))),
                  fileio.join(output, "items.jsonl"), "WriteItems")

    use_sampler = options.negatives != "observed" or options.num_candidates
    # a bounded summary: the top items by count, the rest as one uniform tail
    sampler_data = vocab_items | "SamplerData" >> beam.Map(
        lambda voc: Sampler.summary(voc) if use_sampler else ([], [], None))

    built = by_shard | "WriteShards" >> beam.ParDo(
        WriteShard(output, shards, fmt, contract, options, spec.has_negatives, synth_queries),
        vocabs_si, beam.pvalue.AsSingleton(item_side_dict),
        beam.pvalue.AsSingleton(sampler_data))

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
         item_side | "CountUniqueItems" >> beam.combiners.Count.Globally()
         | "UniqueItemParts" >> beam.Map(lambda n: ("rows", "unique_item_records", n)))
        | "SummaryParts" >> beam.Flatten() | "SummaryList" >> beam.combiners.ToList()
        | "Summarize" >> beam.Map(summarize))
    _write_single(summary_parts, fileio.join(output, "beam_summary.json"), "WriteSummary")


# ------------------------------------------------------------------------------ driver
def run(source: str, input_dir: str, output: str, *, max_seq_len: int = 200,
        max_query_tokens: int = 6, num_attrs: int = 4, title_tokens: int = 8,
        min_count: int = 1, min_target_time_ms: Optional[int] = None, split: str = "loo",
        valid_start_ms: int = 0, test_start_ms: int = 0, neg_per_pos: Optional[int] = None,
        negatives: Optional[str] = None, vocab_from: str = "train",
        sampling: str = "popularity", num_candidates: int = 100, seed: int = 0,
        synth_queries: Optional[bool] = None, text_vectors: Optional[str] = None,
        text_ids: Optional[str] = None, image_vectors: Optional[str] = None,
        image_ids: Optional[str] = None, beam_args: Sequence[str] = (),
        progress: bool = False, shards: Optional[int] = None, fmt: str = "store") -> Dict:
    """Runs the pipeline and writes stats.json / data_config.json; returns the stats.

    `min_target_time_ms` defaults to the `min_target_time` of a generator's `meta.json` in the
    input directory (0 otherwise). `negatives` defaults to "both" for sources that log
    non-clicks (KuaiSAR impressions, MovieLens low ratings, events with a label column) and
    "sampled" otherwise (Amazon); `neg_per_pos` (sampled per positive) defaults to 1 when
    sampled negatives are on. `synth_queries` defaults to on for Amazon and MovieLens.
    `vocab_from`: "train" (items, query tokens, users and popularity from events before each
    user's first validation / test target; items first seen later map to OOV) or "catalog"
    (also every item of the item records, as a production catalogue given up front).
    `shards`: shards of users in the output (default 8 per 100 MB of input, at least 8);
    `fmt`: "store" (the sequence store) or "examples" (`beam_pipelines.shards`).

    Raises:
        ValueError: `negatives="observed"` for a source without non-clicks, or `neg_per_pos`
            > 0 with `negatives="observed"`.
    """
    source_cls = source_class(source)
    spec = source_cls.find(input_dir)
    fileio.makedirs(output)
    setup_log(output)
    meta_path = fileio.join(input_dir, "meta.json")
    if min_target_time_ms is None:
        min_target_time_ms = 0
        if fileio.exists(meta_path):
            min_target_time_ms = int(fileio.read_json(meta_path).get("min_target_time", 0))
    negatives, neg_per_pos = resolve_negatives(source, spec.has_negatives, negatives,
                                               neg_per_pos)
    if vocab_from not in ("train", "catalog"):
        raise ValueError(f"vocab_from must be 'train' or 'catalog', not {vocab_from!r}")
    if synth_queries is None:
        synth_queries = not source_cls.has_real_queries
    options = BuildOptions(max_seq_len=max_seq_len, max_query_tokens=max_query_tokens,
                           num_attrs=num_attrs, min_target_time_ms=min_target_time_ms,
                           split=split, valid_start_ms=valid_start_ms,
                           test_start_ms=test_start_ms, neg_per_pos=neg_per_pos,
                           negatives=negatives, vocab_from=vocab_from, sampling=sampling,
                           num_candidates=num_candidates, seed=seed)
    # Vocabulary sizes are unknown before the run; the contract only serializes here.
    contract = F.FeatureContract(max_seq_len, max_query_tokens, num_attrs, 2**62, 2**62,
                                 2**62, 2**62)
    t0 = time.time()
    LOG.info("preprocess %s: %d input files -> %s", source, len(spec.files), output)
    input_mb = sum(fileio.size(f) for _, f in spec.files) / 2**20
    if shards is None:  # ~8 shards of users per 100 MB of input, at least 8
        shards = max(8, int(input_mb / 12.5))
    if shards < 1:
        raise ValueError(f"--shards must be >= 1, got {shards}")
    with Heartbeat("preprocess", status=lambda: f"Beam job on {len(spec.files)} files, "
                   f"{input_mb:.1f} MB") if progress else contextlib.nullcontext():
        with beam.Pipeline(runner=default_runner(beam_args),
                           options=PipelineOptions(list(beam_args))) as p:
            build_pipeline(p, spec, output, contract, options, min_count=min_count,
                           title_tokens=title_tokens, synth_queries=synth_queries,
                           shards=shards, fmt=fmt)
    seconds = time.time() - t0
    LOG.info("beam pipeline finished in %.1f s", seconds)

    text = image = None
    text_vectors = text_vectors or _default(input_dir, "text_vectors.npy")
    image_vectors = image_vectors or _default(input_dir, "image_vectors.npy")
    if text_vectors:
        text = load_vectors(text_vectors, text_ids or text_vectors.replace(
            "text_vectors.npy", "text_item_ids.txt"))
    if image_vectors:
        image = load_vectors(image_vectors, image_ids or image_vectors.replace(
            "image_vectors.npy", "image_item_ids.txt"))
    table_stats = build_item_table(output, num_attrs, title_tokens, text, image)

    summary = fileio.read_json(fileio.join(output, "beam_summary.json"))
    sizes = {}
    for name in ("items", "query_tokens", "attrs", "users"):
        text = fileio.read_text(fileio.join(output, "vocab", f"{name}.txt"))
        sizes[name] = text.count("\n") + F.FIRST_ID
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
    beam_args = list(beam_args)
    if args.multiprocess:
        beam_args += ["--direct_running_mode=multi_processing",
                      f"--direct_num_workers={os.cpu_count() or 2}"]
    return run(args.source, args.input, args.output, max_seq_len=args.max_seq_len,
               max_query_tokens=args.max_query_tokens, num_attrs=args.num_attrs,
               min_count=args.min_count, min_target_time_ms=args.min_target_time_ms,
               split=args.split, valid_start_ms=args.valid_start_ms,
               test_start_ms=args.test_start_ms, neg_per_pos=args.neg_per_pos,
               negatives=args.negatives, vocab_from=args.vocab_from,
               sampling=args.sampling, num_candidates=args.num_candidates, seed=args.seed,
               text_vectors=args.text_vectors, text_ids=args.text_ids,
               image_vectors=args.image_vectors, image_ids=args.image_ids,
               beam_args=beam_args, progress=True, shards=args.shards, fmt=args.format)
