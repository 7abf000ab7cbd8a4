"""Conformance suite for content stores, plus LocalStore-specific checks at the end.

Every test in the first part takes the ``store`` fixture, so a new implementation only has
to be added to ``STORES`` to be held to the same contract.
"""

import gc
import hashlib
import os
import stat
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import dockyard
from dockyard.content.local import BUFSIZE, IngestLocked, LocalStore
from dockyard.errors import Conflict, DataCorruption, InvalidArgument, NotFound

STORES = {"local": LocalStore}


@pytest.fixture(params=sorted(STORES))
def store(request, tmp_path):
    return STORES[request.param](tmp_path / "content")


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def blob(n: int, seed: int = 0) -> bytes:
    """Deterministic, non-repeating-looking content of n bytes."""
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:n])


def digests(store) -> set[str]:
    return {b.digest for b in store.walk()}


# -- committed blobs ------------------------------------------------------------------------


def test_put_info_open_round_trip(store):
    data = b"hello, dockyard"
    d = store.put(data)
    assert d == sha(data)
    assert store.exists(d)
    info = store.info(d)
    assert (info.digest, info.size) == (d, len(data))
    assert info.created > 0
    with store.open(d) as f:
        assert f.read() == data
        f.seek(7)
        assert f.read(8) == b"dockyard"
    with open(store.path(d), "rb") as f:
        assert f.read() == data
    assert digests(store) == {d}


def test_put_with_expected(store):
    data = b"abc"
    assert store.put(data, expected=sha(data)) == sha(data)
    with pytest.raises(DataCorruption, match=f"digest mismatch: expected {sha(b'x')}, got {sha(data)}"):
        store.put(b"abc", expected=sha(b"x"))
    assert digests(store) == {sha(data)}
    assert store.ingests() == []


def test_empty_blob(store):
    d = store.put(b"")
    assert d == sha(b"")
    assert store.info(d).size == 0
    with store.open(d) as f:
        assert f.read() == b""


def test_missing_blob(store):
    d = sha(b"nope")
    assert not store.exists(d)
    for call in (store.info, store.open, store.path, store.delete):
        with pytest.raises(NotFound):
            call(d)


def test_sha512_digest_is_readable_not_writable(store):
    d = "sha512:" + "a" * 128
    assert not store.exists(d)
    with pytest.raises(NotFound):
        store.info(d)
    with pytest.raises(InvalidArgument, match="unsupported digest algorithm"):
        store.writer("r", expected=d)
    with pytest.raises(InvalidArgument, match="unsupported digest algorithm"):
        store.put(b"x", expected=d)


BAD_DIGESTS = [
    "",
    "sha256",
    "sha256:abc",
    "sha256:" + "A" * 64,
    "md5:" + "a" * 32,
    "sha256:" + "a" * 64 + "\n",
    "sha256:../../" + "a" * 58,
]


@pytest.mark.parametrize("bad", BAD_DIGESTS)
def test_invalid_digest_input(store, bad):
    for call in (store.info, store.exists, store.open, store.path, store.delete):
        with pytest.raises(InvalidArgument):
            call(bad)
    with pytest.raises(InvalidArgument):
        store.writer("r", expected=bad)
    with pytest.raises(InvalidArgument):
        store.put(b"x", expected=bad)
    with pytest.raises(InvalidArgument):
        store.gc([bad])
    w = store.writer("r")
    w.write(b"x")
    with pytest.raises(InvalidArgument):
        w.commit(expected=bad)
    assert w.commit() == sha(b"x")  # a rejected argument does not spoil the writer


def test_invalid_writer_arguments(store):
    with pytest.raises(InvalidArgument):
        store.writer("")
    with pytest.raises(InvalidArgument):
        store.writer("r", total=-1)
    assert store.ingests() == []


def test_delete(store):
    a, b = store.put(b"a"), store.put(b"b")
    store.delete(a)
    assert not store.exists(a)
    assert digests(store) == {b}
    with pytest.raises(NotFound):
        store.delete(a)
    with pytest.raises(NotFound):
        store.open(a)


def test_gc_keeps_referenced(store):
    a, b, c = (store.put(x) for x in (b"a", b"b", b"c"))
    removed = store.gc(iter([a]))
    assert removed == sorted([b, c])
    assert digests(store) == {a}
    assert store.gc([a]) == []
    assert store.gc([]) == [a]
    assert digests(store) == set()


def test_gc_stale_ingests(store):
    w = store.writer("stale")
    w.write(b"old")
    w.close()
    held = store.writer("held")
    held.write(b"live")
    held.close()
    held = store.writer("held")  # locked while gc runs
    time.sleep(0.05)
    store.gc([], stale_ingest_age=3600)
    assert {i.ref for i in store.ingests()} == {"stale", "held"}
    store.gc([], stale_ingest_age=0.01)
    assert {i.ref for i in store.ingests()} == {"held"}
    held.write(b"!")
    assert held.commit() == sha(b"live!")


