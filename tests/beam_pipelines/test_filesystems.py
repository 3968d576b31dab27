"""The Beam jobs on a non-local filesystem: a small in-memory Beam `FileSystem` under its own
scheme holds the input and receives the output, so any local-file shortcut fails."""
import io
import os
import threading

import numpy as np
import pytest
from apache_beam.io.filesystem import (BeamIOError, CompressedFile, CompressionTypes,
                                       FileMetadata, FileSystem, MatchResult)

from beam_pipelines import fileio

_FILES = {}
_LOCK = threading.Lock()


class _Writer(io.BytesIO):
    mode = "wb"  # read by Beam's CompressedFile

    def __init__(self, path):
        super().__init__()
        self.path = path

    def close(self):
        with _LOCK:
            _FILES[self.path] = self.getvalue()
        super().close()


class MemFileSystem(FileSystem):
    """Files in a process-wide dict, paths `memtest://...`."""

    @classmethod
    def scheme(cls):
        return "memtest"

    def join(self, basepath, *paths):
        return "/".join([basepath.rstrip("/")] + [p.strip("/") for p in paths])

    def split(self, path):
        head, _, tail = path.rpartition("/")
        return head, tail

    def mkdirs(self, path):
        pass

    def has_dirs(self):
        return False

    def _list(self, dir_or_prefix):
        for path, data in sorted(_FILES.items()):
            if path.startswith(dir_or_prefix):
                yield FileMetadata(path, len(data), 0.0)

    def match(self, patterns, limits=None):
        import fnmatch
        out = []
        for pattern in patterns:
            found = [FileMetadata(p, len(d), 0.0) for p, d in sorted(_FILES.items())
                     if fnmatch.fnmatchcase(p, pattern) or p == pattern]
            out.append(MatchResult(pattern, found))
        return out

    def _compressed(self, f, path, mime_type, compression_type):
        if compression_type == CompressionTypes.AUTO:
            compression_type = CompressionTypes.detect_compression_type(path)
        if compression_type == CompressionTypes.UNCOMPRESSED:
            return f
        return CompressedFile(f, compression_type)

    def create(self, path, mime_type="application/octet-stream",
               compression_type=CompressionTypes.AUTO):
        return self._compressed(_Writer(path), path, mime_type, compression_type)

    def open(self, path, mime_type="application/octet-stream",
             compression_type=CompressionTypes.AUTO):
        if path not in _FILES:
            raise BeamIOError(f"no such file {path}")
        return self._compressed(_Reader(_FILES[path]), path, mime_type, compression_type)

    def copy(self, source_file_names, destination_file_names):
        for s, d in zip(source_file_names, destination_file_names):
            _FILES[d] = _FILES[s]

    def rename(self, source_file_names, destination_file_names):
        for s, d in zip(source_file_names, destination_file_names):
            _FILES[d] = _FILES.pop(s)

    def exists(self, path):
        return path in _FILES or any(p.startswith(path.rstrip("/") + "/") for p in _FILES)

    def size(self, path):
        return len(_FILES[path])

    def last_updated(self, path):
        return 0.0

    def checksum(self, path):
        return str(len(_FILES[path]))

    def metadata(self, path):
        return FileMetadata(path, len(_FILES[path]), 0.0)

    def delete(self, paths):
        for p in paths:
            for k in [k for k in _FILES if k == p or k.startswith(p.rstrip("/") + "/")]:
                del _FILES[k]


class _Reader(io.BytesIO):
    mode = "rb"


def _upload(local_dir, remote_dir):
    for name in os.listdir(local_dir):
        with open(os.path.join(local_dir, name), "rb") as f:
            _FILES[f"{remote_dir}/{name}"] = f.read()


@pytest.fixture
def memfs():
    _FILES.clear()
    yield _FILES
    _FILES.clear()


def test_preprocess_reads_and_writes_only_through_beam_filesystems(memfs, tmp_path):
    from beam_pipelines import pipeline
    from seminar_tf.data import synthetic
    local = str(tmp_path / "raw")
    synthetic.generate(local, synthetic.SyntheticConfig(num_users=12, num_items=80,
                                                        seq_len=30, seed=5))
    _upload(local, "memtest://bucket/raw")
    stats = pipeline.run("kuaisar", "memtest://bucket/raw", "memtest://bucket/out",
                         max_seq_len=10, num_candidates=8, shards=2)
    assert stats["events"] > 0 and stats["item_table"]["items_with_text"] > 0
    names = {p.rsplit("/", 1)[1] for p in memfs if p.startswith("memtest://bucket/out/")}
    for name in ("stats.json", "data_config.json", "item_table.npz", "items.txt",
                 "timelines-00000-of-00002.tfrecord.gz",
                 "train-00001-of-00002.targets.tfrecord.gz"):
        assert name in names, sorted(names)
    # the job's parts (vocabulary slices, item table buckets) were joined and removed
    assert not [p for p in memfs if ".parts/" in p]
    # nothing leaked to the local working directory
    assert not os.path.exists("memtest:")
    table = np.load(io.BytesIO(memfs["memtest://bucket/out/item_table.npz"]))
    assert table["text"].shape[0] == stats["vocab_sizes"]["items"]


def test_codebook_job_on_a_beam_filesystem(memfs):
    from beam_pipelines import codebooks
    parts = np.random.default_rng(0).normal(size=(300, 2, 8)).astype(np.float32)
    fileio.save_npy("memtest://pq/key_parts.npy", parts)
    from seminar_tf.config import PQConfig
    quantizer, codes = codebooks.run(
        "memtest://pq/key_parts.npy", "memtest://pq/out", PQConfig(
            num_subspaces=2, num_codewords=8, kmeans_iters=3, sample_size=200,
            combine_parts=False, whiten=False), chunk=64)
    books = quantizer.codebooks
    assert codes.shape == (300, 4, 1)  # rq: 2 parts x 2 stages
    np.testing.assert_array_equal(fileio.load_npy("memtest://pq/out/item_codes.npy"), codes)
    np.testing.assert_array_equal(fileio.load_npy("memtest://pq/out/codebooks.npy"), books)
    assert not [p for p in memfs if "codes-" in p]  # chunk files removed


def test_npy_rows_read_only_the_rows(memfs):
    a = np.arange(60, dtype=np.float32).reshape(10, 3, 2)
    fileio.save_npy("memtest://x/a.npy", a)
    assert fileio.npy_shape("memtest://x/a.npy") == ((10, 3, 2), np.dtype(np.float32))
    np.testing.assert_array_equal(fileio.load_npy_rows("memtest://x/a.npy", 3, 7), a[3:7])
