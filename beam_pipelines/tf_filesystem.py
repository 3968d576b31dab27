"""A Beam `FileSystem` for TensorFlow's `ram://` scheme that delegates to `tf.io.gfile`.

With it, the Beam jobs and the TensorFlow side (training, evaluation, export, serving) share
one non-local filesystem inside a process, so a test can run the whole pipeline off local
disk and any `open()` / `os.*` shortcut fails. Registered by importing this module (Beam
finds `FileSystem` subclasses by scheme); TensorFlow is imported on first use only.
"""
from __future__ import annotations

import fnmatch

from apache_beam.io.filesystem import (BeamIOError, CompressedFile, CompressionTypes,
                                       FileMetadata, FileSystem, MatchResult)


def _gfile():
    import tensorflow as tf
    return tf.io.gfile


class TFGFileSystem(FileSystem):
    """`ram://...` paths through `tf.io.gfile` (process-local memory)."""

    @classmethod
    def scheme(cls):
        return "ram"

    def join(self, basepath, *paths):
        return "/".join([basepath.rstrip("/")] + [p.strip("/") for p in paths])

    def split(self, path):
        head, _, tail = path.rstrip("/").rpartition("/")
        return head, tail

    def mkdirs(self, path):
        _gfile().makedirs(path)

    def has_dirs(self):
        return True

    def _files_under(self, root):
        g = _gfile()
        if not g.isdir(root):
            return
        for d, _, files in g.walk(root):
            for name in files:
                p = self.join(d, name)
                if g.exists(p):  # ram:// lists a sibling `a.extra` in `a` as `.extra`
                    yield p

    def _list(self, dir_or_prefix):
        for p in self._files_under(dir_or_prefix):
            yield self.metadata(p)

    def match(self, patterns, limits=None):
        g, out = _gfile(), []
        for pattern in patterns:
            if "**" in pattern:
                root = pattern.split("**", 1)[0].rstrip("/")
                found = [p for p in self._files_under(root) if fnmatch.fnmatchcase(p, pattern)]
            else:
                found = [p for p in g.glob(pattern) if not g.isdir(p)]
            out.append(MatchResult(pattern, [self.metadata(p) for p in sorted(found)]))
        return out

    @staticmethod
    def _compressed(f, path, compression_type):
        if compression_type == CompressionTypes.AUTO:
            compression_type = CompressionTypes.detect_compression_type(path)
        if compression_type == CompressionTypes.UNCOMPRESSED:
            return f
        return CompressedFile(f, compression_type)

    def create(self, path, mime_type="application/octet-stream",
               compression_type=CompressionTypes.AUTO):
        g = _gfile()
        g.makedirs(self.split(path)[0])
        return self._compressed(_Writable(g.GFile(path, "wb")), path, compression_type)

    def open(self, path, mime_type="application/octet-stream",
             compression_type=CompressionTypes.AUTO):
        if not _gfile().exists(path):
            raise BeamIOError(f"no such file {path}")
        return self._compressed(_gfile().GFile(path, "rb"), path, compression_type)

    def copy(self, source_file_names, destination_file_names):
        for s, d in zip(source_file_names, destination_file_names):
            _gfile().copy(s, d, overwrite=True)

    def rename(self, source_file_names, destination_file_names):
        g = _gfile()
        for s, d in zip(source_file_names, destination_file_names):
            g.makedirs(self.split(d)[0])
            g.rename(s, d, overwrite=True)

    def exists(self, path):
        return _gfile().exists(path)

    def size(self, path):
        return int(_gfile().stat(path).length)

    def last_updated(self, path):
        return _gfile().stat(path).mtime_nsec / 1e9

    def checksum(self, path):
        return str(self.size(path))

    def metadata(self, path):
        st = _gfile().stat(path)
        return FileMetadata(path, int(st.length), st.mtime_nsec / 1e9)

    def delete(self, paths):
        g = _gfile()
        for p in paths:
            if g.isdir(p):
                g.rmtree(p)
            elif g.exists(p):
                g.remove(p)
            else:
                raise BeamIOError(f"delete: no such file {p}")


class _Writable:
    """A GFile writer with the `mode` attribute Beam's `CompressedFile` reads."""

    mode = "wb"

    def __init__(self, f):
        self._f = f
        f.write(b"")  # GFile creates its file on the first write: an empty one must exist too

    def write(self, data):
        self._f.write(data)

    def flush(self):
        self._f.flush()

    def close(self):
        self._f.close()

    @property
    def closed(self):
        return False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
