"""Files through `tf.io.gfile` (local paths, `gs://`, `ram://`, any TensorFlow filesystem)
and the commit manifest that publishes an output whole.

A directory a reader could see half-written (a dataset, a model directory, codebooks, an
export) is committed by writing `_SUCCESS` last: a JSON manifest of its `kind`, every file
(path relative to the directory -> size in bytes) and the writer's extra fields. Readers
call `manifest(directory, kind)` and read only what it lists: no manifest, or a listed file
missing or of another size, is `UncommittedError` naming the directory. Single files are
written to a temporary name and renamed (`write_bytes`): atomic on local disk, and a
single-object write on object storage.

See docs/design.md, "Outputs published whole".
"""
from __future__ import annotations

import fnmatch
import hashlib
import io
import json
import os
import re
import time
import uuid
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np

MANIFEST = "_SUCCESS"
# a served version folder: ASCII digits only, as TF Serving reads them ("²".isdigit() is True)
VERSION_RE = re.compile(r"[0-9]{1,18}")


class UncommittedError(FileNotFoundError):
    """An output without a (valid) commit manifest: unfinished, killed or foreign."""


def _gfile():
    import tensorflow as tf
    return tf.io.gfile


def join(*parts: str) -> str:
    return os.path.join(*parts)


def is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def exists(path: str) -> bool:
    return _gfile().exists(path)


def isdir(path: str) -> bool:
    return _gfile().isdir(path)


def makedirs(path: str) -> None:
    _gfile().makedirs(path)


def listdir(path: str) -> List[str]:
    return sorted(p.rstrip("/") for p in _gfile().listdir(path))


def glob(pattern: str) -> List[str]:
    return sorted(_gfile().glob(pattern))


def size(path: str) -> int:
    return int(_gfile().stat(path).length)


def rmtree(path: str) -> None:
    """Deletes a directory tree or a file, if present."""
    import tensorflow as tf
    g = _gfile()
    if g.isdir(path):
        try:
            g.rmtree(path)
        except tf.errors.NotFoundError:
            # TF's ram:// lists a sibling `a.extra` as a child `.extra` of `a`, which stops
            # a recursive delete: remove the directories deepest and longest-named first
            for d in sorted((d for d, _, _ in g.walk(path)), reverse=True):
                if g.isdir(d):
                    g.rmtree(d)
    elif g.exists(path):
        g.remove(path)


def remove(path: str) -> None:
    if exists(path):
        _gfile().remove(path)


def read_bytes(path: str) -> bytes:
    with _gfile().GFile(path, "rb") as f:
        return f.read()


def read_text(path: str) -> str:
    return read_bytes(path).decode("utf-8")


def read_json(path: str):
    return json.loads(read_text(path))


def write_bytes(path: str, data: bytes) -> None:
    """Writes `path` whole: a temporary sibling, then a rename over the final name."""
    g = _gfile()
    parent = os.path.dirname(path)
    if parent:
        g.makedirs(parent)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:12]}"
    try:
        with g.GFile(tmp, "wb") as f:
            f.write(data)
        g.rename(tmp, path, overwrite=True)
    finally:
        if g.exists(tmp):
            g.remove(tmp)


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str, obj, *, sort_keys: bool = False) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=sort_keys))


def append_text(path: str, text: str) -> None:
    """Appends to a log file (local: an append; elsewhere: read, extend, rewrite)."""
    if is_local(path):
        with open(path, "a", encoding="utf-8") as f:
            f.write(text)
        return
    old = read_text(path) if exists(path) else ""
    write_text(path, old + text)