# -- ingest and commit -----------------------------------------------------------------------


def test_writer_commit(store):
    data = blob(3 * BUFSIZE + 12345)
    w = store.writer("ref-1", expected=sha(data), total=len(data))
    # Irregular chunk sizes exercise both the buffered and the direct-write paths.
    pos = 0
    for size in (10, BUFSIZE - 5, 3, 2 * BUFSIZE, 100_000, len(data)):
        chunk = data[pos:pos + size]
        assert w.write(chunk) == len(chunk)
        pos += len(chunk)
    assert w.offset == len(data)
    assert w.digest() == sha(data)
    assert w.commit(size=len(data), expected=sha(data)) == sha(data)
    with store.open(sha(data)) as f:
        assert f.read() == data
    assert store.ingests() == []


def test_write_accepts_buffers(store):
    w = store.writer("r")
    w.write(bytearray(b"ab"))
    w.write(memoryview(b"xcdx")[1:3])
    assert w.commit() == sha(b"abcd")


@pytest.mark.parametrize("where", ["writer", "commit"])
def test_commit_verifies_digest(store, where):
    existing = store.put(b"existing")
    data = b"actual content"
    wrong = sha(b"something else")
    w = store.writer("r", expected=wrong if where == "writer" else None)
    w.write(data)
    with pytest.raises(DataCorruption) as exc:
        w.commit(expected=wrong if where == "commit" else None)
    assert str(exc.value) == f"digest mismatch: expected {wrong}, got {sha(data)}"
    assert digests(store) == {existing}
    assert not store.exists(sha(data))
    assert store.ingests() == []
    with pytest.raises(ValueError):
        w.write(b"more")


@pytest.mark.parametrize("where", ["writer", "commit"])
def test_commit_verifies_size(store, where):
    data = b"12345"
    w = store.writer("r", total=9 if where == "writer" else None)
    w.write(data)
    with pytest.raises(DataCorruption) as exc:
        w.commit(size=9 if where == "commit" else None)
    assert str(exc.value) == "size mismatch: expected 9, got 5"
    assert digests(store) == set()
    assert store.ingests() == []
    # The ref is free again and starts from scratch.
    w = store.writer("r")
    assert w.offset == 0
    w.abort()


def test_partial_write_invisible(store):
    data = blob(2 * BUFSIZE)
    w = store.writer("partial", total=len(data))
    w.write(data[:BUFSIZE + 7])
    assert not store.exists(sha(data))
    assert not store.exists(sha(data[:BUFSIZE + 7]))
    assert digests(store) == set()
    [status] = store.ingests()
    assert (status.ref, status.total, status.expected) == ("partial", len(data), None)
    assert 0 <= status.offset <= BUFSIZE + 7
    # Loose: mtimes come from the kernel's coarse clock, started from time.time().
    assert abs(status.updated - status.started) < 60
    assert abs(status.started - time.time()) < 60
    w.write(data[BUFSIZE + 7:])
    assert w.commit() == sha(data)
    assert digests(store) == {sha(data)}


def test_resume_after_close(store):
    data = blob(BUFSIZE + 999, seed=1)
    cut = BUFSIZE // 2 + 1
    with store.writer("resume", expected=sha(data)) as w:
        w.write(data[:cut])
    [status] = store.ingests()
    assert (status.ref, status.offset, status.expected) == ("resume", cut, sha(data))
    w = store.writer("resume")
    assert w.offset == cut
    assert w.expected == sha(data)  # remembered from the first writer
    assert w.digest() == sha(data[:cut])
    w.write(data[cut:])
    assert w.commit() == sha(data)
    with store.open(sha(data)) as f:
        assert f.read() == data


def test_resume_after_crash(store):
    data = blob(3 * BUFSIZE + 500, seed=2)
    w = store.writer("crash")
    w.write(data[:3 * BUFSIZE])
    w.write(data[3 * BUFSIZE:3 * BUFSIZE + 100])
    del w  # dropped without close(): whatever was buffered may be lost
    gc.collect()
    w = store.writer("crash")  # the lock died with the writer
    assert 0 <= w.offset <= 3 * BUFSIZE + 100
    assert w.digest() == sha(data[:w.offset])
    w.write(data[w.offset:])
    assert w.commit(size=len(data)) == sha(data)
    with store.open(sha(data)) as f:
        assert f.read() == data


def test_resume_with_conflicting_expectations(store):
    w = store.writer("r", expected=sha(b"a"), total=1)
    w.close()
    with pytest.raises(Conflict):
        store.writer("r", expected=sha(b"b"))
    with pytest.raises(Conflict):
        store.writer("r", total=2)
    w = store.writer("r", expected=sha(b"a"), total=1)  # same values are fine
    w.write(b"a")
    assert w.commit() == sha(b"a")


