"""Version management: failed versions retried when their files change, half-copied versions
never served (nor even loaded: the commit manifest of `seminar export`, or for SavedModels
from other tools the settle guard, not TensorFlow's refusal, keeps them out), replaced
versions unloaded only after their in-flight requests."""
import os
import shutil
import time

import numpy as np

from seminar_tf import storage
from serving.models import ModelManager

NAME = "seminar"


def _good(trained):
    return os.path.join(trained[1], NAME, "1")


def _count_loads(manager, monkeypatch):
    """The versions `manager` tries to load, in order (its loads still happen)."""
    loads = []
    real_load = manager._load
    monkeypatch.setattr(manager, "_load",
                        lambda v, p, fp: loads.append(v) or real_load(v, p, fp))
    return loads


def _poll_until(manager, pred, seconds=30.0):
    deadline = time.time() + seconds
    while time.time() < deadline:
        manager.poll_once()
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_failed_version_is_retried_when_its_files_change(trained, tmp_path):
    base = tmp_path / "models"
    shutil.copytree(_good(trained), base / NAME / "1")
    broken = base / NAME / "2"
    shutil.copytree(_good(trained), broken)
    (broken / storage.MANIFEST).unlink()  # a SavedModel copied in by another tool
    (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
    m = ModelManager(str(base), NAME, settle_seconds=0.2)
    assert _poll_until(m, lambda: m.current is not None and 2 in m.failed)
    assert m.current.version == 1
    for _ in range(5):  # same files: not retried (no reload loop)
        m.poll_once()
    assert m.current.version == 1 and 2 in m.failed
    shutil.copy(os.path.join(_good(trained), "saved_model.pb"), broken / "saved_model.pb")
    assert _poll_until(m, lambda: m.current.version == 2)
    assert 2 not in m.failed


def test_half_copied_version_is_never_served(trained, tmp_path):
    base = tmp_path / "models"
    shutil.copytree(_good(trained), base / NAME / "1")
    src, dst = _good(trained), base / NAME / "2"
    m = ModelManager(str(base), NAME, settle_seconds=0.3)
    m.poll_once()
    assert m.current.version == 1
    # the copy arrives file by file; the variables' data file is cut short for a while
    os.makedirs(dst / "variables")
    shutil.copy(os.path.join(src, "saved_model.pb"), dst / "saved_model.pb")
    _poll_until(m, lambda: False, seconds=0.5)
    assert m.current.version == 1
    shutil.copy(os.path.join(src, "variables", "variables.index"), dst / "variables")
    data = [f for f in os.listdir(os.path.join(src, "variables")) if "data" in f]
    for f in data:
        full = open(os.path.join(src, "variables", f), "rb").read()
        (dst / "variables" / f).write_bytes(full[: len(full) // 2])
    _poll_until(m, lambda: False, seconds=1.0)
    assert m.current.version == 1  # never the half-copied version
    for f in data:
        shutil.copy(os.path.join(src, "variables", f), dst / "variables" / f)
    for extra in ("assets", "assets.extra"):
        if os.path.isdir(os.path.join(src, extra)):
            shutil.copytree(os.path.join(src, extra), dst / extra, dirs_exist_ok=True)
    assert _poll_until(m, lambda: m.current.version == 2)
    out = m.current.signatures["serving_default"](
        examples=__import__("tensorflow").constant(trained[3]))
    assert np.all(np.isfinite(out["score"].numpy()))


def test_a_loadable_version_still_being_written_is_not_loaded(trained, tmp_path,
                                                               monkeypatch):
    """Every file of version 2 is in place and loadable, but one keeps changing (a copy still
    writing): the settle guard alone keeps it from being *loaded* until its files have been
    unchanged for settle_seconds; then it is served."""
    base = tmp_path / "models"
    shutil.copytree(_good(trained), base / NAME / "1")
    m = ModelManager(str(base), NAME, settle_seconds=1.0)
    m.poll_once()
    assert m.current.version == 1
    loads = _count_loads(m, monkeypatch)
    shutil.copytree(_good(trained), base / NAME / "2")
    (base / NAME / "2" / storage.MANIFEST).unlink()  # another tool's copy: settle guard
    growing = base / NAME / "2" / "assets.extra" / "copy_in_progress"
    growing.parent.mkdir(exist_ok=True)
    t_end = time.time() + 2.0
    while time.time() < t_end:  # still being written: a byte every 0.1 s
        with open(growing, "ab") as f:
            f.write(b"x")
        m.poll_once()
        time.sleep(0.1)
    assert m.current.version == 1 and loads == []  # never tried while it changed
    assert _poll_until(m, lambda: m.current.version == 2, seconds=10)
    assert loads == [2]


def test_committed_version_copied_file_by_file_is_loaded_only_when_whole(trained, tmp_path,
                                                                          monkeypatch):
    """An export copied file by file (object storage), its manifest first: with no settle
    time at all, the manager neither serves nor even tries to load it while a listed file is
    missing or short; once the last one is whole it is served at once."""
    base = tmp_path / "models"
    shutil.copytree(_good(trained), base / NAME / "1")
    m = ModelManager(str(base), NAME, settle_seconds=0.0)
    m.poll_once()
    assert m.current.version == 1
    loads = _count_loads(m, monkeypatch)
    src, dst = _good(trained), base / NAME / "2"
    files = sorted(storage.manifest(src, "export")["files"])
    os.makedirs(dst)
    shutil.copy(os.path.join(src, storage.MANIFEST), dst / storage.MANIFEST)
    for rel in files:
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        full = open(os.path.join(src, rel), "rb").read()
        target.write_bytes(full[: len(full) // 2])  # arriving
        m.poll_once()
        target.write_bytes(full)
        if rel != files[-1]:
            m.poll_once()
            assert m.current.version == 1 and loads == [], rel
    assert _poll_until(m, lambda: m.current.version == 2, seconds=5)
    assert loads == [2]


def test_replaced_version_waits_for_in_flight_requests(trained, tmp_path):
    base = tmp_path / "models"
    shutil.copytree(_good(trained), base / NAME / "1")
    m = ModelManager(str(base), NAME, settle_seconds=0.0, drain_seconds=30)
    m.poll_once()
    with m.acquire(NAME) as held:
        assert held.version == 1
        shutil.copytree(_good(trained), base / NAME / "2")
        assert _poll_until(m, lambda: m.current.version == 2)
        time.sleep(0.3)
        assert 1 not in m.unloaded  # still in use by this request
        held.signatures["serving_default"](
            examples=__import__("tensorflow").constant(trained[3]))
    deadline = time.time() + 10
    while 1 not in m.unloaded and time.time() < deadline:
        time.sleep(0.05)
    assert 1 in m.unloaded
