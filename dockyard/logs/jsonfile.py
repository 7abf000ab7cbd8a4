"""The json-file log driver's on-disk format and its writer, compatible with docker's files.

One JSON object per line, keys in docker's order::

    {"log":"hello\\n","stream":"stdout","time":"2024-01-01T00:00:00.123456789Z"}

Format decisions (docker/moby is the reference; where we differ it is said why):

* ``time`` is Go's ``time.RFC3339Nano`` in UTC, as docker writes it: nanoseconds with
  trailing zeros trimmed (``...:00.1Z``, ``...:00Z``). Timestamps are kept as integer
  nanoseconds (``time.time_ns()``) because a float cannot hold nanoseconds of a 2020s epoch.
* ``log`` is escaped the way docker's encoder does (Go's HTML-safe JSON): ``\\n \\r \\t \\" \\\\``
  short escapes, other control characters and ``< > &`` U+2028 U+2029 as ``\\u00XX``; non-ASCII
  UTF-8 is written as raw UTF-8, not ``\\u`` escaped.
* Invalid UTF-8: docker replaces each bad byte with U+FFFD, losing it. We decode with
  ``surrogateescape`` and write each bad byte 0xXX as the JSON escape ``\\udcXX`` (a lone
  surrogate). Our reader turns it back into the original byte, so output round-trips exactly;
  docker's own reader (Go) decodes a lone surrogate escape to U+FFFD, i.e. it sees exactly what
  it would have written itself. Valid UTF-8 never produces these escapes.
* Lines: each ``\\n``-terminated line is one record. A line whose content exceeds 16 KiB is cut
  into 16 KiB records without trailing ``\\n`` (``partial``), the last piece carries the ``\\n``;
  every piece carries the time of the first piece, as docker's copier does. (Docker emits a line
  of exactly 16 KiB plus ``\\n`` as a partial and a lone ``"\\n"`` record; we keep it whole.)
* A trailing line without ``\\n`` stays buffered per stream until its newline arrives or
  ``flush_partial()``/``close()``; then it is written with ``\\n`` appended, as docker's
  json-file does for the last message of a stream (``flush_partial(newline=False)`` keeps it a
  partial record instead).
* Rotation: before a record that would take the file past ``max_size`` the file is rotated
  (``path.N-1`` deleted, ``path.i`` -> ``path.i+1``, ``path`` -> ``path.1``, new ``path``).
  Docker rotates *after* the file has passed max-size; rotating before keeps each file within
  ``max_size`` unless a single record is larger. The whole rename sequence holds an exclusive
  ``flock`` on the log directory; readers take it shared while they open files, so a reader
  never observes a half-rotated set (see ``dockyard.logs.reader``).
* ``compress=True`` gzips ``path.1`` after a rotation in a background thread (docker does it
  in a goroutine) to ``path.1.gz``; the gzip header's Extra field holds docker's JSON metadata
  ``{"lastTime": ...}`` plus ``"dockyardIno"``, the inode of the uncompressed file, so a
  follower that still holds that inode open can tell where it sits in the rotation order.
* Defaults are bounded: 3 files of 10 MiB (docker's default is unbounded). ``max_size=None``
  or ``-1`` means unbounded.

Imports are kept cheap (no dataclasses, calendar, threading or zlib until needed): the
supervisor, a long-lived process whose memory is the host-side cost of every container,
writes through this module.
"""

from __future__ import annotations

import _thread
import fcntl
import os
import time

from dockyard import jsonc
from dockyard.errors import InvalidArgument
from dockyard.suppress import suppress

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only
    import re
    import threading
    from collections.abc import Mapping

DEFAULT_MAX_SIZE = 10 * 1024 * 1024
DEFAULT_MAX_FILE = 3
MAX_RECORD_DATA = 16 * 1024  # docker's copier buffer: longer lines are split into partials
STREAMS = ("stdout", "stderr")

# --------------------------------------------------------------------------- time