def test_concurrent_writer_same_ref_conflicts(store):
    w = store.writer("same")
    w.write(b"first")
    with pytest.raises(Conflict, match="ref same locked"):
        store.writer("same")
    with pytest.raises(Conflict):
        store.abort("same")
    w.close()
    w2 = store.writer("same")
    assert w2.offset == 5
    w2.abort()


def test_locked_ingest_is_told_apart(store):
    """A ref held by a live writer is IngestLocked (it may finish or drop it: worth waiting
    for); an ingest with other expectations is a plain Conflict."""
    w = store.writer("held", total=3)
    with pytest.raises(IngestLocked):
        store.writer("held")
    w.close()
    with pytest.raises(Conflict) as info:
        store.writer("held", total=4)
    assert not isinstance(info.value, IngestLocked)


def test_open_reader_follows_the_write(store):
    """A reader of the ingest sees what reached the disk — a flush, or a big write — and
    keeps reading the same bytes after the commit renamed the file into place."""
    data = blob(BUFSIZE + 4096, seed=5)
    w = store.writer("follow", expected=sha(data))
    reader = w.open_reader()
    try:
        w.write(data[:100])  # buffered
        assert os.pread(reader.fileno(), 200, 0) == b""
        w.flush()
        assert os.pread(reader.fileno(), 200, 0) == data[:100]
        w.write(data[100:])  # a write of BUFSIZE or more goes to the disk at once
        assert os.pread(reader.fileno(), len(data), 0) == data
        assert w.commit() == sha(data)
        assert reader.read() == data
    finally:
        reader.close()
    with store.open(sha(data)) as f:
        assert f.read() == data


def test_open_reader_sees_resumed_bytes_and_outlives_a_failed_commit(store):
    data = blob(5000, seed=6)
    with store.writer("again") as w:
        w.write(data[:3000])
    w = store.writer("again")
    reader = w.open_reader()
    try:
        assert reader.read() == data[:3000]  # what the earlier writer left, from offset 0
        w.write(b"x" * 2000)
        w.flush()
        assert reader.read() == b"x" * 2000
        with pytest.raises(DataCorruption):
            w.commit(expected=sha(data))  # the ingest is removed ...
        assert store.ingests() == []
        assert os.pread(reader.fileno(), 10, 0) == data[:10]  # ... the open file stays readable
    finally:
        reader.close()
    assert digests(store) == set()


def test_writer_after_commit_starts_fresh(store):
    w = store.writer("r")
    w.write(b"one")
    w.commit()
    w = store.writer("r")
    assert w.offset == 0
    w.write(b"two")
    assert w.commit() == sha(b"two")
    assert digests(store) == {sha(b"one"), sha(b"two")}


def test_abort(store):
    w = store.writer("a")
    w.write(b"data")
    w.abort()
    assert store.ingests() == []
    w.abort()  # idempotent
    with pytest.raises(ValueError):
        w.write(b"x")
    with store.writer("b") as w:
        w.write(b"data")
    store.abort("b")
    assert store.ingests() == []
    with pytest.raises(NotFound):
        store.abort("b")
    with pytest.raises(NotFound):
        store.abort("never")
    assert digests(store) == set()


def test_closed_writer_rejects_use(store):
    w = store.writer("r")
    w.close()
    w.close()  # idempotent
    with pytest.raises(ValueError):
        w.write(b"x")
    with pytest.raises(ValueError):
        w.commit()
    assert [i.ref for i in store.ingests()] == ["r"]


def test_duplicate_commit(store):
    data = b"same bytes"
    d = store.put(data)
    assert store.put(data) == d
    w = store.writer("again")
    w.write(data)
    assert w.commit() == d
    assert digests(store) == {d}
    assert store.ingests() == []
    with store.open(d) as f:
        assert f.read() == data


def test_ingest_with_expected_digest_of_existing_blob(store):
    data = b"already here"
    d = store.put(data)
    w = store.writer("x", expected=d)
    w.write(data)
    assert w.commit() == d
    # Even though the blob exists, what was written must still match.
    w = store.writer("y", expected=d)
    w.write(b"impostor")
    with pytest.raises(DataCorruption, match="digest mismatch"):
        w.commit()
    assert digests(store) == {d}
    with store.open(d) as f:
        assert f.read() == data
    assert store.ingests() == []


