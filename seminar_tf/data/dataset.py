"""tf.data input pipeline over gzip TFRecord shards: self-contained contract Examples or the
sequence store (`seminar_tf.data.store`), the same batches from either."""
from __future__ import annotations

import os
from typing import Callable, Dict, List, Optional, Sequence, Union

import tensorflow as tf

from seminar_tf import storage
from seminar_tf.data import store
from seminar_tf.features import FeatureContract


def list_shards(pattern: Union[str, Sequence[str]]) -> List[str]:
    """Expands a glob, a directory + split prefix or a list of paths to sorted file names.

    Raises:
        FileNotFoundError: nothing matches, naming the pattern.
    """
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    files = sorted({f for p in patterns for f in (storage.glob(p) if any(
        ch in p for ch in "*?[") else ([p] if storage.exists(p) else []))})
    if not files:
        raise FileNotFoundError(f"no TFRecord shards match {patterns!r}")
    return files


def load_data_config(data_dir: str) -> Dict:
    """A preprocessed dataset's `data_config.json` (shapes and vocabulary sizes).

    Raises:
        UncommittedError: the directory is not a committed dataset (not preprocessed, or
            the job did not finish): a FileNotFoundError.
    """
    dataset_manifest(data_dir)
    return storage.read_json(os.path.join(data_dir, "data_config.json"))


def dataset_manifest(data_dir: str) -> Dict:
    """The dataset's commit manifest (`seminar_tf.storage`): the files a reader may read."""
    return storage.manifest(data_dir, "dataset",
                            hint=": run `seminar preprocess` (again) into it")


def dataset_contract(data_dir: str, max_seq_len: Optional[int] = None) -> FeatureContract:
    """The feature contract of a preprocessed dataset (its own L unless `max_seq_len`)."""
    dc = load_data_config(data_dir)
    return FeatureContract(max_seq_len or dc["max_seq_len"], dc["max_query_tokens"],
                           dc["num_attrs"], dc["item_vocab_size"], dc["query_vocab_size"],
                           dc["attr_vocab_size"], dc["user_vocab_size"])


def split_pattern(data_dir: str, split: str) -> List[str]:
    """The shard files of one split of a committed dataset directory, as its manifest lists
    them (either format: `{split}-*.tfrecord.gz` matches both Example shards and store
    target shards); files outside the manifest (another run's) are never read.

    Raises:
        UncommittedError: no commit manifest. FileNotFoundError: the split has no shards.
    """
    files = storage.listed(data_dir, f"{split}-*.tfrecord.gz", dataset_manifest(data_dir))
    if not files:
        raise FileNotFoundError(f"{data_dir} has no {split!r} shards")
    return files


def make_dataset(pattern: Union[str, Sequence[str]], contract: FeatureContract, *,
                 batch_size: int = 256, shuffle_buffer: int = 0, seed: int = 0,
                 repeat: bool = False, deterministic: bool = False,
                 drop_remainder: bool = False, num_shards: int = 1, shard_index: int = 0,
                 take: Optional[int] = None,
                 parse: Optional[Callable] = None) -> tf.data.Dataset:
    """Builds a batched, prefetched dataset of parsed feature dicts.

    Args:
        pattern: glob or list of gzip TFRecord files.
        contract: the feature contract used to parse (the same as serving).
        batch_size: examples per batch.
        shuffle_buffer: shuffle buffer size in examples; 0 keeps file order.
        seed: shuffle seed.
        repeat: repeat forever (for steps-based training).
        deterministic: keep a fixed order: shards are read one after another and the maps
            run in parallel but yield in order (tf.data's `deterministic=True`).
        drop_remainder: drop a final partial batch.
        num_shards, shard_index: read only every num_shards-th file (per-worker sharding).
        take: keep only the first `take` examples (after sharding, before shuffling).
        parse: the batch parser (default `contract.parse_examples`;
            `contract.parse_ranking_records` for the `candidate_lists` split). Sequence-store
            files are expanded by `seminar_tf.data.store` instead (the same output; the
            `candidate_lists` split gives (context, candidates) as parse_ranking_records).

    Returns:
        A `tf.data.Dataset` of what `parse` returns (dicts of `parse_examples`).
    """
    files = list_shards(pattern)
    from_store = store.is_store(files)
    if from_store:
        lists = os.path.basename(files[0]).startswith("candidate_lists-")
        if parse not in (None, contract.parse_examples, contract.parse_ranking_records):
            raise ValueError("a custom `parse` needs self-contained Examples "
                             "(preprocess with --format examples)")
    if num_shards > 1:
        files = files[shard_index::num_shards]
        if not files:
            raise ValueError(f"shard {shard_index} of {num_shards} has no files "
                             f"({len(list_shards(pattern))} shards in total)")
    parallel = tf.data.AUTOTUNE  # ordered when `deterministic` (tf.data keeps map order)
    cycle = 1 if deterministic else min(4, len(files))
    if from_store:
        ds = tf.data.Dataset.from_tensor_slices(
            (files, [store.timeline_file(f) for f in files]))
        ds = ds.interleave(lambda f, tl: store.shard_targets(
            f, tl, contract, lists, deterministic=deterministic), cycle_length=cycle,
            num_parallel_calls=parallel, deterministic=deterministic or None)
    else:
        ds = tf.data.Dataset.from_tensor_slices(files)
        ds = ds.interleave(lambda f: tf.data.TFRecordDataset(f, compression_type="GZIP"),
                           cycle_length=cycle, num_parallel_calls=parallel,
                           deterministic=deterministic or None)
    if take is not None:
        ds = ds.take(take)
    if shuffle_buffer:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    if from_store:
        if lists:
            ds = ds.padded_batch(batch_size, drop_remainder=drop_remainder)
            ds = ds.map(lambda b: store.finish_lists(contract, b), num_parallel_calls=parallel,
                        deterministic=deterministic or None)
        else:
            ds = ds.batch(batch_size, drop_remainder=drop_remainder)
            ds = ds.map(contract.finish, num_parallel_calls=parallel,
                        deterministic=deterministic or None)
        return store.prefetched(ds)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    ds = ds.map(parse or contract.parse_examples, num_parallel_calls=parallel,
                deterministic=deterministic or None)
    return store.prefetched(ds)


def write_tfrecords(path: str, examples) -> int:
    """Writes serialized Examples (or Example protos) to one gzip TFRecord file."""
    if storage.is_local(path):
        path = os.path.abspath(path)
    storage.makedirs(os.path.dirname(path))
    n = 0
    with tf.io.TFRecordWriter(path, options="GZIP") as w:
        for ex in examples:
            w.write(ex if isinstance(ex, bytes) else ex.SerializeToString())
            n += 1
    return n


def serialized_examples(data_dir: str, split: str, limit: Optional[int] = None):
    """Self-contained serialized Examples of one split, from either format, in file order
    (ranking records for `candidate_lists`): for export warmup, serving requests and checks.

    The store's targets are expanded with the dataset's own `max_seq_len`
    (`data_config.json`) and serialized by the contract.
    """
    import itertools
    files = list_shards(split_pattern(data_dir, split))
    if not store.is_store(files):
        ds = tf.data.TFRecordDataset(files, compression_type="GZIP")
        yield from (r.numpy() for r in (ds.take(limit) if limit is not None else ds))
        return
    contract = dataset_contract(data_dir)
    lists = split == "candidate_lists"
    targets = itertools.chain.from_iterable(
        store.shard_targets(f, store.timeline_file(f), contract, lists) for f in files)
    for t in itertools.islice(targets, limit):
        yield store.to_example(contract, {k: v.numpy() for k, v in t.items()})
