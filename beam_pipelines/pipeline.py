"""The preprocessing pipeline: raw logs -> TFRecords of contract Examples, vocabularies,
item table, statistics and dead letters.

Runs on the DirectRunner by default; every other Beam option (``--runner=DataflowRunner``,
``--direct_num_workers=2 --direct_running_mode=multi_processing``, ...) is passed through
unchanged, so the same code runs on Dataflow, Flink or Spark.

Output directory:
    train-*.tfrecord.gz, valid-*, test-*, candidates-*   gzip TFRecords of tf.train.Example
    vocab/{items,query_tokens,attrs,users}.txt          one key per line; line i has id i+2
    items.jsonl                                          per item: id, attribute and title ids
    item_table.npz                                       attrs, title, text/image vectors+masks
    dead_letters-*.jsonl                                 malformed rows: file, line, reason, row
    stats.json, data_config.json, beam.log
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import glob
import gzip
import json
import logging
import os
import time
import zlib
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.metrics import Metrics

from beam_pipelines import records as R
from beam_pipelines.sequences import BuildOptions, Sampler, SPLITS, Vocab, build_user_examples
from seminar_tf import features as F

SOURCES = ("kuaisar", "amazon", "movielens", "events")
LOG = logging.getLogger("beam_pipelines")


@dataclasses.dataclass
class SourceSpec:
    """Which files of an input directory hold what, and how to parse their rows."""
    files: List[Tuple[str, str]]  # (kind, path); kind in event/item parser names
    encoding: str = "utf-8"
    has_negatives: bool = True
    title_is_query_vocab: bool = True


# kind -> (parser, row format): "csv" rows are dicts by header, "json" raw lines,
# "tab"/"pipe"/"colons" split fields.
PARSERS = {
    "kuaisar_rec": (R.kuaisar_rec, "csv"),
    "kuaisar_src": (R.kuaisar_src, "csv"),
    "kuaisar_item": (R.kuaisar_item, "csv"),
    "amazon_review": (R.amazon_review, "json"),
    "amazon_meta": (R.amazon_meta, "json"),
    "ml100k_rating": (R.movielens_rating, "tab"),
    "ml100k_item": (R.movielens_100k_item, "pipe"),
    "ml1m_rating": (R.movielens_rating, "colons"),
    "ml1m_item": (R.movielens_1m_item, "colons"),
    "generic_event": (R.generic_event, "json"),
    "generic_item": (R.generic_item, "json"),
}


def _find(input_dir: str, *patterns: str) -> List[str]:
    return sorted({p for pat in patterns for p in glob.glob(os.path.join(input_dir, pat))})


def source_spec(source: str, input_dir: str) -> SourceSpec:
    """Locates the files of `source` in `input_dir`.

    Raises:
        FileNotFoundError: a required file is missing (named in the message).
    """
    def need(kind, *patterns):
        found = _find(input_dir, *patterns)
        if not found:
            raise FileNotFoundError(f"{source}: no {' or '.join(patterns)} in {input_dir}")
        return [(kind, p) for p in found]

    if source == "kuaisar":
        files = (need("kuaisar_rec", "rec_inter.csv", "rec_inter*.csv.gz")
                 + _opt("kuaisar_src", _find(input_dir, "src_inter.csv", "src_inter*.csv.gz"))
                 + need("kuaisar_item", "item_features.csv", "item_features*.csv.gz"))
        return SourceSpec(files, has_negatives=True)
    if source == "amazon":
        meta = _find(input_dir, "meta_*.json", "meta_*.json.gz", "meta*.jsonl", "meta*.jsonl.gz")
        reviews = [p for p in _find(input_dir, "*.json", "*.json.gz", "*.jsonl", "*.jsonl.gz")
                   if p not in meta]
        if not reviews:
            raise FileNotFoundError(f"amazon: no review JSON lines file in {input_dir}")
        return SourceSpec(_opt("amazon_review", reviews) + _opt("amazon_meta", meta),
                          has_negatives=False)
    if source == "movielens":
        if _find(input_dir, "u.data"):
            files = need("ml100k_rating", "u.data") + need("ml100k_item", "u.item")
        else:
            files = need("ml1m_rating", "ratings.dat") + need("ml1m_item", "movies.dat")
        return SourceSpec(files, encoding="latin-1", has_negatives=True)
    if source == "events":
        files = need("generic_event", "events*.jsonl", "events*.jsonl.gz", "events*.json")
        files += _opt("generic_item", _find(input_dir, "items*.jsonl", "items*.jsonl.gz"))
        has_label = _any_has_key([p for _, p in files if "events" in os.path.basename(p)],
                                 "label")
        return SourceSpec(files, has_negatives=has_label)
    raise ValueError(f"--source must be one of {SOURCES}, got {source!r}")


def _opt(kind, paths):
    return [(kind, p) for p in paths]


def _any_has_key(paths: Sequence[str], key: str, probe: int = 1000) -> bool:
    for p in paths:
        with _open(p) as f:
            try:
                for i, raw in enumerate(f):
                    if i >= probe:
                        break
                    try:
                        obj = json.loads(raw)
                    except (json.JSONDecodeError, UnicodeDecodeError):
                        continue  # a malformed row: the reader dead-letters it later
                    if isinstance(obj, dict) and key in obj:
                        return True
            except (OSError, EOFError, zlib.error):
                continue  # a corrupt stream: the reader dead-letters the rest later
    return False


def _open(path: str):
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


# ------------------------------------------------------------------------ reading + parsing
class ReadAndParse(beam.DoFn):
    """Reads one file line by line (with line numbers) and parses each row.

    Main output: Event or ItemRecord; tagged output "dead": DeadLetter; tagged output
    "rows": (count name, n) once per file, so that every row read is accounted for:
    read = parsed + dead letters + skipped (header, blank). A compressed stream that breaks
    (corrupt or truncated gzip) dead-letters the rest of its file as one "corrupt_stream"
    row naming the line it broke at, instead of failing the job.
    """

    def __init__(self, encoding: str):
        self.encoding = encoding
        self.rows = Metrics.counter("preprocess", "rows")

    def process(self, kind_path):
        kind, path = kind_path
        parser, fmt = PARSERS[kind]
        header = None
        name = os.path.basename(path)
        counts = {"read": 0, "parsed": 0, "skipped_header": 0, "skipped_blank": 0}
        with _open(path) as f:
            lines = enumerate(f, start=1)
            while True:
                try:
                    line_no, raw = next(lines)
                except StopIteration:
                    break
                except (OSError, EOFError, zlib.error) as e:  # corrupt compressed stream
                    counts["read"] += 1
                    yield self._dead(name, counts["read"], "corrupt_stream",
                                     f"unreadable from line {counts['read']} to the end", e)
                    break
                counts["read"] += 1
                self.rows.inc()
                try:
                    line = raw.decode(self.encoding).rstrip("\r\n")
                except UnicodeDecodeError as e:
                    yield self._dead(name, line_no, "undecodable_bytes", repr(raw[:200]), e)
                    continue
                if not line.strip():
                    counts["skipped_blank"] += 1
                    continue
                if fmt == "csv" and header is None:
                    header = next(iter(csv.reader([line])))
                    counts["skipped_header"] += 1
                    continue
                try:
                    rec = self._parse(parser, fmt, line, header)
                except R.RecordError as e:
                    yield self._dead(name, line_no, e.reason, line, e)
                    continue
                except (KeyError, IndexError) as e:
                    yield self._dead(name, line_no, "missing_column", line, e)
                    continue
                except (ValueError, TypeError, AttributeError, csv.Error) as e:
                    yield self._dead(name, line_no, "malformed_row", line, e)
                    continue
                counts["parsed"] += 1
                yield rec
        for key, n in counts.items():
            yield beam.pvalue.TaggedOutput("rows", (key, n))

    @staticmethod
    def _parse(parser, fmt: str, line: str, header):
        if fmt == "csv":
            return parser(R.csv_row(line, header))
        if fmt == "json":
            return parser(line)
        return parser(line.split({"tab": "\t", "pipe": "|", "colons": "::"}[fmt]))

    @staticmethod
    def _dead(name, line_no, reason, row, err):
        Metrics.counter("dead_letters", reason).inc()
        return beam.pvalue.TaggedOutput(
            "dead", R.DeadLetter(name, line_no, f"{reason}: {err}", row[:1000]))


# ----------------------------------------------------------------------------- per user
class BuildExamples(beam.DoFn):
    """Builds the Examples of one user (after GroupByKey) and routes them per split."""

    def __init__(self, contract: F.FeatureContract, options: BuildOptions,
                 has_negatives: bool, synth_queries: bool):
        self.contract = contract
        self.options = options
        self.has_negatives = has_negatives
        self.synth_queries = synth_queries
        self._cache_key = None

    def _prepare(self, vocabs, item_side, sampler_data):
        """Derives per-worker lookups once per side-input value, not once per user."""
        key = (id(vocabs), id(item_side), id(sampler_data))
        if key != self._cache_key:
            self._attrs = {k: v[0] for k, v in item_side.items()}
            self._inverse_tokens = {i: k for k, i in vocabs["query_tokens"].index.items()}
            self._sampler = (Sampler(*sampler_data, mode=self.options.sampling)
                             if sampler_data[0] else None)
            self._cache_key = key

    def process(self, user_events, vocabs, item_side, sampler_data):
        user, events = user_events
        self._prepare(vocabs, item_side, sampler_data)
        item_vocab, token_vocab, users = vocabs["items"], vocabs["query_tokens"], vocabs["users"]
        attrs, sampler = self._attrs, self._sampler
        events = list(events)
        unique = list(dict.fromkeys(events))  # exact duplicate rows count once
        if len(unique) < len(events):
            yield beam.pvalue.TaggedOutput("rows", ("duplicate_events", len(events) - len(unique)))
            events = unique
        if self.synth_queries:
            events = synthesize_queries(events, item_vocab, self._inverse_tokens, item_side)
        for split, serialized, hist_len in build_user_examples(
                users.id(user), events, item_vocab=item_vocab, token_vocab=token_vocab,
                item_attrs=attrs, sampler=sampler, contract=self.contract,
                options=self.options, has_negatives=self.has_negatives):
            if split == "short_groups":
                Metrics.counter("examples", "short_candidate_groups").inc()
                yield beam.pvalue.TaggedOutput("rows", ("short_candidate_groups", 1))
                yield beam.pvalue.TaggedOutput("rows", ("missing_candidates", hist_len))
                continue
            Metrics.counter("examples", split).inc()
            yield beam.pvalue.TaggedOutput(split, serialized)
            if split != "candidates":
                yield beam.pvalue.TaggedOutput("lengths", (split, hist_len))


def synthesize_queries(events, item_vocab, inverse_tokens, item_side) -> List[R.Event]:
    """Documented query synthesiser for sources without queries (Amazon, MovieLens).

    An event without a query gets as query the title tokens of the user's most recent
    *earlier* positive item (strictly earlier timestamp): the user's previous intent. The
    target's own text is never used, so the query cannot leak the target. The first event
    keeps an empty query. The source is left unchanged.
    """
    from beam_pipelines.sequences import sort_events
    inverse = inverse_tokens
    out, last_title, pending, pending_ts = [], (), (), None
    for e in sort_events(events):
        if pending_ts is not None and e.timestamp_ms > pending_ts:
            last_title, pending_ts = pending, None
        if not e.query and last_title:
            e = e._replace(query=last_title)
        out.append(e)
        if e.label > 0:
            title_ids = item_side.get(item_vocab.id(e.item), ((), ()))[1]
            pending = tuple(inverse[t] for t in title_ids if t in inverse)
            pending_ts = e.timestamp_ms
    return out


# -------------------------------------------------------------------------------- helpers
def _count_vocab(pcoll, label: str, min_count: int):
    return (pcoll
            | f"Count{label}" >> beam.combiners.Count.PerElement()
            | f"List{label}" >> beam.combiners.ToList()
            | f"Vocab{label}" >> beam.Map(lambda kc: Vocab.from_counts(kc, min_count)))


def _item_side(item: R.ItemRecord, vocabs, num_attrs: int, title_tokens: int):
    attr_ids = vocabs["attrs"].ids(item.attrs)[:num_attrs]
    attr_ids += [F.PAD_ID] * (num_attrs - len(attr_ids))
    title_ids = [t for t in vocabs["query_tokens"].ids(item.title) if t != F.OOV_ID]
    return vocabs["items"].id(item.item), (attr_ids, title_ids[:title_tokens])


def _sampler_data(vocab_and_counts):
    vocab, counts = vocab_and_counts
    ids = [vocab.id(k) for k in vocab.keys]
    return ids, [counts.get(k, 1) for k in vocab.keys]


def _write_single(pcoll, path: str, label: str):
    return pcoll | label >> beam.io.WriteToText(path, shard_name_template="",
                                                append_trailing_newlines=False)


def build_pipeline(p: beam.Pipeline, spec: SourceSpec, output: str,
                   contract: F.FeatureContract, options: BuildOptions, *, min_count: int = 1,
                   title_tokens: int = 8, synth_queries: bool = False) -> None:
    """Adds the preprocessing transforms to pipeline `p`."""
    parsed = (p
              | "Files" >> beam.Create(spec.files)
              | "ReadParse" >> beam.ParDo(ReadAndParse(spec.encoding)).with_outputs(
                  "dead", "rows", main="records"))
    records = parsed.records
    events = records | "Events" >> beam.Filter(lambda r: isinstance(r, R.Event))
    items = records | "Items" >> beam.Filter(lambda r: isinstance(r, R.ItemRecord))

    item_keys = events | "ItemKeys" >> beam.Map(lambda e: e.item)
    item_counts = (item_keys | "CountItemsForSampling" >> beam.combiners.Count.PerElement()
                   | "PosDict" >> beam.combiners.ToDict())
    vocab_items = _count_vocab(item_keys, "Items", min_count)
    tokens = ((events | "QueryTokens" >> beam.FlatMap(lambda e: e.query),
               items | "TitleTokens" >> beam.FlatMap(lambda r: r.title))
              | "AllTokens" >> beam.Flatten())
    vocab_tokens = _count_vocab(tokens, "Tokens", min_count)
    vocab_attrs = _count_vocab(items | "AttrKeys" >> beam.FlatMap(lambda r: r.attrs), "Attrs",
                               min_count)
    vocab_users = _count_vocab(events | "UserKeys" >> beam.Map(lambda e: e.user), "Users", 1)
    vocabs = ((vocab_items | "KItems" >> beam.Map(lambda v: ("items", v)),
               vocab_tokens | "KTokens" >> beam.Map(lambda v: ("query_tokens", v)),
               vocab_attrs | "KAttrs" >> beam.Map(lambda v: ("attrs", v)),
               vocab_users | "KUsers" >> beam.Map(lambda v: ("users", v)))
              | "Vocabs" >> beam.Flatten() | "VocabDict" >> beam.combiners.ToDict())
    vocabs_si = beam.pvalue.AsSingleton(vocabs)

    for name, v in (("items", vocab_items), ("query_tokens", vocab_tokens),
                    ("attrs", vocab_attrs), ("users", vocab_users)):
        _write_single(v | f"Lines{name}" >> beam.Map(lambda voc: voc.lines()),
                      os.path.join(output, "vocab", f"{name}.txt"), f"WriteVocab{name}")

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
                  os.path.join(output, "items.jsonl"), "WriteItems")

    use_sampler = (not spec.has_negatives) or options.neg_per_pos > 0 or options.num_candidates
    sampler_data = vocab_items | "SamplerData" >> beam.Map(
        lambda voc, counts: _sampler_data((voc, counts)) if use_sampler else ([], []),
        beam.pvalue.AsSingleton(item_counts))

    built = (events
             | "KeyByUser" >> beam.Map(lambda e: (e.user, e))
             | "GroupByUser" >> beam.GroupByKey()
             | "BuildExamples" >> beam.ParDo(
                 BuildExamples(contract, options, spec.has_negatives, synth_queries),
                 vocabs_si, beam.pvalue.AsSingleton(item_side_dict),
                 beam.pvalue.AsSingleton(sampler_data)).with_outputs(*SPLITS, "lengths",
                                                                      "rows"))
    for split in SPLITS:
        _ = built[split] | f"Write{split}" >> beam.io.WriteToTFRecord(
            os.path.join(output, split), file_name_suffix=".tfrecord.gz",
            compression_type=beam.io.filesystem.CompressionTypes.GZIP)

    dead = parsed.dead
    _ = (dead | "DeadJson" >> beam.Map(lambda d: json.dumps(d._asdict(), ensure_ascii=False))
         | "WriteDead" >> beam.io.WriteToText(os.path.join(output, "dead_letters"),
                                              file_name_suffix=".jsonl"))

    def summarize(parts):
        out = {"dead_letters": {}, "examples": {s: 0 for s in SPLITS}, "length_hist": {},
               "events": 0, "labels": {}, "rows": {}}
        for kind, key, value in parts:
            if kind == "rows":
                out["rows"][key] = out["rows"].get(key, 0) + value
            elif kind == "dead":
                out["dead_letters"][key] = out["dead_letters"].get(key, 0) + value
            elif kind == "len":
                split, length = key
                out["examples"][split] += value
                b = _bucket(length)
                out["length_hist"][b] = out["length_hist"].get(b, 0) + value
            elif kind == "events":
                out["events"] += value
        for s in ("candidates",):
            out["examples"].pop(s)
        return json.dumps(out, sort_keys=True)

    summary_parts = (
        (dead | "DeadReason" >> beam.Map(lambda d: d.reason.split(":")[0])
         | "CountDead" >> beam.combiners.Count.PerElement()
         | "DeadParts" >> beam.Map(lambda kv: ("dead", kv[0], kv[1])),
         built["lengths"] | "CountLengths" >> beam.combiners.Count.PerElement()
         | "LenParts" >> beam.Map(lambda kv: ("len", kv[0], kv[1])),
         events | "CountEvents" >> beam.combiners.Count.Globally()
         | "EventParts" >> beam.Map(lambda n: ("events", None, n)),
         (parsed.rows, built["rows"]) | "RowCounts" >> beam.Flatten()
         | "SumRows" >> beam.CombinePerKey(sum)
         | "RowParts" >> beam.Map(lambda kv: ("rows", kv[0], kv[1])),
         items | "CountItemRecords" >> beam.combiners.Count.Globally()
         | "ItemRecParts" >> beam.Map(lambda n: ("rows", "item_records", n)),
         item_side | "CountUniqueItems" >> beam.combiners.Count.Globally()
         | "UniqueItemParts" >> beam.Map(lambda n: ("rows", "unique_item_records", n)))
        | "SummaryParts" >> beam.Flatten() | "SummaryList" >> beam.combiners.ToList()
        | "Summarize" >> beam.Map(summarize))
    _write_single(summary_parts, os.path.join(output, "beam_summary.json"), "WriteSummary")
    candidates = built["candidates"] | "CountCand" >> beam.combiners.Count.Globally()
    _write_single(candidates | "CandJson" >> beam.Map(lambda n: json.dumps({"candidates": n})),
                  os.path.join(output, "candidates_count.json"), "WriteCandCount")


def row_accounting(rows: Dict[str, int], dead: int) -> Dict[str, int]:
    """Where every input row went: read = parsed + dead_letters + skipped_header +
    skipped_blank; parsed rows are events or item records, of which `duplicate_events` and
    `duplicate_item_records` (exact repeats) were counted once.

    Raises:
        RuntimeError: the counts do not add up (a row was lost: a bug, never data).
    """
    out = {k: int(rows.get(k, 0)) for k in (
        "read", "parsed", "skipped_header", "skipped_blank", "duplicate_events",
        "item_records", "unique_item_records", "short_candidate_groups",
        "missing_candidates")}
    out["dead_letters"] = dead
    out["duplicate_item_records"] = out.pop("item_records") - out.pop("unique_item_records")
    accounted = out["parsed"] + dead + out["skipped_header"] + out["skipped_blank"]
    if accounted != out["read"]:
        raise RuntimeError(f"row accounting does not add up: {out}")
    return out


def _bucket(n: int) -> str:
    if n == 0:
        return "0"
    lo = 1 << (n.bit_length() - 1)
    return f"{lo}-{2 * lo - 1}"


# ------------------------------------------------------------------------- item table
def load_vectors(vectors_path: str, ids_path: str) -> Dict[str, np.ndarray]:
    """Loads pretrained vectors stored as `.npy` + a text file of raw item ids (one a line)."""
    vectors = np.load(vectors_path)
    with open(ids_path, encoding="utf-8") as f:
        ids = [ln.strip() for ln in f if ln.strip()]
    if len(ids) != len(vectors):
        raise ValueError(f"{ids_path} lists {len(ids)} ids but {vectors_path} has "
                         f"{len(vectors)} rows")
    return dict(zip(ids, vectors))


def build_item_table(output: str, num_attrs: int, title_tokens: int,
                     text: Optional[Dict[str, np.ndarray]] = None,
                     image: Optional[Dict[str, np.ndarray]] = None) -> Dict[str, int]:
    """Assembles `item_table.npz` (indexed by item vocabulary id) from the pipeline output.

    Arrays: attrs [V, A] int64, title [V, T] int64, text [V, Dt] float32, text_mask [V] bool,
    image [V, Di] float32, image_mask [V] bool. A missing vector is all-zero *and* masked out.
    """
    with open(os.path.join(output, "vocab", "items.txt"), encoding="utf-8") as f:
        keys = [ln.rstrip("\n") for ln in f]
    V = len(keys) + F.FIRST_ID
    attrs = np.zeros((V, num_attrs), np.int64)
    title = np.zeros((V, title_tokens), np.int64)
    inline_text, inline_image = {}, {}
    with open(os.path.join(output, "items.jsonl"), encoding="utf-8") as f:
        for ln in f:
            rec = json.loads(ln)
            i = rec["id"]
            if i < F.FIRST_ID:
                continue  # item record of an item that never occurs in events
            attrs[i] = rec["attrs"]
            title[i, :len(rec["title"])] = rec["title"]
            if rec.get("text_vector"):
                inline_text[i] = np.asarray(rec["text_vector"], np.float32)
            if rec.get("image_vector"):
                inline_image[i] = np.asarray(rec["image_vector"], np.float32)

    def table(by_raw, inline):
        dim = (len(next(iter(by_raw.values()))) if by_raw else
               len(next(iter(inline.values()))) if inline else 0)
        mat = np.zeros((V, dim), np.float32)
        mask = np.zeros(V, bool)
        for j, key in enumerate(keys):
            vec = (by_raw or {}).get(key)
            if vec is None:
                vec = inline.get(j + F.FIRST_ID)
            if vec is not None:
                mat[j + F.FIRST_ID] = vec
                mask[j + F.FIRST_ID] = True
        return mat, mask

    text_m, text_mask = table(text, inline_text)
    image_m, image_mask = table(image, inline_image)
    np.savez(os.path.join(output, "item_table.npz"), attrs=attrs, title=title, text=text_m,
             text_mask=text_mask, image=image_m, image_mask=image_mask)
    return {"items": V, "text_dim": text_m.shape[1], "image_dim": image_m.shape[1],
            "items_with_text": int(text_mask.sum()), "items_with_image": int(image_mask.sum())}


# ------------------------------------------------------------------------------ driver
def run(source: str, input_dir: str, output: str, *, max_seq_len: int = 200,
        max_query_tokens: int = 6, num_attrs: int = 4, title_tokens: int = 8,
        min_count: int = 1, min_target_time_ms: Optional[int] = None, split: str = "loo",
        valid_start_ms: int = 0, test_start_ms: int = 0, neg_per_pos: Optional[int] = None,
        sampling: str = "popularity", num_candidates: int = 100, seed: int = 0,
        synth_queries: Optional[bool] = None, text_vectors: Optional[str] = None,
        text_ids: Optional[str] = None, image_vectors: Optional[str] = None,
        image_ids: Optional[str] = None, beam_args: Sequence[str] = ()) -> Dict:
    """Runs the pipeline and writes stats.json / data_config.json; returns the stats.

    `min_target_time_ms` defaults to the `min_target_time` of a generator's `meta.json` in the
    input directory (0 otherwise). `neg_per_pos` defaults to 0 for sources with real
    non-clicks and 1 otherwise; `synth_queries` defaults to on for Amazon and MovieLens.
    """
    spec = source_spec(source, input_dir)
    os.makedirs(output, exist_ok=True)
    _setup_log(output)
    meta_path = os.path.join(input_dir, "meta.json")
    if min_target_time_ms is None:
        min_target_time_ms = 0
        if os.path.exists(meta_path):
            with open(meta_path, encoding="utf-8") as f:
                min_target_time_ms = int(json.load(f).get("min_target_time", 0))
    if neg_per_pos is None:
        neg_per_pos = 0 if spec.has_negatives else 1
    if synth_queries is None:
        synth_queries = source in ("amazon", "movielens")
    options = BuildOptions(max_seq_len=max_seq_len, max_query_tokens=max_query_tokens,
                           num_attrs=num_attrs, min_target_time_ms=min_target_time_ms,
                           split=split, valid_start_ms=valid_start_ms,
                           test_start_ms=test_start_ms, neg_per_pos=neg_per_pos,
                           sampling=sampling, num_candidates=num_candidates, seed=seed)
    # Vocabulary sizes are unknown before the run; the contract only serializes here.
    contract = F.FeatureContract(max_seq_len, max_query_tokens, num_attrs, 2**62, 2**62,
                                 2**62, 2**62)
    t0 = time.time()
    LOG.info("preprocess %s: %d input files -> %s", source, len(spec.files), output)
    with beam.Pipeline(runner=_default_runner(beam_args),
                       options=PipelineOptions(list(beam_args))) as p:
        build_pipeline(p, spec, output, contract, options, min_count=min_count,
                       title_tokens=title_tokens, synth_queries=synth_queries)
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

    with open(os.path.join(output, "beam_summary.json"), encoding="utf-8") as f:
        summary = json.load(f)
    with open(os.path.join(output, "candidates_count.json"), encoding="utf-8") as f:
        summary["examples"]["candidates"] = json.load(f)["candidates"]
    sizes = {}
    for name in ("items", "query_tokens", "attrs", "users"):
        with open(os.path.join(output, "vocab", f"{name}.txt"), encoding="utf-8") as f:
            sizes[name] = sum(1 for _ in f) + F.FIRST_ID
    stats = {
        "source": source, "input": os.path.abspath(input_dir), "seconds": round(seconds, 2),
        "events": summary["events"], "users": sizes["users"] - F.FIRST_ID,
        "items": sizes["items"] - F.FIRST_ID, "examples": summary["examples"],
        "history_length_histogram": dict(sorted(summary["length_hist"].items(),
                                                key=lambda kv: int(kv[0].split("-")[0]))),
        "dead_letters": summary["dead_letters"],
        "dead_letters_total": sum(summary["dead_letters"].values()),
        "rows": row_accounting(summary["rows"], sum(summary["dead_letters"].values())),
        "vocab_sizes": sizes, "item_table": table_stats, "options": options._asdict(),
        "synth_queries": synth_queries, "has_negatives": spec.has_negatives,
    }
    with open(os.path.join(output, "stats.json"), "w", encoding="utf-8") as f:
        json.dump(stats, f, indent=2, sort_keys=True)
    data_config = {"max_seq_len": max_seq_len, "max_query_tokens": max_query_tokens,
                   "num_attrs": num_attrs, "item_vocab_size": sizes["items"],
                   "query_vocab_size": sizes["query_tokens"],
                   "attr_vocab_size": max(sizes["attrs"], 3),
                   "user_vocab_size": sizes["users"], "text_dim": table_stats["text_dim"],
                   "image_dim": table_stats["image_dim"], "title_tokens": title_tokens}
    with open(os.path.join(output, "data_config.json"), "w", encoding="utf-8") as f:
        json.dump(data_config, f, indent=2, sort_keys=True)
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


def _default_runner(beam_args: Sequence[str]):
    """The in-process portable runner unless --runner is given.

    Beam's "DirectRunner" first tries to download the Prism runner binary from the network;
    this project never downloads at run time, so the default is the FnApiRunner that
    DirectRunner falls back to (it honours --direct_num_workers / --direct_running_mode).
    """
    if any(a == "--runner" or a.startswith("--runner=") for a in beam_args):
        return None
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    return FnApiRunner()


def _default(input_dir: str, name: str) -> Optional[str]:
    path = os.path.join(input_dir, name)
    return path if os.path.exists(path) else None


def _setup_log(output: str) -> None:
    handler = logging.FileHandler(os.path.join(output, "beam.log"), mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    for name in ("beam_pipelines", "apache_beam"):
        lg = logging.getLogger(name)
        lg.handlers = [h for h in lg.handlers if not isinstance(h, logging.FileHandler)]
        lg.addHandler(handler)
        lg.setLevel(logging.INFO)
    logging.getLogger("apache_beam").propagate = False  # Beam's chatter goes to beam.log


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `seminar preprocess` flags (unknown flags are passed to Beam)."""
    parser.add_argument("--source", choices=SOURCES, required=True)
    parser.add_argument("--input", required=True, help="directory of raw files")
    parser.add_argument("--output", required=True, help="output directory")
    parser.add_argument("--max-seq-len", type=int, default=200)
    parser.add_argument("--max-query-tokens", type=int, default=6)
    parser.add_argument("--num-attrs", type=int, default=4)
    parser.add_argument("--min-count", type=int, default=1,
                        help="vocabulary frequency threshold")
    parser.add_argument("--min-target-time-ms", type=int, default=None)
    parser.add_argument("--split", choices=("loo", "time"), default="loo")
    parser.add_argument("--valid-start-ms", type=int, default=0)
    parser.add_argument("--test-start-ms", type=int, default=0)
    parser.add_argument("--neg-per-pos", type=int, default=None)
    parser.add_argument("--sampling", choices=("uniform", "popularity"), default="popularity")
    parser.add_argument("--num-candidates", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--text-vectors"), parser.add_argument("--text-ids")
    parser.add_argument("--image-vectors"), parser.add_argument("--image-ids")
    parser.add_argument("--multiprocess", action="store_true",
                        help="DirectRunner with one process per core")


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
               sampling=args.sampling, num_candidates=args.num_candidates, seed=args.seed,
               text_vectors=args.text_vectors, text_ids=args.text_ids,
               image_vectors=args.image_vectors, image_ids=args.image_ids,
               beam_args=beam_args)