# Small memo dicts rather than functools.lru_cache: functools (and the collections it
# imports) would stay in the supervisor for good. Cleared when full; races are harmless.
_MEMO_MAX = 256
_seconds_text: dict[int, str] = {}
_epoch: dict[tuple[str, ...], int] = {}
_time_pattern: list[re.Pattern[str]] = []


def _format_seconds(sec: int) -> str:
    text = _seconds_text.get(sec)
    if text is None:
        if len(_seconds_text) >= _MEMO_MAX:
            _seconds_text.clear()
        text = _seconds_text[sec] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    return text


def format_time(ns: int) -> str:
    """Go's RFC3339Nano in UTC (docker's json-file ``time``): trailing zeros trimmed."""
    sec, frac = divmod(ns, 1_000_000_000)
    if frac:
        return f"{_format_seconds(sec)}.{frac:09d}".rstrip("0") + "Z"
    return _format_seconds(sec) + "Z"


def format_time_fixed(ns: int) -> str:
    """RFC3339 with exactly nine fractional digits: what ``docker logs -t`` prints."""
    sec, frac = divmod(ns, 1_000_000_000)
    return f"{_format_seconds(sec)}.{frac:09d}Z"


_TIME_PATTERN = (
    r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?(?:([Zz])|([+-])(\d\d):(\d\d))\Z"
)


def _time_re() -> re.Pattern[str]:
    if not _time_pattern:
        import re  # the daemon's reader parses times; the supervisor's writer never does

        _time_pattern.append(re.compile(_TIME_PATTERN))
    return _time_pattern[0]


def _epoch_seconds(y: str, mo: str, d: str, h: str, mi: str, s: str) -> int:
    key = (y, mo, d, h, mi, s)
    sec = _epoch.get(key)
    if sec is None:
        import calendar  # the daemon's reader parses times; the supervisor's writer never does

        if len(_epoch) >= _MEMO_MAX:
            _epoch.clear()
        sec = _epoch[key] = calendar.timegm((int(y), int(mo), int(d), int(h), int(mi), int(s), 0, 0, 0))
    return sec


def parse_time(text: str) -> int:
    """An RFC3339 timestamp (any number of fractional digits, any offset) -> ns since epoch."""
    m = _time_re().match(text)
    if m is None:
        raise ValueError(f"invalid RFC3339 timestamp {text!r}")
    y, mo, d, h, mi, s, frac, _z, sign, oh, om = m.groups()
    ns = _epoch_seconds(y, mo, d, h, mi, s) * 1_000_000_000
    if frac:
        ns += int(frac[:9].ljust(9, "0"))
    if sign:
        offset = (int(oh) * 3600 + int(om) * 60) * 1_000_000_000
        ns += -offset if sign == "+" else offset
    return ns


def to_ns(ts: float | int | None) -> int:
    if ts is None:
        return time.time_ns()
    if isinstance(ts, int):  # already whole seconds: avoid float rounding
        return ts * 1_000_000_000
    sec = int(ts)
    return sec * 1_000_000_000 + round((ts - sec) * 1_000_000_000)


# --------------------------------------------------------------------------- JSON text

_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
# what docker's encoder escapes: control characters, '"\\<>&', U+2028/U+2029, and lone
# surrogates (our invalid-UTF-8 bytes, see above)
_ASCII_ESCAPED = '"\\<>&'


_escapes: dict[int, str] | None = None


def _escape_table() -> dict[int, str]:
    """``str.translate``'s table for what docker escapes, for decoded bytes: a
    surrogateescape decode yields lone surrogates U+DC80-U+DCFF only. One C-level pass,
    several times faster than a Python callback per escaped character (a stream of NULs
    or binary output is mostly escapes)."""
    global _escapes
    if _escapes is None:
        table = {c: f"\\u{c:04x}" for c in (*range(0x20), *range(0xDC80, 0xDD00), 0x3C, 0x3E, 0x26, 0x2028, 0x2029)}
        table.update((ord(c), esc) for c, esc in _SHORT_ESCAPES.items())
        _escapes = table
    return _escapes


