"""Filesystem content store (see ``dockyard.content`` for the interface).

Layout under ``root``::

    blobs/<algo>/<hex>            committed blobs, read-only (0444), never modified
    ingest/<sha256(ref)>/lock     flock(2) held by the one live writer of that ref
    ingest/<sha256(ref)>/ref      the ref, in full (the directory name is only its hash)
    ingest/<sha256(ref)>/meta.json  {"expected", "total", "started"}
    ingest/<sha256(ref)>/data     bytes received so far
    ingest/.trash-*               ingests being deleted (renamed away first, so deletion is atomic)

A blob becomes visible only by ``rename(2)`` of a verified, fsynced ``data`` file, so readers
never see partial content. Locks are flock(2) on per-ref lock files: they hold across threads
(each writer opens its own file description) and processes, and die with a crashed process.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
import uuid
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from dockyard.content.digest import sha256_digest, validate_digest
from dockyard.errors import Conflict, DataCorruption, InvalidArgument, NotFound

BUFSIZE = 1 << 20
_ALGORITHMS = ("sha256", "sha512")  # readable; only sha256 is ever written
_TRASH_PREFIX = ".trash-"


@dataclass(frozen=True)
class BlobInfo:
    digest: str
    size: int
    created: float  # epoch seconds


@dataclass(frozen=True)
class IngestStatus:
    ref: str
    offset: int  # bytes on disk (a live writer may hold up to BUFSIZE more in memory)
    total: int | None
    expected: str | None
    started: float
    updated: float


class IngestLocked(Conflict):
    """Another writer (a thread or a process) holds the ingest: it may finish or drop it."""


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: memoryview | bytes | bytearray) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _write_file_atomic(path: str, text: str) -> None:
    """Replace ``path`` so concurrent readers (``ingests()``) never see it half-written."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def _close_fds(fds: list[int]) -> None:
    # Data fd first, lock fd last: the lock must outlive every write to the ingest.
    while fds:
        try:
            os.close(fds.pop(0))
        except OSError:
            pass


def _check_writable_digest(digest: str) -> str:
    validate_digest(digest)
    if not digest.startswith("sha256:"):
        raise InvalidArgument(f"unsupported digest algorithm: {digest}")
    return digest


