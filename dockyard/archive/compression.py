"""Streaming (de)compression of layer blobs, detected by magic bytes.

Nothing here needs ``seek``: layer blobs arrive from sockets and can be gigabytes, so the
first bytes are peeked into a small buffer and replayed in front of the rest of the stream.
"""

from __future__ import annotations

import bz2
import io
import lzma
import shutil
import zlib
from typing import BinaryIO, Literal

import zstandard

from dockyard.errors import DataCorruption, InvalidArgument

try:  # python-isal is several times faster than zlib; it is optional on odd architectures
    from isal import igzip as _gzip
except ImportError:  # pragma: no cover - depends on the platform
    import gzip as _gzip  # type: ignore[no-redef]

Compression = Literal["gzip", "zstd", "bzip2", "xz"]

_CHUNK = 1 << 20
_MAGIC_LEN = 6
# zstd: a frame, or a skippable frame (0x184D2A50..5F little endian; zstd:chunked uses them)
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_XZ_MAGIC = b"\xfd7zXZ\x00"
# The default zstd decoder refuses windows > 128 MiB; accept what `zstd --long` writes
# (Go's klauspost decoder, used by docker, allows 512 MiB) but no more, to bound memory.
_ZSTD_MAX_WINDOW = 1 << 29


def detect_compression(prefix: bytes) -> Compression | None:
    """Compression of a blob from its first bytes (6 are enough); None means plain."""
    if prefix.startswith(b"\x1f\x8b"):
        return "gzip"
    if prefix.startswith(_ZSTD_MAGIC) or (
        len(prefix) >= 4 and prefix[0] & 0xF0 == 0x50 and prefix[1:4] == b"\x2a\x4d\x18"
    ):
        return "zstd"
    if prefix.startswith(b"BZh"):
        return "bzip2"
    if prefix.startswith(_XZ_MAGIC):
        return "xz"
    return None


class _Prefixed(io.RawIOBase):
    """Replays already-read ``prefix`` bytes, then reads on from ``stream``."""

    def __init__(self, prefix: bytes, stream: BinaryIO) -> None:
        self._prefix = memoryview(prefix)
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:  # type: ignore[override]
        if self._prefix:
            n = min(len(buf), len(self._prefix))
            buf[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        data = self._stream.read(len(buf))
        buf[: len(data)] = data
        return len(data)


class _Checked(io.RawIOBase):
    """Turns the decompressors' assorted exceptions into DataCorruption."""

    _ERRORS = (zlib.error, zstandard.ZstdError, lzma.LZMAError, EOFError, OSError, ValueError)

    def __init__(self, stream, kind: str) -> None:
        self._stream = stream
        self._kind = kind

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        try:
            return self._stream.read(size)
        except self._ERRORS as err:
            raise DataCorruption(f"invalid {self._kind} stream: {err}") from err

    def readinto(self, buf) -> int:  # type: ignore[override]
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            super().close()


class _ZstdReader(io.RawIOBase):
    """Multi-frame zstd decoder that notices truncation (python-zstandard's stream_reader
    silently stops at a cut frame). Input goes to the decoder in small slices because one
    decompress() call returns all its output at once and zstd can expand ~32000:1 (RLE
    blocks): 1 KiB in is at most ~32 MiB out."""

    _SLICE = 1024

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._dctx = zstandard.ZstdDecompressor(max_window_size=_ZSTD_MAX_WINDOW)
        self._obj = None  # decoder of the frame in progress
        self._in = memoryview(b"")
        self._out = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:  # type: ignore[override]
        while not self._out:
            if not self._in:
                data = self._raw.read(_CHUNK)
                if not data:
                    if self._obj is not None:
                        raise DataCorruption("invalid zstd stream: truncated frame")
                    return 0
                self._in = memoryview(data)
            if self._obj is None:
                self._obj = self._dctx.decompressobj()
            piece, self._in = self._in[: self._SLICE], self._in[self._SLICE :]
            self._out = memoryview(self._obj.decompress(piece))
            if self._obj.eof:  # frame done; what followed it starts the next one
                rest = self._obj.unused_data
                self._obj = None
                if rest:
                    self._in = memoryview(bytes(rest) + bytes(self._in))
        n = min(len(buf), len(self._out))
        buf[:n] = self._out[:n]
        self._out = self._out[n:]
        return n


def _peek(stream: BinaryIO, n: int) -> bytes:
    parts: list[bytes] = []
    got = 0
    while got < n:
        data = stream.read(n - got)
        if not data:
            break
        parts.append(data)
        got += len(data)
    return b"".join(parts)


def decompress(stream: BinaryIO) -> BinaryIO:
    """A readable stream of ``stream``'s content, decompressed if it is gzip/zstd/bzip2/xz.

    Corrupt compressed data raises DataCorruption from ``read``. Closing the result does
    not close ``stream``.
    """
    prefix = _peek(stream, _MAGIC_LEN)
    kind = detect_compression(prefix)
    raw = io.BufferedReader(_Prefixed(prefix, stream), _CHUNK)
    if kind is None:
        return raw  # type: ignore[return-value]
    if kind == "gzip":
        inner = _gzip.GzipFile(fileobj=raw, mode="rb")
    elif kind == "zstd":
        inner = io.BufferedReader(_ZstdReader(raw), _CHUNK)
    elif kind == "bzip2":
        inner = bz2.BZ2File(raw, mode="rb")
    else:
        inner = lzma.LZMAFile(raw, mode="rb")
    return _Checked(inner, kind)  # type: ignore[return-value]


def compress(src: BinaryIO, dst: BinaryIO, kind: Compression, *, level: int | None = None) -> None:
    """Stream ``src`` into ``dst`` compressed as ``kind``; deterministic output (gzip header
    carries no name and mtime 0). ``dst`` is flushed, not closed. ``level`` is the codec's
    own scale (isal's gzip: 0-3, stdlib's: 0-9; zstd: 1-22)."""
    if kind == "gzip":
        kwargs = {} if level is None else {"compresslevel": level}
        with _gzip.GzipFile(filename="", fileobj=dst, mode="wb", mtime=0, **kwargs) as out:
            shutil.copyfileobj(src, out, _CHUNK)
    elif kind == "zstd":
        # a content checksum, so corruption is caught even in stored (raw) blocks
        cctx = zstandard.ZstdCompressor(level=3 if level is None else level, write_checksum=True)
        cctx.copy_stream(src, dst, read_size=_CHUNK, write_size=_CHUNK)
    elif kind == "bzip2":
        with bz2.BZ2File(dst, mode="wb", compresslevel=9 if level is None else level) as out:
            shutil.copyfileobj(src, out, _CHUNK)
    elif kind == "xz":
        with lzma.LZMAFile(dst, mode="wb", preset=level) as out:
            shutil.copyfileobj(src, out, _CHUNK)
    else:
        raise InvalidArgument(f"unsupported compression: {kind!r}")
    dst.flush()