def encode_log_text(data: bytes) -> bytes:
    """``data`` as a JSON string literal (with quotes), escaped as docker does."""
    text = data.decode("utf-8", "surrogateescape")
    # printable ASCII without '"\\<>&' needs nothing; checked without ``re`` (the supervisor
    # keeps what it imports for life), each test one C-level pass
    if not (text.isascii() and text.isprintable()) or any(c in text for c in _ASCII_ESCAPED):
        text = text.translate(_escape_table())
    return b'"' + text.encode("utf-8") + b'"'


def decode_log_text(text: str) -> bytes:
    """Inverse of ``encode_log_text`` after ``json.loads``: the original bytes."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        # a surrogate escape we did not write (another tool's file): Go would read U+FFFD
        import re  # only for another tool's file

        return re.sub("[\ud800-\udc7f\udd00-\udfff]", "\ufffd", text).encode("utf-8", "surrogateescape")


def encode_record(stream: str, data: bytes, ns: int, attrs_json: bytes = b"") -> bytes:
    """One json-file line: ``{"log":...,"stream":...[,"attrs":...],"time":...}\\n``."""
    return b"".join((
        b'{"log":', encode_log_text(data), b',"stream":"', stream.encode(), b'"', attrs_json,
        b',"time":"', format_time(ns).encode(), b'"}\n',
    ))


# --------------------------------------------------------------------------- options


class JSONFileOptions:
    """Parsed ``--log-opt`` values for the json-file driver (immutable)."""

    __slots__ = ("max_size", "max_file", "compress", "extra")
    max_size: int | None  # None: unbounded
    max_file: int
    compress: bool
    extra: dict[str, str]  # labels, env, tag, mode, ...: not ours

    def __init__(self, max_size: int | None = DEFAULT_MAX_SIZE, max_file: int = DEFAULT_MAX_FILE,
                 compress: bool = False, extra: dict[str, str] | None = None) -> None:
        for name, value in (("max_size", max_size), ("max_file", max_file), ("compress", compress),
                            ("extra", {} if extra is None else extra)):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}")

    def _key(self) -> tuple[object, ...]:
        return (self.max_size, self.max_file, self.compress, self.extra)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._key() == other._key()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((self.max_size, self.max_file, self.compress, tuple(sorted(self.extra.items()))))

    def __repr__(self) -> str:
        return (f"JSONFileOptions(max_size={self.max_size!r}, max_file={self.max_file!r}, "
                f"compress={self.compress!r}, extra={self.extra!r})")

    def writer(self, path: str) -> JSONFileWriter:
        return JSONFileWriter(path, self.max_size, self.max_file, self.compress)


# keys docker's json-file accepts (labels/env/tag feed "attrs"); mode and max-buffer-size are
# generic options the daemon strips before asking the driver
_KNOWN_OPTS = {"max-size", "max-file", "compress", "labels", "labels-regex", "env", "env-regex",
               "tag", "mode", "max-buffer-size"}
_DECIMAL = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15}
_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def _parse_human_size(value: str) -> int:
    # docker uses go-units FromHumanSize: decimal multiples, so "10m" is 10,000,000 bytes
    split = _split_size(value)
    if split is None:
        raise InvalidArgument(f"invalid size: '{value}'")
    try:
        number = float(split[0])
    except ValueError:  # "1.2.3" has go-units' form, but is no number
        raise InvalidArgument(f"invalid size: '{value}'") from None
    return int(number * _DECIMAL[split[1].lower()])


def _split_size(value: str) -> tuple[str, str] | None:
    """(number, unit letter or "") if ``value`` matches ``(\\d+(?:\\.\\d+)*) ?([kmgtp])?i?b?\\Z``
    (any case), else None; without ``re``, the supervisor keeps what it imports for life."""
    end = len(value)
    i = _skip_digits(value, 0)
    if i == 0:
        return None
    while i < end and value[i] == "." and (j := _skip_digits(value, i + 1)) > i + 1:
        i = j
    number, rest = value[:i], value[i:].removeprefix(" ")
    unit = rest[:1] if rest[:1] in ("k", "K", "m", "M", "g", "G", "t", "T", "p", "P") else ""
    rest = rest[len(unit):]
    rest = rest[1:] if rest[:1] in ("i", "I") else rest
    rest = rest[1:] if rest[:1] in ("b", "B") else rest
    return (number, unit) if rest == "" else None


def _is_int(s: str) -> bool:
    """``[+-]?\\d+``, as Go's strconv.Atoi takes it."""
    digits = s[1:] if s[:1] in ("+", "-") else s
    return digits.isdecimal()