class LocalStore:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.fspath(root)
        self._blobs = os.path.join(self.root, "blobs")
        self._ingest = os.path.join(self.root, "ingest")
        os.makedirs(os.path.join(self._blobs, "sha256"), exist_ok=True)
        os.makedirs(self._ingest, exist_ok=True)
        self._purge_trash()

    # -- committed blobs --------------------------------------------------------------------

    def _blob_path(self, digest: str) -> str:
        validate_digest(digest)
        algo, hex_ = digest.split(":", 1)
        return os.path.join(self._blobs, algo, hex_)

    def path(self, digest: str) -> str:
        p = self._blob_path(digest)
        if not os.path.isfile(p):
            raise NotFound(f"content digest {digest}: not found")
        return p

    def info(self, digest: str) -> BlobInfo:
        try:
            st = os.stat(self._blob_path(digest))
        except FileNotFoundError:
            raise NotFound(f"content digest {digest}: not found") from None
        return BlobInfo(digest=digest, size=st.st_size, created=st.st_mtime)

    def exists(self, digest: str) -> bool:
        return os.path.isfile(self._blob_path(digest))

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self._blob_path(digest), "rb", buffering=BUFSIZE)
        except FileNotFoundError:
            raise NotFound(f"content digest {digest}: not found") from None

    def walk(self) -> Iterator[BlobInfo]:
        for algo in _ALGORITHMS:
            try:
                entries = list(os.scandir(os.path.join(self._blobs, algo)))
            except FileNotFoundError:
                continue
            for entry in entries:
                digest = f"{algo}:{entry.name}"
                try:
                    validate_digest(digest)
                    st = entry.stat()
                except (InvalidArgument, FileNotFoundError):
                    continue  # stray file, or deleted while we walked
                yield BlobInfo(digest=digest, size=st.st_size, created=st.st_mtime)

    def delete(self, digest: str) -> None:
        try:
            os.unlink(self._blob_path(digest))
        except FileNotFoundError:
            raise NotFound(f"content digest {digest}: not found") from None

    def gc(self, keep: Iterable[str], stale_ingest_age: float | None = None) -> list[str]:
        """Delete every blob not in ``keep``; return the deleted digests (sorted).

        The caller must stop new references being created meanwhile: a blob committed
        during gc and absent from ``keep`` is deleted too. With ``stale_ingest_age``
        (seconds), ingests not written for that long and not held by a writer go as well.
        """
        keep_set = {validate_digest(d) for d in keep}
        removed = []
        for info in list(self.walk()):
            if info.digest in keep_set:
                continue
            try:
                os.unlink(self._blob_path(info.digest))
            except FileNotFoundError:
                continue
            removed.append(info.digest)
        if stale_ingest_age is not None:
            self._remove_stale_ingests(time.time() - stale_ingest_age)
        return sorted(removed)

    def put(self, data: bytes, expected: str | None = None) -> str:
        if expected is not None:
            _check_writable_digest(expected)
        actual = sha256_digest(data)
        if expected is not None and expected != actual:
            raise DataCorruption(f"digest mismatch: expected {expected}, got {actual}")
        if self.exists(actual):
            return actual
        w = self.writer(f"put-{uuid.uuid4().hex}", total=len(data))
        try:
            w.write(data)
            return w.commit(expected=actual)
        finally:
            w.abort()  # no-op after a successful commit; never leave a random-ref ingest

    # -- ingests ----------------------------------------------------------------------------

    def _ingest_dir(self, ref: str) -> str:
        return os.path.join(self._ingest, hashlib.sha256(ref.encode()).hexdigest())

    def writer(self, ref: str, expected: str | None = None, total: int | None = None) -> Writer:
        """Start, or resume, the ingest ``ref``. IngestLocked (a Conflict) if another writer
        holds it; Conflict if it exists with another ``expected`` or ``total``."""
        if not isinstance(ref, str) or not ref:
            raise InvalidArgument("ingest ref must be a non-empty string")
        if expected is not None:
            _check_writable_digest(expected)
        if total is not None and (not isinstance(total, int) or total < 0):
            raise InvalidArgument(f"invalid ingest size: {total!r}")
        directory = self._ingest_dir(ref)
        lock_fd = self._lock(directory, ref, create=True)
        try:
            meta = self._load_or_init_meta(ref, directory, expected, total)
        except BaseException:
            os.close(lock_fd)
            raise
        return Writer(self, ref, directory, lock_fd, meta)

    def _lock(self, directory: str, ref: str, *, create: bool) -> int:
        """flock the ingest's lock file and return its fd. Conflict if held elsewhere."""
        lock_path = os.path.join(directory, "lock")
        while True:
            if create:
                # Not makedirs(exist_ok=True): it raises if the directory is renamed away
                # between its mkdir and isdir checks, which a concurrent commit can do.
                try:
                    os.mkdir(directory)
                except FileExistsError:
                    pass
            elif not os.path.isdir(directory):
                raise NotFound(f"ingest {ref}: not found")
            try:
                fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except FileNotFoundError:
                continue  # directory removed under us; retry (or report NotFound)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise IngestLocked(f"ref {ref} locked") from None
            # The holder we raced with may have removed the ingest before unlocking; then we
            # hold a lock on an orphaned file and must start over on the current one.
            try:
                if os.stat(lock_path).st_ino == os.fstat(fd).st_ino:
                    return fd
            except FileNotFoundError:
                pass
            os.close(fd)

    def _load_or_init_meta(
        self, ref: str, directory: str, expected: str | None, total: int | None
    ) -> dict:
        meta_path = os.path.join(directory, "meta.json")
        try:
            with open(meta_path, encoding="utf-8") as f:
                meta = json.load(f)
        except (FileNotFoundError, ValueError):
            meta = {"expected": None, "total": None, "started": time.time()}
        for key, value in (("expected", expected), ("total", total)):
            if value is None:
                continue
            if meta[key] is not None and meta[key] != value:
                raise Conflict(f"ref {ref} is already ingesting with {key} {meta[key]}, not {value}")
            meta[key] = value
        _write_file_atomic(os.path.join(directory, "ref"), ref)
        _write_file_atomic(meta_path, json.dumps(meta))
        return meta

    def ingests(self) -> list[IngestStatus]:
        out = []
        for name in sorted(os.listdir(self._ingest)):
            if name.startswith("."):
                continue
            status = self._ingest_status(os.path.join(self._ingest, name))
            if status is not None:
                out.append(status)
        return out

    def _ingest_status(self, directory: str) -> IngestStatus | None:
        try:
            with open(os.path.join(directory, "ref"), encoding="utf-8") as f:
                ref = f.read()
            with open(os.path.join(directory, "meta.json"), encoding="utf-8") as f:
                meta = json.load(f)
            st = os.stat(os.path.join(directory, "data"))
        except (FileNotFoundError, NotADirectoryError, ValueError):
            return None  # being created or removed right now
        return IngestStatus(
            ref=ref,
            offset=st.st_size,
            total=meta.get("total"),
            expected=meta.get("expected"),
            started=meta.get("started", st.st_mtime),
            updated=st.st_mtime,
        )

    def abort(self, ref: str) -> None:
        """Drop the ingest ``ref``. NotFound if there is none, Conflict if a writer holds it."""
        directory = self._ingest_dir(ref)
        fd = self._lock(directory, ref, create=False)
        try:
            self._remove_dir(directory)
        finally:
            os.close(fd)

    def _remove_dir(self, directory: str) -> None:
        # Rename first so the ingest disappears atomically, then delete at leisure.
        trash = os.path.join(self._ingest, _TRASH_PREFIX + uuid.uuid4().hex)
        try:
            os.rename(directory, trash)
        except FileNotFoundError:
            return
        shutil.rmtree(trash, ignore_errors=True)

    def _remove_stale_ingests(self, cutoff: float) -> None:
        # Works on directories, not ingests(), so half-created ingests are collected too.
        for name in os.listdir(self._ingest):
            if name.startswith("."):
                continue
            directory = os.path.join(self._ingest, name)
            if self._last_update(directory) >= cutoff:
                continue
            try:
                fd = self._lock(directory, name, create=False)
            except (Conflict, NotFound):
                continue  # in use, or already gone
            try:
                self._remove_dir(directory)
            finally:
                os.close(fd)

    @staticmethod
    def _last_update(directory: str) -> float:
        for candidate in (os.path.join(directory, "data"), directory):
            try:
                return os.stat(candidate).st_mtime
            except FileNotFoundError:
                continue
        return float("inf")  # vanished: nothing to do

    def _purge_trash(self) -> None:
        for name in os.listdir(self._ingest):
            if name.startswith(_TRASH_PREFIX):
                shutil.rmtree(os.path.join(self._ingest, name), ignore_errors=True)


