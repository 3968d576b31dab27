"""The model manager: which version of `<base>/<name>/<version>/` is served, and when it
changes.

Policy (TF Serving's "latest" policy, made safe against half-copied directories):
- a version directory committed by `seminar export` (`_SUCCESS`, `seminar_tf.storage`) is a
  candidate once every file its manifest lists is present with its size: at once after a
  local rename, and only after the last file of a file-by-file copy to object storage;
- a SavedModel written by another tool (no manifest) is a candidate once it holds
  `saved_model.pb` (and, where it has a `variables/` folder, `variables/variables.index`)
  and its files (names, sizes, mtimes) have stayed unchanged for `settle_seconds`;
- every path goes through `tf.io.gfile` (local disk, gs://, ram://);
- the newest candidate is loaded and warmed up (its `assets.extra/tf_serving_warmup_requests`
  replayed) before it replaces the served version;
- a version that fails to load is remembered with the fingerprint of its files and retried
  as soon as they change (a fixed copy is picked up without a restart);
- requests hold the version they started with (`acquire`); a replaced version is released
  only after its in-flight requests finished.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from typing import Dict, Iterator, List, Optional, Tuple

import grpc
import tensorflow as tf

from seminar_tf import storage
from serving.errors import RequestError

LOG = logging.getLogger("serving")
VERSION_RE = storage.VERSION_RE  # a version folder: ASCII digits only
Fingerprint = Tuple[Tuple[str, int, int], ...]


class LoadedModel:
    """One loaded version: its signatures, their input specs and SignatureDefs."""

    def __init__(self, name: str, version: int, path: str):
        from tensorflow.python.saved_model import loader_impl
        self.name, self.version, self.path = name, version, path
        self.module = tf.saved_model.load(path)
        self.signatures = dict(self.module.signatures)
        saved = loader_impl.parse_saved_model(path)
        self.signature_defs = dict(saved.meta_graphs[0].signature_def)
        self.input_specs = {k: f.structured_input_signature[1]
                            for k, f in self.signatures.items()}
        self._inflight = 0
        self._idle = threading.Condition()

    def warmup(self) -> int:
        """Replays `assets.extra/tf_serving_warmup_requests`; returns the number replayed."""
        from tensorflow_serving.apis import prediction_log_pb2

        from serving.codec import run_predict
        path = os.path.join(self.path, "assets.extra", "tf_serving_warmup_requests")
        if not storage.exists(path):
            return 0
        n = 0
        for raw in tf.data.TFRecordDataset(path):
            log = prediction_log_pb2.PredictionLog.FromString(raw.numpy())
            if log.WhichOneof("log_type") != "predict_log":
                continue
            run_predict(self, log.predict_log.request)
            n += 1
        return n

    def enter(self) -> None:
        with self._idle:
            self._inflight += 1

    def leave(self) -> None:
        with self._idle:
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Blocks until no request uses this version; False when `timeout` ran out first."""
        with self._idle:
            return self._idle.wait_for(lambda: self._inflight == 0, timeout)


def fingerprint(path: str) -> Fingerprint:
    """(relative path, size, mtime ns) of every file below `path`, sorted."""
    g, out = tf.io.gfile, []
    root = path.rstrip("/")
    for d, _, files in g.walk(root):
        for f in files:
            p = os.path.join(d, f)
            try:
                st = g.stat(p)
            except tf.errors.NotFoundError:  # removed while walking: the next poll sees it
                continue
            out.append((p[len(root) + 1:], int(st.length), int(st.mtime_nsec)))
    return tuple(sorted(out))


def looks_complete(path: str) -> bool:
    """The files a SavedModel needs before anyone should try to load it."""
    if not storage.exists(os.path.join(path, "saved_model.pb")):
        return False
    variables = os.path.join(path, "variables")
    return not storage.isdir(variables) or storage.exists(
        os.path.join(variables, "variables.index"))


def committed(path: str) -> Optional[bool]:
    """True: the export's manifest holds; False: it has one that does not hold (yet);
    None: no manifest (a SavedModel from another tool)."""
    if not storage.exists(os.path.join(path, storage.MANIFEST)):
        return None
    try:
        storage.manifest(path, "export")
    except (storage.UncommittedError, tf.errors.OpError):
        return False
    return True