def test_concurrent_writers_different_refs(store):
    payloads = {f"ref-{i}": blob(BUFSIZE + 4096 * i, seed=10 + i) for i in range(8)}
    results: dict[str, str] = {}
    errors: list[BaseException] = []

    def work(ref: str, data: bytes) -> None:
        try:
            w = store.writer(ref, total=len(data))
            for i in range(0, len(data), 65536):
                w.write(data[i:i + 65536])
            results[ref] = w.commit()
        except BaseException as e:  # surfaced in the main thread below
            errors.append(e)

    threads = [threading.Thread(target=work, args=item) for item in payloads.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert results == {ref: sha(data) for ref, data in payloads.items()}
    assert digests(store) == set(results.values())
    assert store.ingests() == []


def test_same_ref_race_has_one_winner(store):
    barrier = threading.Barrier(6)
    outcomes: list[str] = []
    writers = []

    def work() -> None:
        barrier.wait()
        try:
            writers.append(store.writer("contended"))
            outcomes.append("ok")
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict"] * 5 + ["ok"]
    writers[0].abort()


# -- LocalStore specifics --------------------------------------------------------------------


def test_local_layout_and_permissions(tmp_path):
    store = LocalStore(tmp_path)
    d = store.put(b"layout")
    path = tmp_path / "blobs" / "sha256" / d.split(":")[1]
    assert store.path(d) == str(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    w = store.writer("ing")
    w.write(b"x")
    w.close()
    [ingest_dir] = (tmp_path / "ingest").iterdir()
    assert ingest_dir.name == hashlib.sha256(b"ing").hexdigest()
    assert (ingest_dir / "ref").read_text() == "ing"
    assert (ingest_dir / "data").read_bytes() == b"x"


def test_local_failed_commit_leaves_no_file(tmp_path):
    store = LocalStore(tmp_path)
    w = store.writer("r")
    w.write(b"bad")
    with pytest.raises(DataCorruption):
        w.commit(expected=sha(b"good"))
    assert os.listdir(tmp_path / "blobs" / "sha256") == []
    assert os.listdir(tmp_path / "ingest") == []


def test_local_resume_after_lost_tail(tmp_path):
    """A crash can lose the tail of data; resumption must trust the disk, not a counter."""
    store = LocalStore(tmp_path)
    data = blob(100, seed=3)
    with store.writer("r") as w:
        w.write(data)
    (data_file,) = (tmp_path / "ingest").glob("*/data")
    os.truncate(data_file, 40)
    w = store.writer("r")
    assert w.offset == 40
    assert w.digest() == sha(data[:40])
    w.write(data[40:])
    assert w.commit() == sha(data)


def test_local_crash_loses_only_buffered_bytes(tmp_path):
    store = LocalStore(tmp_path)
    data = blob(BUFSIZE + 10, seed=4)
    w = store.writer("r")
    w.write(data[:BUFSIZE])  # a full buffer goes straight to disk
    w.write(data[BUFSIZE:])  # buffered
    del w
    gc.collect()
    assert store.writer("r").offset == BUFSIZE


def test_local_purges_trash_on_open(tmp_path):
    LocalStore(tmp_path)
    trash = tmp_path / "ingest" / ".trash-leftover"
    (trash / "sub").mkdir(parents=True)
    (trash / "sub" / "data").write_bytes(b"x")
    LocalStore(tmp_path)
    assert not trash.exists()


def test_local_ignores_stray_files(tmp_path):
    store = LocalStore(tmp_path)
    d = store.put(b"real")
    (tmp_path / "blobs" / "sha256" / "not-a-digest").write_bytes(b"junk")
    assert digests(store) == {d}
    assert store.gc([d]) == []


HOLDER = textwrap.dedent(
    """
    import sys
    from dockyard.content.local import LocalStore
    w = LocalStore(sys.argv[1]).writer("xproc")
    w.write(b"from child")
    w.close() if sys.argv[2] == "close" else None
    w = LocalStore(sys.argv[1]).writer("xproc") if sys.argv[2] == "close" else w
    print("ready", flush=True)
    sys.stdin.read()
    """
)


def _spawn_holder(root, mode: str) -> subprocess.Popen:
    # The child must import the same dockyard as this process, installed or not.
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(dockyard.__file__)))
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(root), mode],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
    )
    assert proc.stdout.readline() == b"ready\n"
    return proc


def test_local_lock_holds_across_processes(tmp_path):
    store = LocalStore(tmp_path)
    proc = _spawn_holder(tmp_path, "close")
    try:
        with pytest.raises(Conflict):
            store.writer("xproc")
    finally:
        proc.communicate(b"")  # child exits without closing: the kernel drops the lock
    w = store.writer("xproc")
    assert w.offset == len(b"from child")
    assert w.commit() == sha(b"from child")


def test_local_lock_released_when_process_killed(tmp_path):
    store = LocalStore(tmp_path)
    proc = _spawn_holder(tmp_path, "hold")
    with pytest.raises(Conflict):
        store.writer("xproc")
    proc.kill()
    proc.wait()
    proc.stdin.close()
    proc.stdout.close()
    w = store.writer("xproc")
    assert w.offset == 0  # the child's bytes were still in its buffer
    w.abort()
