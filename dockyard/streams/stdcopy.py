"""docker's multiplexed stream format ("stdcopy"), used by attach, exec start and logs
when the container has no TTY (``Content-Type: application/vnd.docker.multiplexed-stream``).

Each frame is an 8-byte header followed by its payload::

    [stream type, 0, 0, 0, len >> 24, len >> 16, len >> 8, len]  payload[len]

Stream type 0 stdin, 1 stdout, 2 stderr, 3 systemerr (an error from the daemon,
sent in-band because the HTTP status is long gone). With a TTY the stream is raw
bytes instead, with no framing at all.

Stdlib only and cheap to import: the CLI's ``run``/``attach``/``logs`` path loads it.
"""

from __future__ import annotations

import struct

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (~3 ms)
if TYPE_CHECKING:
    from typing import IO, Any


__all__ = [
    "HEADER_SIZE",
    "MAX_FRAME",
    "STDERR",
    "STDIN",
    "STDOUT",
    "SYSTEMERR",
    "Demuxer",
    "StreamError",
    "demux_to",
    "frame",
    "frames",
]

STDIN = 0
STDOUT = 1
STDERR = 2
SYSTEMERR = 3

HEADER_SIZE = 8
MAX_FRAME = 0xFFFFFFFF  # the length field is a uint32
_HEADER = struct.Struct(">B3xL")
_READ_SIZE = 64 * 1024


class StreamError(Exception):
    """The byte stream is not valid stdcopy framing (bad header, truncated frame), or
    the daemon reported an error in-band (a systemerr frame)."""


def frame(stream_id: int, data: bytes) -> bytes:
    """One frame: header + ``data``. ``data`` must fit the uint32 length field; use
    :func:`frames` for arbitrarily large payloads."""
    if not 0 <= stream_id <= SYSTEMERR:
        raise ValueError(f"invalid stream type {stream_id}")
    if len(data) > MAX_FRAME:
        raise ValueError(f"frame payload of {len(data)} bytes exceeds {MAX_FRAME}")
    return _HEADER.pack(stream_id, len(data)) + data


def frames(stream_id: int, data: bytes, max_payload: int = MAX_FRAME) -> list[bytes]:
    """``data`` cut into as many frames as needed (none for empty data)."""
    if max_payload <= 0:
        raise ValueError("max_payload must be positive")
    view = memoryview(data)
    return [frame(stream_id, bytes(view[i : i + max_payload])) for i in range(0, len(view), max_payload)]


class Demuxer:
    """Incremental parser: :meth:`feed` it bytes as they arrive, split anywhere, and get
    ``(stream_id, payload)`` pairs back.

    By default a frame is returned once complete, so frame boundaries survive (docker
    sends one log line per frame). With ``partial=True`` a payload is returned piece by
    piece as it arrives instead: bounded memory however large the frame claims to be,
    and output shown as soon as it is received (what a terminal wants).

    Zero-length frames are valid and skipped. A header with an unknown stream type or
    non-zero padding raises :class:`StreamError` (most likely a raw TTY stream read as
    multiplexed); the parser is then unusable.
    """

    def __init__(self, partial: bool = False) -> None:
        self._partial = partial
        self._buf = bytearray()
        self._stream = -1  # stream of the frame in progress, -1 between frames
        self._remaining = 0  # payload bytes of that frame still to come
        self._failed: StreamError | None = None

    @property
    def pending(self) -> int:
        """Bytes held: an incomplete header or (whole-frame mode) payload."""
        return len(self._buf)

    @property
    def current(self) -> int | None:
        """Stream type of the frame in progress (header read, payload incomplete)."""
        return self._stream if self._stream >= 0 else None

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        if self._failed is not None:
            raise self._failed
        buf = self._buf
        buf += data
        out: list[tuple[int, bytes]] = []
        pos = 0
        n = len(buf)
        while True:
            if self._stream < 0:
                if n - pos < HEADER_SIZE:
                    break
                self._stream, self._remaining = self._parse_header(buf, pos)
                pos += HEADER_SIZE
                if self._remaining == 0:
                    self._stream = -1
                    continue
            avail = n - pos
            if self._partial:
                take = min(avail, self._remaining)
                if take == 0:
                    break
                out.append((self._stream, bytes(buf[pos : pos + take])))
                pos += take
                self._remaining -= take
            else:
                if avail < self._remaining:
                    break
                out.append((self._stream, bytes(buf[pos : pos + self._remaining])))
                pos += self._remaining
                self._remaining = 0
            if self._remaining == 0:
                self._stream = -1
        # One compaction per feed, not per frame: keeps many small frames linear.
        del buf[:pos]
        return out

    def _parse_header(self, buf: bytearray, pos: int) -> tuple[int, int]:
        header = bytes(buf[pos : pos + HEADER_SIZE])
        stream_id = header[0]
        if stream_id > SYSTEMERR or header[1:4] != b"\0\0\0":
            self._failed = StreamError(
                f"invalid stream header {header.hex(' ')}: stream type {stream_id} "
                "(expected 0-3 followed by three zero bytes); is this a TTY (raw) stream?"
            )
            raise self._failed
        return stream_id, _HEADER.unpack(header)[1]

    def close(self) -> None:
        """Declare the end of input: raises :class:`StreamError` if it ends mid-frame."""
        if self._failed is not None:
            raise self._failed
        if self._stream >= 0:
            raise StreamError(
                f"stream ended in the middle of a frame ({self._remaining} of its bytes missing)"
            )
        if self._buf:
            raise StreamError(f"stream ended in the middle of a frame header ({len(self._buf)} of 8 bytes)")


def _read_fn(reader: Any) -> Any:
    for name in ("recv", "read1", "read"):
        fn = getattr(reader, name, None)
        if fn is not None:
            return fn
    raise TypeError(f"cannot read from {reader!r}")


def _write(out: IO[bytes] | None, data: bytes) -> None:
    if out is None:
        return
    out.write(data)
    # Interactive output: don't let a buffered writer sit on a prompt.
    flush = getattr(out, "flush", None)
    if flush is not None:
        flush()


def demux_to(reader: Any, stdout: IO[bytes] | None, stderr: IO[bytes] | None) -> int:
    """Copy a multiplexed stream from ``reader`` (a socket or a binary file) to
    ``stdout`` / ``stderr`` (binary files; ``None`` discards) until EOF, like docker's
    ``stdcopy.StdCopy``: stdin frames go to stdout, a systemerr frame raises
    :class:`StreamError` with the daemon's message. Returns the payload bytes written.

    Payloads are written as they arrive, not once their frame is complete."""
    read = _read_fn(reader)
    demuxer = Demuxer(partial=True)
    written = 0
    err_parts: list[bytes] = []
    while True:
        data = read(_READ_SIZE)
        if not data:
            break
        for stream_id, payload in demuxer.feed(data):
            if stream_id == SYSTEMERR:
                err_parts.append(payload)
                continue
            if err_parts:  # the systemerr frame is complete: report it
                raise _daemon_error(err_parts)
            _write(stderr if stream_id == STDERR else stdout, payload)
            written += len(payload)
        if err_parts and demuxer.current != SYSTEMERR:
            raise _daemon_error(err_parts)
    if err_parts:
        raise _daemon_error(err_parts)
    demuxer.close()
    return written


def _daemon_error(parts: list[bytes]) -> StreamError:
    message = b"".join(parts).decode("utf-8", "replace").strip()
    return StreamError(f"error from daemon in stream: {message}")