class ModelManager:
    """Polls `<base>/<name>` and serves the newest settled version; swaps atomically.

    Args:
        base: the model base path.
        name: the model name (a subfolder of `base`).
        poll_seconds: how often the base path is scanned.
        settle_seconds: how long a version's files must stay unchanged before it is loaded.
        drain_seconds: how long an unloaded version waits for its in-flight requests.
    """

    def __init__(self, base: str, name: str, poll_seconds: float = 2.0,
                 settle_seconds: float = 1.0, drain_seconds: float = 60.0):
        self.base, self.name, self.poll_seconds = base, name, poll_seconds
        self.settle_seconds, self.drain_seconds = settle_seconds, drain_seconds
        self._current: Optional[LoadedModel] = None
        self._lock = threading.Lock()
        self._poll_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._seen: Dict[int, Tuple[Fingerprint, float]] = {}
        self.failed: Dict[int, Tuple[Fingerprint, str]] = {}
        self.unloaded: List[int] = []
        self._skipped: set = set()

    @property
    def load_errors(self) -> Dict[int, str]:
        """Version -> the error of its last failed load (retried when its files change)."""
        return {v: err for v, (_, err) in self.failed.items()}

    def versions_on_disk(self) -> List[int]:
        d = os.path.join(self.base, self.name)
        if not storage.isdir(d):
            return []
        versions = []
        for v in storage.listdir(d):
            if VERSION_RE.fullmatch(v):
                versions.append(int(v))
            elif v not in self._skipped and storage.isdir(os.path.join(d, v)) \
                    and not v.startswith("."):
                self._skipped.add(v)  # logged once: e.g. "²" (isdigit) or "v2"
                LOG.warning(json.dumps({"event": "version_folder_skipped", "model": self.name,
                                        "folder": v, "reason": "not ASCII digits"}))
        return sorted(versions)

    def _settled(self, version: int, path: str, now: float) -> Optional[Fingerprint]:
        """The version's fingerprint once it is committed, or (without a manifest) complete
        and unchanged long enough."""
        state = committed(path)
        if state is True:
            return fingerprint(path)
        if state is False or not looks_complete(path):
            self._seen.pop(version, None)
            return None
        fp = fingerprint(path)
        seen = self._seen.get(version)
        if seen is None:
            # files untouched for settle_seconds already (e.g. found at start-up) count; the
            # newest mtime is padded by 1 s, as filesystems (and gfile's local stat) may
            # keep whole seconds only
            newest = max((m for _, _, m in fp), default=0) / 1e9
            seen = self._seen[version] = (fp, min(now, newest + 1.0) if newest else now)
        elif seen[0] != fp:  # changed since the last poll: the settle time starts now
            seen = self._seen[version] = (fp, now)
        return fp if now - seen[1] >= self.settle_seconds else None

    def poll_once(self) -> bool:
        """Loads a newer settled version if there is one; returns True when a swap happened."""
        with self._poll_lock:
            return self._poll()

    def _poll(self) -> bool:
        now = time.time()
        cur = self._current
        for version in reversed(self.versions_on_disk()):
            if cur is not None and version == cur.version:
                return False
            path = os.path.join(self.base, self.name, str(version))
            fp = self._settled(version, path, now)
            if fp is None:
                continue  # still arriving (or incomplete): an older version may serve
            if version in self.failed and self.failed[version][0] == fp:
                continue  # failed with exactly these files: wait until they change
            if self._load(version, path, fp):
                return True
        return False

    def _load(self, version: int, path: str, fp: Fingerprint) -> bool:
        t0 = time.time()
        try:
            model = LoadedModel(self.name, version, path)
            warm = model.warmup()
        except Exception as e:  # a broken version must not take the server down: logged,
            # kept in `failed` with its fingerprint and retried when its files change
            self.failed[version] = (fp, f"{type(e).__name__}: {str(e)[:500]}")
            LOG.error(json.dumps({"event": "load_failed", "model": self.name,
                                  "version": version, "error": str(e)[:500]}))
            return False
        self.failed.pop(version, None)
        with self._lock:
            old, self._current = self._current, model
        LOG.info(json.dumps({"event": "version_loaded", "model": self.name,
                             "version": version, "warmup_requests": warm,
                             "seconds": round(time.time() - t0, 2),
                             "replaces": old.version if old else None}))
        if old is not None:
            threading.Thread(target=self._unload, args=(old,), daemon=True,
                             name=f"unload-{old.version}").start()
        return True

    def _unload(self, model: LoadedModel) -> None:
        drained = model.wait_idle(self.drain_seconds)
        self.unloaded.append(model.version)
        LOG.info(json.dumps({"event": "version_unloaded", "model": self.name,
                             "version": model.version, "drained": drained}))

    def start(self) -> "ModelManager":
        try:  # the first poll as guarded as the others: the server starts and keeps polling
            self.poll_once()
        except Exception:
            LOG.exception("first version poll failed; retrying at the next poll")
        self._thread = threading.Thread(target=self._loop, name="version-poller", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll_once()
            except Exception:  # the poller must survive e.g. a base path on a flaky mount
                LOG.exception("version poll failed; retrying at the next poll")

    def stop(self) -> None:
        self._stop.set()

    @property
    def current(self) -> Optional[LoadedModel]:
        return self._current

    def get(self, name: str, version: Optional[int] = None) -> LoadedModel:
        """The served model for (name, version), or NOT_FOUND / UNAVAILABLE."""
        if name != self.name:
            raise RequestError(grpc.StatusCode.NOT_FOUND,
                               f"Servable not found for request: Latest({name})")
        cur = self._current
        if cur is None:
            raise RequestError(grpc.StatusCode.UNAVAILABLE, f"model {name} has no loaded version")
        if version is not None and version != cur.version:
            raise RequestError(grpc.StatusCode.NOT_FOUND,
                               f"Servable not found for request: Specific({name}, {version})")
        return cur

    @contextlib.contextmanager
    def acquire(self, name: str, version: Optional[int] = None) -> Iterator[LoadedModel]:
        """The served model, held (not unloaded) until the block ends."""
        with self._lock:
            model = self.get(name, version)
            model.enter()
        try:
            yield model
        finally:
            model.leave()

    def status(self, name: str, version: Optional[int]):
        """GetModelStatusResponse for the served version (NOT_FOUND otherwise)."""
        from tensorflow_serving.apis import get_model_status_pb2 as s
        if name != self.name:
            raise RequestError(grpc.StatusCode.NOT_FOUND,
                               f"Could not find any versions of model {name}")
        resp = s.GetModelStatusResponse()
        cur = self._current
        if version is not None and (cur is None or version != cur.version):
            raise RequestError(grpc.StatusCode.NOT_FOUND,
                               f"Could not find version {version} of model {name}")
        if cur is not None:
            st = resp.model_version_status.add()
            st.version = cur.version
            st.state = s.ModelVersionStatus.AVAILABLE
            st.status.error_code = 0
        return resp