def _skip_digits(s: str, i: int) -> int:
    while i < len(s) and s[i].isdecimal():
        i += 1
    return i


def parse_log_opts(opts: Mapping[str, str] | None) -> JSONFileOptions:
    """Validate ``--log-opt`` strings as docker's json-file driver does, with its messages.

    Differences: absent ``max-size`` means our bounded default, not unbounded, so
    ``max-size=-1`` is accepted as "unbounded" (docker rejects it as an invalid size).
    """
    opts = dict(opts or {})
    for key in opts:
        if key not in _KNOWN_OPTS:
            raise InvalidArgument(f"unknown log opt '{key}' for json-file log driver")
    max_size: int | None = DEFAULT_MAX_SIZE
    if "max-size" in opts:
        raw = opts["max-size"].strip()
        if raw == "-1":
            max_size = None
        else:
            max_size = _parse_human_size(raw)
            if max_size <= 0:
                raise InvalidArgument("max-size must be a positive number")
    max_file = DEFAULT_MAX_FILE
    if "max-file" in opts:
        raw = opts["max-file"]
        try:
            max_file = int(raw.strip()) if _is_int(raw.strip()) else int("x")
        except ValueError:
            raise InvalidArgument(f'strconv.Atoi: parsing "{raw}": invalid syntax') from None
        if max_file < 1:
            raise InvalidArgument("max-file cannot be less than 1")
    compress = False
    if "compress" in opts:
        raw = opts["compress"]
        if raw in _TRUE:
            compress = True
        elif raw not in _FALSE:
            raise InvalidArgument(f'strconv.ParseBool: parsing "{raw}": invalid syntax')
        if compress and (max_file == 1 or max_size is None):
            raise InvalidArgument(
                "compress cannot be true when max-file is less than 2 or max-size is not set")
    extra = {k: v for k, v in opts.items() if k not in ("max-size", "max-file", "compress")}
    return JSONFileOptions(max_size, max_file, compress, extra)


# --------------------------------------------------------------------------- rotation lock


class rotation_lock:  # noqa: N801 - used as a function: ``with rotation_lock(path, ...)``
    """flock on the log's directory: the writer renames under it exclusively, readers open
    the file set under it shared. A directory lock needs no extra file next to the logs.
    (A class, not a contextlib generator: the supervisor keeps contextlib out.)"""

    def __init__(self, path: str, *, exclusive: bool) -> None:
        self._path = path
        self._exclusive = exclusive
        self._fd = -1

    def __enter__(self) -> None:
        self._fd = os.open(os.path.dirname(os.path.abspath(self._path)), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX if self._exclusive else fcntl.LOCK_SH)
        except BaseException:
            os.close(self._fd)
            raise

    def __exit__(self, *exc: object) -> None:
        os.close(self._fd)  # closing the last fd of the open file description drops the flock


def rotated_name(path: str, index: int, gz: bool = False) -> str:
    if index == 0:
        return path
    return f"{path}.{index}" + (".gz" if gz else "")


# --------------------------------------------------------------------------- gzip with Extra


def write_gzip(src_fd: int, dest: str, extra: bytes, mtime: int) -> None:
    """Gzip ``src_fd`` into ``dest`` with a raw Extra field (docker stores JSON there; Python's
    gzip module cannot write one)."""
    header = (b"\x1f\x8b\x08\x04" + (mtime & 0xFFFFFFFF).to_bytes(4, "little") + b"\x00\xff"
              + len(extra).to_bytes(2, "little") + extra)
    import zlib

    comp = zlib.compressobj(1, zlib.DEFLATED, -15)  # level 1: docker uses gzip.BestSpeed too
    crc = 0
    size = 0
    offset = 0
    with open(dest, "wb") as out:
        out.write(header)
        while True:
            chunk = os.pread(src_fd, 1 << 20, offset)
            if not chunk:
                break
            offset += len(chunk)
            crc = zlib.crc32(chunk, crc)
            size += len(chunk)
            out.write(comp.compress(chunk))
        out.write(comp.flush())
        out.write(crc.to_bytes(4, "little") + (size & 0xFFFFFFFF).to_bytes(4, "little"))
        out.flush()
        os.fsync(out.fileno())


