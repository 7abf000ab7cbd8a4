"""The layers of a pull: downloaded in parallel into the content store and each unpacked as
soon as it can be — while it is still streaming in, once the layer below it is a snapshot.

Threads: up to PARALLEL_LAYERS download workers and as many unpack workers, given the layers
in chain order. A layer's snapshot sits on its parent's; where the snapshotter's layers are
independent (overlay), a layer is unpacked while its parent still is, and waits for it only
when a lookup needs the layers below, and before it is committed (ImageService.unpack_layer).
A layer's "Pull complete" comes after its parent's, as in docker. A download goes into
a content-store writer (ingest ``pull-<digest>``: what an earlier, failed or cancelled, pull
left is continued with an HTTP Range request) and flushes every chunk; the unpacker follows
that ingest file through a file descriptor of its own (``Writer.open_reader``), waiting for
bytes as they land. Resumed, late-starting and finished downloads are then one case: the
unpacker reads the blob from 0 to its size. The layer's snapshot is committed only after the
writer's commit has checked size and digest: a bad blob leaves neither blob nor snapshot.

Progress, per layer and in docker's order: "Pulling fs layer", "Waiting" (queued behind the
parallel downloads, or behind another pull of the same blob), "Downloading" (current/total,
at most every PROGRESS_INTERVAL), "Verifying Checksum", "Download complete", "Extracting"
(compressed bytes consumed; held back until "Download complete" even when the extraction
ran alongside the download), "Pull complete". "Already exists" for a layer whose blob and
snapshot are both present.

Failure or cancellation (``emit`` raising: the API client went away): every worker stops at
its next chunk, the extraction under way is removed, and partial ingests are closed — kept
for the next pull to continue — after everything else, so that once an ingest's lock is free
this pull is over. Layers already committed stay, for the next pull to reuse.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO

from dockyard.content.local import IngestLocked
from dockyard.distribution import short_id
from dockyard.errors import Conflict, DataCorruption, NotFound
from dockyard.faults import crash_point
from dockyard.images.model import Descriptor

PARALLEL_LAYERS = 3  # docker's max-concurrent-downloads default
# compressed bytes from which a layer unpacks in a worker process (on another CPU; starting
# one takes ~50 ms, a few MB of small files take longer)
UNPACK_IN_WORKER = 4 << 20
PROGRESS_INTERVAL = 0.1  # seconds between two progress messages of one layer
_WAIT_OTHER = 0.25  # how often a layer another pull is downloading looks again
Emit = Callable[[dict[str, Any]], None]


class Stopped(Exception):
    """Raised in a thread of a pull that failed elsewhere. Not an OSError, so the registry
    client does not take it for a dropped connection to retry."""



class _Layer:
    def __init__(self, desc: Descriptor, diff_id: str, chain: str) -> None:
        self.desc, self.diff_id, self.chain = desc, diff_id, chain
        self.digest, self.size, self.id = desc.digest, desc.size, short_id(desc.digest)
        self.download = self.extract = False
        self.waiting = False  # "Waiting" sent
        self.suspect = False  # its data failed to unpack: a partial download is dropped, not kept
        # guarded by the pull's condition
        self.reader: BinaryIO | None = None  # the blob's bytes as they land (an ingest file, or the blob)
        self.on_disk = 0  # bytes readable through ``reader``
        self.committed = False  # the blob is verified and in the content store
        self.done = False  # its download is over, whichever way
        self.reported = False  # "Download complete" sent: extraction progress may follow
        self.unpacked = False  # its snapshot is committed and "Pull complete" sent
        self.last_download = self.last_extract = 0.0


class _Follow:
    """The compressed blob of ``layer`` read as it is written, from offset 0 to its size:
    reads wait for bytes the download has not flushed yet, and raise Stopped once the pull
    failed. Counts what it consumed for "Extracting"."""

    def __init__(self, pull: LayerPull, layer: _Layer) -> None:
        self._pull, self._layer = pull, layer
        assert layer.reader is not None
        self._fd = layer.reader.fileno()
        self.pos = 0

    def read(self, size: int = -1) -> bytes:
        layer, pull = self._layer, self._pull
        if self.pos >= layer.size:
            return b""
        with pull.cond:
            while True:
                if pull.error is not None:
                    raise Stopped
                if layer.on_disk > self.pos:
                    break
                pull.cond.wait()
            avail = min(layer.on_disk, layer.size) - self.pos
        want = avail if size is None or size < 0 else min(size, avail)
        data = os.pread(self._fd, want, self.pos)
        if not data:
            raise DataCorruption(f"blob {layer.digest}: the ingest file is shorter than its writer reported")
        self.pos += len(data)
        crash_point("pull:unpacking")  # tests: killed with an extraction and a download half done
        if layer.reported:
            pull.progress(layer, "Extracting", self.pos)
        return data


class LayerPull:
    """One pull's layers (see the module docstring). ``chains`` and ``diff_ids`` are the
    layers' chain IDs and diff IDs from the image config; ``lease`` (ImageService.lease,
    taken by the caller with every blob and chain ID in it) keeps the work from other
    operations' clean-ups."""

    def __init__(self, images: Any, registry: Any, repo: str, layers: list[Descriptor], diff_ids: list[str],
                 chains: list[str], emit: Emit, lease: Any) -> None:
        self.images, self.content = images, images.content
        self.registry, self.repo = registry, repo
        self.layers = [_Layer(d, i, c) for d, i, c in zip(layers, diff_ids, chains, strict=True)]
        self._emit, self.lease = emit, lease
        self.cond = threading.Condition()
        self.error: BaseException | None = None
        self._emit_lock = threading.Lock()
        self._writers: list[tuple[_Layer, Any]] = []  # closed last: their ingests stay for the next pull
        self._files: list[BinaryIO] = []

    # ---------------------------------------------------------------- shared state

    def emit(self, msg: dict[str, Any]) -> None:
        """Send a progress message; Stopped once the pull failed, or when sending fails
        (the client went away: that is the pull's error)."""
        with self._emit_lock:
            if self.error is not None:
                raise Stopped
            try:
                self._emit(msg)
            except BaseException as e:
                self.fail(e)
                raise Stopped from e

    def progress(self, layer: _Layer, status: str, current: int, *, force: bool = False) -> None:
        attr = "last_download" if status == "Downloading" else "last_extract"
        now = time.monotonic()
        if not force and now - getattr(layer, attr) < PROGRESS_INTERVAL:
            return
        setattr(layer, attr, now)
        self.emit({"status": status, "progressDetail": {"current": current, "total": layer.size}, "id": layer.id})

    def fail(self, error: BaseException) -> None:
        with self.cond:
            if self.error is None:
                self.error = error
            self.cond.notify_all()

    def _wait(self, ready: Callable[[], bool]) -> None:
        with self.cond:
            while True:
                if self.error is not None:
                    raise Stopped
                if ready():
                    return
                self.cond.wait()

    def _update(self, layer: _Layer, **values: Any) -> None:
        with self.cond:
            for k, v in values.items():
                setattr(layer, k, v)
            self.cond.notify_all()

    # ---------------------------------------------------------------- the pull

    def run(self) -> None:
        """Download and unpack every layer; raises the pull's first error."""
        for layer in self.layers:
            layer.extract = not self.images.has_layer(layer.chain)
            layer.download = not self.content.exists(layer.digest)
        fetch = [layer for layer in self.layers if layer.download]
        pool = ThreadPoolExecutor(max(1, min(PARALLEL_LAYERS, len(fetch))), thread_name_prefix="pull")
        unpackers = ThreadPoolExecutor(PARALLEL_LAYERS, thread_name_prefix="unpack")
        try:
            for layer in self.layers:
                if layer.download or layer.extract:
                    self.emit({"status": "Pulling fs layer", "progressDetail": {}, "id": layer.id})
                else:
                    self.emit({"status": "Already exists", "progressDetail": {}, "id": layer.id})
            for layer in fetch[PARALLEL_LAYERS:]:
                layer.waiting = True
                self.emit({"status": "Waiting", "progressDetail": {}, "id": layer.id})
            for layer in self.layers:
                if not layer.download and layer.extract:  # the blob is here: unpack from it
                    self._use_blob(layer)
            futures = [pool.submit(self._download_worker, layer) for layer in fetch]
            parent, below = None, None
            for layer in self.layers:
                if layer.extract:  # submitted in chain order: the lowest layer left always runs
                    futures.append(unpackers.submit(self._unpack_worker, layer, parent, below))
                below = layer if layer.extract else None  # the parent, if it is still being unpacked
                parent = layer.chain
            for f in futures:
                f.result()
        except Stopped:
            pass
        except BaseException as e:
            self.fail(e)
        finally:
            unpackers.shutdown(wait=True, cancel_futures=True)
            pool.shutdown(wait=True, cancel_futures=True)
            for f in self._files:
                f.close()
            for layer, w in self._writers:
                if layer.suspect:
                    w.abort()
                else:
                    w.close()  # no-op once committed; else the partial ingest stays
        if self.error is not None:
            raise self.error

    def _use_blob(self, layer: _Layer, reported: bool = True) -> None:
        f = self.content.open(layer.digest)
        with self.cond:
            self._files.append(f)
        self._update(layer, reader=f, on_disk=layer.size, committed=True, reported=reported)

    # ---------------------------------------------------------------- downloads

    def _download_worker(self, layer: _Layer) -> None:
        try:
            self._download(layer)
        except Stopped:
            pass
        except BaseException as e:
            self.fail(e)
        finally:
            self._update(layer, done=True)

    def _writer(self, layer: _Layer) -> Any:
        """The layer's ingest writer (a partial one continued), or None once another pull
        of this daemon has stored the blob meanwhile."""
        ref = f"pull-{layer.digest}"
        while True:
            if self.error is not None:
                raise Stopped
            if self.content.exists(layer.digest):
                return None
            try:
                writer = self.content.writer(ref, expected=layer.digest, total=layer.size)
            except IngestLocked:  # another pull is downloading this blob: its result is ours
                if not layer.waiting:
                    layer.waiting = True
                    self.emit({"status": "Waiting", "progressDetail": {}, "id": layer.id})
                with self.cond:
                    if self.error is None:
                        self.cond.wait(_WAIT_OTHER)
                continue
            except Conflict:  # a stale ingest of another size: not a part of this blob
                with contextlib.suppress(NotFound, IngestLocked):
                    self.content.abort(ref)
                continue
            if writer.offset <= layer.size:
                return writer
            writer.abort()  # longer than the blob: not a part of it

    def _download(self, layer: _Layer) -> None:
        writer = self._writer(layer)
        if writer is None:
            self._use_blob(layer, reported=False)
            self.emit({"status": "Download complete", "progressDetail": {}, "id": layer.id})
            self._update(layer, reported=True)
            if not layer.extract:
                self.emit({"status": "Pull complete", "progressDetail": {}, "id": layer.id})
            return
        with self.cond:
            self._writers.append((layer, writer))
        reader = writer.open_reader()
        with self.cond:
            self._files.append(reader)
        self._update(layer, reader=reader, on_disk=writer.offset)

        def write(chunk: bytes) -> None:
            if self.error is not None:
                raise Stopped
            writer.write(chunk)
            writer.flush()
            self._update(layer, on_disk=writer.offset)
            self.progress(layer, "Downloading", writer.offset)

        if writer.offset < layer.size:
            self.registry.blob(self.repo, layer.digest, write, layer.size, offset=writer.offset)
        self.emit({"status": "Verifying Checksum", "progressDetail": {}, "id": layer.id})
        try:
            writer.commit(size=layer.size, expected=layer.digest)
        except DataCorruption as e:  # docker's words
            raise DataCorruption(f"filesystem layer verification failed for digest {layer.digest}") from e
        self._update(layer, committed=True)
        self.emit({"status": "Download complete", "progressDetail": {}, "id": layer.id})
        self._update(layer, reported=True)
        if not layer.extract:
            self.emit({"status": "Pull complete", "progressDetail": {}, "id": layer.id})

    # ---------------------------------------------------------------- unpacking

    def _unpack_worker(self, layer: _Layer, parent: str | None, below: _Layer | None) -> None:
        """Unpack ``layer`` onto snapshot ``parent``; ``below``: the layer that snapshot is,
        if this pull is still unpacking it."""
        try:
            self._unpack(layer, parent, None if below is None else lambda: self._wait(lambda: below.unpacked))
        except Stopped:
            pass
        except BaseException as e:
            self.fail(e)

    def _unpack(self, layer: _Layer, parent: str | None, parent_ready: Callable[[], None] | None) -> None:
        self._wait(lambda: layer.reader is not None)
        stream = _Follow(self, layer)

        def ready() -> None:  # applied and diff ID checked: the blob must be verified too
            self._wait(lambda: layer.reported)
            self.progress(layer, "Extracting", layer.size, force=True)

        try:
            self.images.unpack_layer(stream, parent, layer.chain, layer.diff_id, self.lease, ready, parent_ready,
                                     isolated=layer.size >= UNPACK_IN_WORKER)
        except DataCorruption:
            layer.suspect = True  # a corrupt download must not be continued by the next pull
            # Unpacked while it streamed in, the blob was not verified yet: a bad digest is
            # the cause to report (as docker, which verifies first), so wait for the verdict.
            with self.cond:
                while not (layer.committed or layer.done or self.error is not None):
                    self.cond.wait()
            if not layer.committed and self.error is not None:
                raise Stopped from None  # the download's own error is the pull's
            raise
        self.emit({"status": "Pull complete", "progressDetail": {}, "id": layer.id})
        self._update(layer, unpacked=True)


__all__ = ["PARALLEL_LAYERS", "LayerPull", "Stopped"]