# .npy / .npz as bytes: shared with the Beam side (`beam_pipelines.fileio`), which moves
# the bytes through Beam's FileSystems instead of gfile
def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def npy_from_bytes(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def load_npy(path: str) -> np.ndarray:
    return npy_from_bytes(read_bytes(path))


def load_npz(path: str) -> Dict[str, np.ndarray]:
    with np.load(io.BytesIO(read_bytes(path)), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def save_npy(path: str, array: np.ndarray) -> None:
    write_bytes(path, npy_bytes(array))


def save_npz(path: str, **arrays) -> None:
    write_bytes(path, npz_bytes(**arrays))


def tree_files(directory: str) -> Dict[str, int]:
    """Every file under `directory`: relative path -> size."""
    import tensorflow as tf
    g, out = _gfile(), {}
    root = directory.rstrip("/")
    for d, _, files in g.walk(root):
        for name in files:
            p = join(d, name)
            try:
                n = size(p)
            except tf.errors.NotFoundError:  # ram:// lists sibling `a.extra` in `a` as
                continue  # `.extra`: not a file
            out[os.path.relpath(p, root) if is_local(root) else p[len(root) + 1:]] = n
    return out


def move_tree(src: str, dst: str, *, last: Sequence[str] = ()) -> None:
    """Moves every file of `src` under `dst` (created), the names in `last` after the rest,
    then removes `src`. Renames file by file: directory renames are not portable across
    filesystems (`ram://` renames only the entry, object stores copy)."""
    g = _gfile()
    files = sorted(tree_files(src), key=lambda rel: (rel in last, rel))
    for rel in files:
        target = join(dst, rel)
        g.makedirs(os.path.dirname(target))
        g.rename(join(src, rel), target, overwrite=True)
    rmtree(src)


def copy_tree(src: str, dst: str) -> None:
    """Copies every file of `src` under `dst` (overwriting), `_SUCCESS` last."""
    g = _gfile()
    for rel in sorted(tree_files(src), key=lambda rel: (rel == MANIFEST, rel)):
        target = join(dst, rel)
        g.makedirs(os.path.dirname(target))
        g.copy(join(src, rel), target, overwrite=True)


# ----------------------------------------------------------------------------- manifests
def manifest_bytes(kind: str, files: Dict[str, int], **extra) -> bytes:
    """The `_SUCCESS` body: kind, files (relative path -> size), commit time, `extra`."""
    body = {"kind": kind, "committed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "files": dict(sorted(files.items())), **extra}
    return json.dumps(body, indent=2, sort_keys=True).encode("utf-8")


def commit(directory: str, kind: str, *, exclude: Iterable[str] = (), **extra) -> Dict:
    """Writes `directory/_SUCCESS` listing every file under it but the `exclude` patterns
    (relative, fnmatch); returns the manifest."""
    exclude = tuple(exclude)
    files = {rel: n for rel, n in tree_files(directory).items() if rel != MANIFEST and not any(
        fnmatch.fnmatchcase(rel, p) for p in exclude)}
    body = manifest_bytes(kind, files, **extra)
    write_bytes(join(directory, MANIFEST), body)
    return json.loads(body)


def uncommit(directory: str) -> None:
    """Removes the manifest: readers refuse the directory until the next `commit`."""
    remove(join(directory, MANIFEST))


def is_committed(directory: str) -> bool:
    return exists(join(directory, MANIFEST))


def manifest(directory: str, kind: Optional[str] = None, *, check_sizes: bool = True,
             hint: str = "") -> Dict:
    """The committed manifest of `directory`.

    Args:
        kind: the expected kind ("dataset", "model", "codebooks", "export").
        check_sizes: every listed file must exist with its listed size.
        hint: appended to the error (what to run to produce the output).

    Raises:
        UncommittedError: no `_SUCCESS`, another kind, or a listed file missing / resized.
    """
    path = join(directory, MANIFEST)
    what = kind or "output"
    if not exists(path):
        raise UncommittedError(
            f"{directory} is not a committed {what} (no {MANIFEST}: the job that writes it did "
            f"not finish, was killed, or it was written by something else){hint}")
    try:
        m = read_json(path)
    except ValueError as e:
        raise UncommittedError(f"{path} is not a valid manifest: {e}") from e
    if kind is not None and m.get("kind") != kind:
        raise UncommittedError(f"{directory} holds a {m.get('kind')!r}, not a {kind!r}")
    if check_sizes:
        for rel, n in m.get("files", {}).items():
            p = join(directory, rel)
            if not exists(p) or size(p) != n:
                raise UncommittedError(
                    f"{directory}: {rel} listed in {MANIFEST} is missing or has changed "
                    f"(expected {n} bytes): the output was modified after its commit{hint}")
    return m


def listed(directory: str, pattern: str, m: Optional[Dict] = None) -> List[str]:
    """Full paths of the manifest's files matching `pattern` (relative, fnmatch)."""
    m = m if m is not None else manifest(directory)
    return [join(directory, rel) for rel in sorted(m["files"])
            if fnmatch.fnmatchcase(rel, pattern)]


def content_fingerprint(paths: Iterable[str]) -> str:
    """sha256 over the names' basenames and bytes of `paths` (sorted)."""
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(os.path.basename(p).encode("utf-8") + b"\0")
        with _gfile().GFile(p, "rb") as f:
            while True:
                chunk = f.read(1 << 22)
                if not chunk:
                    break
                h.update(chunk)
    return h.hexdigest()