def read_gzip_extra(fd: int) -> bytes | None:
    """The Extra field of the gzip file open at ``fd`` (None if it has none)."""
    head = os.pread(fd, 12, 0)
    if len(head) < 12 or head[:2] != b"\x1f\x8b" or not head[3] & 0x04:
        return None
    xlen = int.from_bytes(head[10:12], "little")
    return os.pread(fd, xlen, 12)


# --------------------------------------------------------------------------- writer


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class JSONFileWriter:
    """Appends a container's output to ``path`` in docker's json-file format, rotating it.

    Thread-safe: the supervisor may pump stdout and stderr from different threads. Reopening
    an existing file appends to it (a restarted supervisor keeps the container's log).
    """

    def __init__(self, path: str, max_size: int | None = DEFAULT_MAX_SIZE,
                 max_file: int = DEFAULT_MAX_FILE, compress: bool = False, *,
                 attrs: Mapping[str, str] | None = None, mode: int = 0o640) -> None:
        if max_size is not None and max_size == -1:
            max_size = None
        if max_size is not None and max_size <= 0:
            raise ValueError("max-size must be a positive number")
        if max_file < 1:
            raise ValueError("max-file cannot be less than 1")
        if compress and (max_file < 2 or max_size is None):
            raise ValueError("compress cannot be true when max-file is less than 2 or max-size is not set")
        self.path = os.path.abspath(path)
        self.max_size = max_size
        self.max_file = max_file
        self.compress = compress
        self._mode = mode
        self._attrs_json = (b',"attrs":' + jsonc.dumps(dict(attrs), separators=(",", ":")).encode()
                            if attrs else b"")
        self._lock = _thread.allocate_lock()  # threading.Lock without importing threading
        # O_RDWR, not O_WRONLY: after a rotation the compressor reads the old file through
        # this same fd (pread ignores O_APPEND), so no reopen by a name that may have moved
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, mode)
        self._size = os.fstat(self._fd).st_size
        self._pending = {s: bytearray() for s in STREAMS}
        # time of the first piece of a line already split into partial records
        self._group_ns: dict[str, int | None] = {s: None for s in STREAMS}
        self._last_ns = 0
        self._compressor: threading.Thread | None = None
        self._compress_error: BaseException | None = None

    # -- public

    def write(self, stream: str, data: bytes, ts: float | None = None) -> None:
        """Log ``data`` read from the container's ``stream``; complete lines are written now."""
        if stream not in self._pending:
            raise ValueError(f"unknown stream {stream!r}")
        ns = to_ns(ts)
        with self._lock:
            self._check_open()
            buf = self._pending[stream]
            buf += data
            records: list[bytes] = []
            pos, n = 0, len(buf)
            while pos < n:
                # a newline within the first 16 KiB + 1 bytes ends a record that fits whole
                nl = buf.find(b"\n", pos, pos + MAX_RECORD_DATA + 1)
                if nl >= 0:
                    group = self._group_ns[stream]
                    records.append(self._encode(stream, bytes(buf[pos:nl + 1]), group or ns))
                    self._group_ns[stream] = None
                    pos = nl + 1
                elif n - pos > MAX_RECORD_DATA:
                    group = self._group_ns[stream] = self._group_ns[stream] or ns
                    records.append(self._encode(stream, bytes(buf[pos:pos + MAX_RECORD_DATA]), group))
                    pos += MAX_RECORD_DATA
                else:
                    break  # an unterminated line: wait for its newline
            del buf[:pos]
            self._append(records)

    def flush_partial(self, stream: str | None = None, *, newline: bool = True, ts: float | None = None) -> None:
        """Write buffered unterminated lines (docker does this when a stream closes). With
        ``newline`` (docker's behaviour) a ``\\n`` is appended; without, it stays a partial."""
        ns = to_ns(ts)
        with self._lock:
            self._check_open()
            records = []
            for s in (stream,) if stream else STREAMS:
                buf = self._pending[s]
                if buf:
                    data = bytes(buf) + (b"\n" if newline else b"")
                    records.append(self._encode(s, data, self._group_ns[s] or ns))
                    buf.clear()
                    self._group_ns[s] = None if newline else (self._group_ns[s] or ns)
            self._append(records)

    def close(self) -> None:
        """Flush unterminated lines, wait for a pending compression, close the file."""
        if self._fd is None:
            return
        self.flush_partial()
        with self._lock:
            self._join_compressor()
            os.close(self._fd)
            self._fd = None

    @property
    def closed(self) -> bool:
        return self._fd is None

    def __enter__(self) -> JSONFileWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals (called with self._lock held)

    def _check_open(self) -> None:
        if self._fd is None:
            raise ValueError("write to a closed JSONFileWriter")

    def _encode(self, stream: str, data: bytes, ns: int) -> bytes:
        self._last_ns = max(self._last_ns, ns)
        return encode_record(stream, data, ns, self._attrs_json)

    def _append(self, records: list[bytes]) -> None:
        # one write(2) per call in the common case; a rotation splits the batch
        assert self._fd is not None
        batch: list[bytes] = []
        batch_size = 0
        for rec in records:
            if (self.max_size is not None and self._size + batch_size > 0
                    and self._size + batch_size + len(rec) > self.max_size):
                if batch:
                    _write_all(self._fd, b"".join(batch))
                    self._size += batch_size
                    batch, batch_size = [], 0
                self._rotate()
            batch.append(rec)
            batch_size += len(rec)
        if batch:
            _write_all(self._fd, b"".join(batch))
            self._size += batch_size

    def _rotate(self) -> None:
        assert self._fd is not None
        # the previous path.1 must be compressed (and renamed .gz) before it moves on
        self._join_compressor()
        old_fd = self._fd
        with rotation_lock(self.path, exclusive=True):
            if self.max_file == 1:
                os.unlink(self.path)  # followers keep the old inode open and drain it
            else:
                for gz in (False, True):
                    with suppress(FileNotFoundError):
                        os.unlink(rotated_name(self.path, self.max_file - 1, gz))
                for i in range(self.max_file - 2, 0, -1):
                    for gz in (False, True):
                        with suppress(FileNotFoundError):
                            os.rename(rotated_name(self.path, i, gz), rotated_name(self.path, i + 1, gz))
                os.rename(self.path, rotated_name(self.path, 1))
            self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                               self._mode)
        self._size = 0
        if self.compress:
            import threading

            ino = os.fstat(old_fd).st_ino
            self._compressor = threading.Thread(target=self._compress_rotated, args=(old_fd, ino, self._last_ns),
                                                name="jsonfile-compress", daemon=True)
            self._compressor.start()
        else:
            os.close(old_fd)

    def _join_compressor(self) -> None:
        if self._compressor is not None:
            self._compressor.join()
            self._compressor = None
        if self._compress_error is not None:
            err, self._compress_error = self._compress_error, None
            raise err

    def _compress_rotated(self, fd: int, ino: int, last_ns: int) -> None:
        # path.1 cannot move while we run: the next rotation joins this thread first
        src = rotated_name(self.path, 1)
        tmp = src + ".gz.tmp"
        try:
            extra = jsonc.dumps({"lastTime": format_time(last_ns), "dockyardIno": ino},
                               separators=(",", ":")).encode()
            write_gzip(fd, tmp, extra, last_ns // 1_000_000_000)
            with rotation_lock(self.path, exclusive=True):
                os.rename(tmp, src + ".gz")
                os.unlink(src)
        except BaseException as err:  # reported by the next rotation or close()
            self._compress_error = err
            with suppress(FileNotFoundError):
                os.unlink(tmp)
        finally:
            os.close(fd)
