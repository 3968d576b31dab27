"""File access through Beam's `FileSystems`: local paths, `gs://`, `s3://` or any registered
Beam filesystem, for every file the Beam jobs read or write (no local-only shortcuts)."""
from __future__ import annotations

import json
from typing import List, Tuple

import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from beam_pipelines import tf_filesystem  # noqa: F401  (registers ram:// for Beam)
from seminar_tf import storage

join = FileSystems.join
STAGING = "_staging"
UNLISTED = ("beam.log",)  # moved with the output, not part of it (still being appended to)


def exists(path: str) -> bool:
    return FileSystems.exists(path)


def makedirs(path: str) -> None:
    """Creates a directory (a no-op on filesystems without directories, or if it exists)."""
    try:
        FileSystems.mkdirs(path)
    except IOError:
        if not FileSystems.exists(path):
            raise


def is_local(path: str) -> bool:
    return FileSystems.get_scheme(path) in (None, "file")


def open_read(path: str):
    """A binary reader, not decompressed (callers decide on `.gz`)."""
    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def read_bytes(path: str) -> bytes:
    with open_read(path) as f:
        return f.read()


def read_text(path: str) -> str:
    return read_bytes(path).decode("utf-8")


def read_json(path: str):
    return json.loads(read_text(path))


def create(path: str):
    """A binary writer (not compressed)."""
    return FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED)


def write_bytes(path: str, data: bytes) -> None:
    with create(path) as f:
        f.write(data)


def write_json(path: str, obj) -> None:
    write_bytes(path, json.dumps(obj, indent=2, sort_keys=True).encode("utf-8"))


def size(path: str) -> int:
    return FileSystems.match([path])[0].metadata_list[0].size_in_bytes


def glob(pattern: str) -> List[str]:
    return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)


def delete(paths: List[str]) -> None:
    if paths:
        FileSystems.delete(paths)


def delete_tree(path: str) -> None:
    """Deletes a directory (or, on filesystems without directories, a prefix) if present."""
    if FileSystems.exists(path):
        FileSystems.delete([path])


def load_npy(path: str) -> np.ndarray:
    return storage.npy_from_bytes(read_bytes(path))


def save_npy(path: str, array: np.ndarray) -> None:
    write_bytes(path, storage.npy_bytes(array))


def save_npz(path: str, **arrays) -> None:
    write_bytes(path, storage.npz_bytes(**arrays))


def npy_shape(path: str) -> Tuple[Tuple[int, ...], np.dtype]:
    """(shape, dtype) of a `.npy` file from its header only."""
    with open_read(path) as f:
        shape, _, dtype = _header(f)
    return shape, dtype


def load_npy_rows(path: str, start: int, end: int) -> np.ndarray:
    """Rows `[start, end)` of a C-ordered `.npy` file, reading only those bytes."""
    with open_read(path) as f:
        shape, fortran, dtype = _header(f)
        if fortran:
            raise ValueError(f"{path}: Fortran-ordered arrays are not supported")
        row = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        f.seek(f.tell() + start * row)
        data = f.read((end - start) * row)
    return np.frombuffer(data, dtype).reshape((end - start,) + tuple(shape[1:])).copy()


def _header(f):
    version = np.lib.format.read_magic(f)
    read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
            else np.lib.format.read_array_header_2_0)
    return read(f)


def tree(directory: str) -> List[Tuple[str, int]]:
    """(path relative to `directory`, size) of every file under it."""
    root = directory.rstrip("/")
    found = FileSystems.match([root + "/**"])[0].metadata_list
    return sorted((m.path[len(root) + 1:], m.size_in_bytes) for m in found
                  if m.path.startswith(root + "/"))


def commit_staging(output: str, kind: str, **extra) -> None:
    """Publishes `output/_staging/` whole: moves every file up into `output`, writes the
    `_SUCCESS` manifest (`seminar_tf.storage`) listing them, then removes the staging area.

    A reader reads only what a manifest lists and refuses an output without one, so a job
    killed at any point before the manifest leaves nothing it picks up; `_staging/` left
    behind marks the debris that the next run clears (`prepare_output`)."""
    staging = join(output, STAGING)
    files = tree(staging)
    for rel, _ in files:
        makedirs(join(output, *rel.split("/")[:-1]) if "/" in rel else output)
    if files:
        FileSystems.rename([join(staging, rel) for rel, _ in files],
                           [join(output, rel) for rel, _ in files])
    listed = {rel: n for rel, n in files if rel not in UNLISTED}
    write_bytes(join(output, storage.MANIFEST), storage.manifest_bytes(kind, listed, **extra))
    delete_tree(staging)


def prepare_output(output: str, overwrite: bool, log=None) -> str:
    """Clears the way for a run into `output` and returns its (empty) staging directory.

    A published output (a manifest) or foreign files are refused unless `overwrite`
    (replaced whole); the debris of a failed run (a staging area, no manifest) is cleared.

    Raises:
        FileExistsError: `output` holds files and `overwrite` is off.
    """
    entries = glob(join(output, "*"))
    debris = exists(join(output, STAGING)) and not exists(join(output, storage.MANIFEST))
    if entries or debris:
        if not (overwrite or debris):
            raise FileExistsError(
                f"output {output} already holds files (an earlier run?): two runs' shards "
                "would mix; choose another --output or pass --overwrite to replace it whole")
        if log is not None:
            log("clearing %s (%s)", output, "a failed run's debris" if debris else
                "--overwrite")
        delete_tree(output)
    staging = join(output, STAGING)
    makedirs(staging)
    return staging