class Writer:
    """Appends to one ingest. Obtain from ``LocalStore.writer``; not shared between threads.

    Writes are buffered up to BUFSIZE in memory; a writer dropped without ``close`` (a
    simulated crash) loses that buffer, and the next writer on the ref resumes from what
    reached the disk.
    """

    def __init__(self, store: LocalStore, ref: str, directory: str, lock_fd: int, meta: dict):
        self.ref = ref
        self.expected: str | None = meta["expected"]
        self.total: int | None = meta["total"]
        self._store = store
        self._dir = directory
        self._data_path = os.path.join(directory, "data")
        self._buf = bytearray()
        self._closed = False
        self._fds = [lock_fd]
        self._finalizer = weakref.finalize(self, _close_fds, self._fds)
        try:
            self._fd = os.open(
                self._data_path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644
            )
            self._fds.insert(0, self._fd)
            self._hash, self._offset = self._rehash()
        except BaseException:
            self._release()
            raise

    def _rehash(self) -> tuple[hashlib._Hash, int]:
        # hashlib state cannot be persisted, so resuming means hashing what is on disk.
        h = hashlib.sha256()
        buf = bytearray(BUFSIZE)
        view = memoryview(buf)
        offset = 0
        while n := os.preadv(self._fd, [buf], offset):
            h.update(view[:n])
            offset += n
        return h, offset

    @property
    def offset(self) -> int:
        """Bytes accepted so far (including any resumed from an earlier writer)."""
        return self._offset

    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"writer for ref {self.ref} is closed")

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._check_open()
        view = memoryview(data).cast("B")
        try:
            if len(self._buf) + len(view) < BUFSIZE:
                self._buf += view
            else:
                self._flush()
                if len(view) >= BUFSIZE:
                    _write_all(self._fd, view)  # big chunks bypass the buffer
                else:
                    self._buf += view
        except OSError:
            # Disk and hash may now disagree; give up this writer; a resume re-hashes the disk.
            self._release()
            raise
        self._hash.update(view)
        self._offset += len(view)
        return len(view)

    def flush(self) -> None:
        """Write the buffered bytes to the ingest file (as a file object's flush)."""
        self._check_open()
        self._flush()

    def open_reader(self) -> BinaryIO:
        """A read-only, unbuffered file of this ingest's data, for a consumer that follows
        the write as it goes (a pull unpacking a layer while it downloads): it sees what
        has reached the disk (``flush``, or ``offset`` once flushed), including bytes an
        earlier writer left, and keeps reading the same file after ``commit`` (the blob is
        renamed into place, not copied), ``close`` or a failed commit (then an unlinked
        file) until the caller closes it."""
        self._check_open()
        return open(os.open(self._data_path, os.O_RDONLY | os.O_CLOEXEC), "rb", buffering=0)

    def _flush(self) -> None:
        if self._buf:
            _write_all(self._fd, self._buf)
            self._buf.clear()

    def commit(self, size: int | None = None, expected: str | None = None) -> str:
        """Verify and publish the blob; returns its digest.

        DataCorruption (and the ingest is removed) if ``size``/``total`` or
        ``expected``/the writer's expected digest disagree with what was written.
        """
        self._check_open()
        if expected is not None:
            _check_writable_digest(expected)
        try:
            self._flush()
            os.fsync(self._fd)
        except OSError:
            self._release()
            raise
        actual = self.digest()
        try:
            self._verify(actual, size, expected)
        except DataCorruption:
            self._discard()
            raise
        try:
            self._publish(actual)
        except BaseException:
            self._release()  # keep the ingest: nothing was wrong with the data
            raise
        self._discard()
        return actual

    def _verify(self, actual: str, size: int | None, expected: str | None) -> None:
        for want in (size, self.total):
            if want is not None and want != self._offset:
                raise DataCorruption(f"size mismatch: expected {want}, got {self._offset}")
        for want_digest in (expected, self.expected):
            if want_digest is not None and want_digest != actual:
                raise DataCorruption(f"digest mismatch: expected {want_digest}, got {actual}")

    def _publish(self, digest: str) -> None:
        target = self._store._blob_path(digest)
        if os.path.exists(target):
            return  # identical content already committed: nothing to do
        os.fchmod(self._fd, 0o444)
        os.rename(self._data_path, target)
        _fsync_dir(os.path.dirname(target))

    def _release(self) -> None:
        self._closed = True
        self._buf = bytearray()
        self._finalizer()  # closes data fd, then lock fd; runs at most once

    def _discard(self) -> None:
        """Remove the ingest while still holding its lock, then release."""
        try:
            os.close(self._fds.pop(0))  # data fd; the lock fd stays until the end
            self._store._remove_dir(self._dir)
        finally:
            self._release()

    def close(self) -> None:
        """Flush and release the ref; the ingest stays for a later writer to resume."""
        if self._closed:
            return
        try:
            self._flush()
        finally:
            self._release()

    def abort(self) -> None:
        """Drop the ingest (a no-op once committed or aborted)."""
        if not self._closed:
            self._discard()
            return
        try:
            self._store.abort(self.ref)
        except NotFound:
            pass

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
