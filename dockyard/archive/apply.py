"""Apply a layer tar onto a snapshot without mounting it.

The tar is read in stream mode and every entry is created by hand (never tarfile's
extract*): its parent is resolved inside the root (see scoped.py) and the entry itself is
created relative to that directory fd without following a symlink in its place.

Whiteouts (OCI image-spec layer.md): ``.wh.<name>`` hides ``<name>`` of the lower layers,
``.wh..wh..opq`` hides all lower content of its directory; neither ever hides what the
same layer adds. Native (bind) targets delete; overlay upperdirs get overlayfs' own
markers (char 0/0 device, ``trusted.overlay.opaque=y``) so the lowerdirs stay untouched.
"""

from __future__ import annotations

import errno
import hashlib
import os
import posixpath
import queue
import shutil
import stat
import struct
import tarfile
import threading
from base64 import b64decode
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, BinaryIO
from urllib.parse import unquote_to_bytes

from dockyard.archive.compression import decompress
from dockyard.archive.layers import (
    META_PREFIX,
    OPAQUE_MARKER,
    WHITEOUT_PREFIX,
    LayerView,
    Node,
    Stack,
    is_overlay_xattr,
    is_whiteout,
    stack_of,
)
from dockyard.archive.scoped import ScopedRoot, copy_xattrs, join, proc_path
from dockyard.errors import DataCorruption, InvalidArgument
from dockyard.snapshots.base import Mount

_AHEAD = 8  # chunks the read-ahead thread may hold
_CHUNK = 1 << 20
_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_IGNORED_XATTR_ERRORS = (errno.ENOTSUP, errno.EPERM)  # fs without xattrs, user.* on symlinks


@dataclass(frozen=True)
class ApplyResult:
    diff_id: str  # "sha256:..." of the uncompressed tar stream, to its very last byte
    size: int  # bytes of regular-file content


class _Hashing:
    """Reader that hashes everything read through it."""

    def __init__(self, src: BinaryIO) -> None:
        self._src = src
        self._hash = hashlib.sha256()
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._src.read(size)
        self._hash.update(data)
        self.count += len(data)
        return data

    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()


class _ReadAhead:
    """Reads ``src`` in a thread of its own, up to _AHEAD chunks ahead of the consumer: the
    decompression and the diff-ID hash (isal and hashlib release the GIL) then run on another
    CPU than the tar parsing and the file creation. Errors reach the consumer in order."""

    def __init__(self, src: Any) -> None:
        self._src = src
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(_AHEAD)
        self._buf, self._pos = b"", 0
        self._eof = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="layer-read-ahead", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                item: bytes | BaseException = self._src.read(_CHUNK)
            except BaseException as e:  # handed to the consumer
                item = e
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if not isinstance(item, bytes) or not item:
                return

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all that is left for -1); b"" at the end. Pieces are cut
        from the current chunk by offset: tarfile reads in 10 KiB steps."""
        parts: list[bytes] = []
        want = size
        while want != 0:
            if self._pos >= len(self._buf):
                if self._eof:
                    break
                item = self._queue.get()
                if isinstance(item, BaseException):
                    self._eof = True
                    raise item
                if not item:
                    self._eof = True
                    break
                self._buf, self._pos = item, 0
            end = len(self._buf) if want < 0 else min(len(self._buf), self._pos + want)
            parts.append(self._buf[self._pos:end])
            if want > 0:
                want -= end - self._pos
            self._pos = end
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def close(self) -> None:
        """Stop the thread (before the source is closed under it)."""
        self._stop.set()
        self._thread.join(timeout=60)


def clean(name: str) -> str:
    """Docker's cleaning of a member name: rooted, then relative (``/etc/x`` and
    ``../../etc/x`` are both ``etc/x``; the root itself is "")."""
    return posixpath.normpath("/" + name).lstrip("/")


def apply_layer(stream: BinaryIO, mounts: Sequence[Mount], *,
                final_mounts: Callable[[], Sequence[Mount]] | None = None, whiteouts: bool = True) -> ApplyResult:
    """Apply a (possibly compressed) layer tar onto the snapshot ``mounts`` describe.

    ``final_mounts``: ``mounts`` (a bind) is an overlay upperdir whose lower layers are
    still being unpacked; called once, when a lookup first needs those and at the latest
    before returning, it waits for them and returns the snapshot's overlay mounts.
    ``whiteouts=False``: the tar is not an image layer (a build context): ``.wh.`` names are
    files like any other. Raises DataCorruption for malformed or unsafe archives; the
    snapshot may then hold a partial layer and should be removed.
    """
    target = _writable(mounts)
    lowers: list[str] | _PendingView = target.lowers
    if final_mounts is not None:
        target = Stack(target.dirs[:1], overlay=True, upper=target.dirs[0], options=target.options)
        lowers = _PendingView(lambda: stack_of(final_mounts()).lowers, target.xattr_prefix)
    plain = decompress(stream)
    reader = _Hashing(plain)
    ahead = _ReadAhead(reader)
    applier = _Applier(target, lowers, whiteouts)
    try:
        try:
            tf = tarfile.open(fileobj=ahead, mode="r|", encoding="utf-8", errors="surrogateescape",
                              tarinfo=_TarInfo)
        except tarfile.ReadError as err:
            if reader.count:
                raise DataCorruption(f"invalid layer tar: {err}") from err
            tf = None  # an empty stream is an empty layer
        if tf is not None:
            try:
                for member in _members(tf):
                    applier.entry(tf, member)
            except tarfile.TarError as err:
                raise DataCorruption(f"invalid layer tar: {err}") from err
            stop = getattr(tf, "_dockyard_stop", None)
            # tarfile ends the archive quietly on a corrupt header; a clean EOF without
            # the end-of-archive blocks is accepted, as Go's archive/tar (docker) does
            if isinstance(stop, tarfile.InvalidHeaderError | tarfile.TruncatedHeaderError):
                raise DataCorruption(f"invalid layer tar: {stop}")
        applier.finish()
        while ahead.read(_CHUNK):  # tarfile stops at the end-of-archive marker; diff_id covers it all
            pass
    finally:
        applier.close()
        ahead.close()
        plain.close()  # not ``stream``: that is the caller's
    return ApplyResult(reader.digest(), applier.size)


class _PendingView(LayerView):
    """The merged lowers of a layer unpacked before its parent is committed: loaded (and
    waited for) on the first lookup."""

    def __init__(self, load: Callable[[], Sequence[str]], xattr_prefix: str) -> None:
        super().__init__([], True, xattr_prefix)
        self._load: Callable[[], Sequence[str]] | None = load

    def load(self) -> list[str]:
        if self._load is not None:
            self.dirs, self._load = list(self._load()), None
        return self.dirs

    def root(self) -> Node | None:
        self.load()
        return super().root()


def _writable(mounts: Sequence[Mount]) -> Stack:
    s = stack_of(mounts)
    if not s.dirs:
        raise InvalidArgument("cannot apply a layer: no mounts")
    if "ro" in s.options:
        raise InvalidArgument("cannot apply a layer onto a read-only snapshot")
    if s.overlay and s.upper is None:
        raise InvalidArgument("cannot apply a layer onto an overlay without upperdir")
    return s


# a ustar header: name mode uid gid size mtime chksum type linkname (magic, version) uname
# gname devmajor devminor prefix (padding)
_HEADER = struct.Struct("100s8s8s8s12s12s8sc100s8x32s32s8s8s155s12x")
_ZERO_BLOCK = bytes(tarfile.BLOCKSIZE)


def _nti(field: bytes) -> int:
    if field and field[0] & 0x80:
        return tarfile.nti(field)  # base-256 (GNU): rare, tarfile's own code
    try:
        return int(field.partition(b"\0")[0].strip() or b"0", 8)
    except ValueError:
        raise tarfile.InvalidHeaderError("invalid header") from None


def _nts(field: bytes, encoding: str, errors: str) -> str:
    return field.partition(b"\0")[0].decode(encoding, errors)


class _TarInfo(tarfile.TarInfo):
    """Remembers why tarfile stopped reading headers, and parses a header in one struct
    unpack with one checksum pass (tarfile's own frombuf computes two checksums and slices
    each field: a third of the Python time per entry of a layer of small files)."""

    @classmethod
    def frombuf(cls, buf: bytes, encoding: str, errors: str) -> tarfile.TarInfo:
        if len(buf) != tarfile.BLOCKSIZE or buf == _ZERO_BLOCK or buf[156:157] == tarfile.GNUTYPE_SPARSE:
            return super().frombuf(buf, encoding, errors)  # tarfile's errors; old GNU sparse
        (name, mode, uid, gid, size, mtime, chksum, type_, linkname, uname, gname, devmajor, devminor,
         prefix) = _HEADER.unpack(buf)
        obj = cls()
        obj.chksum = _nti(chksum)
        if obj.chksum != sum(buf) - sum(chksum) + 256 and obj.chksum not in tarfile.calc_chksums(buf):
            raise tarfile.InvalidHeaderError("bad checksum")  # (the second: signed, as some old tars)
        obj.name = _nts(name, encoding, errors)
        obj.mode, obj.uid, obj.gid = _nti(mode), _nti(uid), _nti(gid)
        obj.size, obj.mtime = _nti(size), _nti(mtime)
        obj.type = type_
        obj.linkname = _nts(linkname, encoding, errors)
        obj.uname, obj.gname = _nts(uname, encoding, errors), _nts(gname, encoding, errors)
        obj.devmajor, obj.devminor = _nti(devmajor), _nti(devminor)
        if type_ == tarfile.AREGTYPE and obj.name.endswith("/"):
            obj.type = tarfile.DIRTYPE  # old V7 tars: a directory is a file named with a slash
        if obj.isdir():
            obj.name = obj.name.rstrip("/")
        if prefix[0] and type_ not in tarfile.GNU_TYPES:
            obj.name = _nts(prefix, encoding, errors) + "/" + obj.name  # a ustar long name
        return obj

    @classmethod
    def fromtarfile(cls, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        try:
            return super().fromtarfile(tarfile_)
        except tarfile.HeaderError as err:
            tarfile_._dockyard_stop = err  # type: ignore[attr-defined]
            raise


def _members(tf: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    while (member := tf.next()) is not None:
        tf.members.clear()  # stream mode would keep every header in memory otherwise
        yield member


def _pax_ns(member: tarfile.TarInfo, key: str, default: int) -> int:
    value = member.pax_headers.get(key)
    if value is None:
        return default
    try:
        return int(Decimal(value) * 1_000_000_000)
    except (InvalidOperation, ValueError):
        return default


def _times(member: tarfile.TarInfo) -> tuple[int, int]:
    mtime = _pax_ns(member, "mtime", int(member.mtime) * 1_000_000_000)
    return _pax_ns(member, "atime", mtime), mtime


def _xattrs(member: tarfile.TarInfo) -> list[tuple[str, bytes]]:
    out = []
    for key, value in member.pax_headers.items():
        if key.startswith("SCHILY.xattr."):
            name, data = key[13:], value.encode("utf-8", "surrogateescape")
        elif key.startswith("LIBARCHIVE.xattr."):
            name = unquote_to_bytes(key[17:]).decode("utf-8", "surrogateescape")
            try:
                data = b64decode(value + "=" * (-len(value) % 4))
            except ValueError:
                continue
        else:
            continue
        # overlay's own xattrs could turn an upper entry into a redirect or metacopy
        # pointing anywhere in the lowers: never take them from a tar
        if name and not is_overlay_xattr(name):
            out.append((name, data))
    return out


def _set_xattrs(path: str | int, xattrs: list[tuple[str, bytes]], follow: bool) -> None:
    """``follow``: True for an fd's own /proc path (the magic link must be followed),
    False for an entry name inside a directory fd's /proc path."""
    for name, value in xattrs:
        try:
            os.setxattr(path, name, value, follow_symlinks=follow)
        except OSError as err:
            if err.errno not in _IGNORED_XATTR_ERRORS:
                raise


def _umask() -> int:
    """This process's umask, read without setting it (os.umask would race other threads)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o777  # unknown: every file gets its fchmod


_UMASK = _umask()
_EUID, _EGID = os.geteuid(), os.getegid()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class _Applier:
    def __init__(self, target: Stack, lowers: list[str] | _PendingView, whiteouts: bool = True) -> None:
        self.overlay = target.overlay
        self.whiteouts = whiteouts
        self.pending = lowers if isinstance(lowers, _PendingView) else None
        self.root_seen = False  # the tar set the root directory's metadata
        lower: LayerView | None = self.pending
        if lower is None and self.overlay and lowers:
            lower = LayerView(lowers, True, target.xattr_prefix)
        self.root = ScopedRoot(target.dirs[0], lower, self.overlay, target.xattr_prefix)
        self.opaque_xattr = target.xattr_prefix + "opaque"
        self.size = 0
        # canonical paths this layer created, and their ancestors: a whiteout or opaque
        # marker must never remove what the same layer adds
        self.created: set[str] = set()
        # directories this layer made without setgid: a file created in one by this process
        # already has its owner as our euid/egid (nothing to chown when the tar agrees)
        self.plain_dirs: set[str] = set()
        self.touched: set[str] = set()
        self._touched_for: str | None = None

    def close(self) -> None:
        self.root.close()

    # ------------------------------------------------------------------ dispatch

    def entry(self, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        name = clean(m.name)
        if not name:
            if m.isdir():
                self._root_dir(m)
            return  # anything else cannot replace the root
        parent, _, base = name.rpartition("/")
        if self.whiteouts and ".wh." in name:
            if name.startswith(META_PREFIX):
                return  # aufs metadata (.wh..wh.plnk/...) is not content
            if base == OPAQUE_MARKER:
                return self._opaque(parent)
            if base.startswith(META_PREFIX):
                return
            if base.startswith(WHITEOUT_PREFIX):
                return self._whiteout(parent, base[len(WHITEOUT_PREFIX):])
        res = self.root.parent(parent, "all")
        assert res is not None
        pfd, pcanon = res
        self._touch(pcanon)
        canon = join(pcanon, base)
        if m.isdir():
            self._dir(m, name, pfd, base, canon)
        elif m.isreg():
            self._file(tf, m, pfd, base, pcanon in self.plain_dirs)
        elif m.issym():
            self._symlink(m, pfd, base)
        elif m.islnk():
            self._hardlink(m, pfd, base)
        elif m.ischr() or m.isblk() or m.isfifo():
            self._special(m, pfd, base)
        else:
            raise DataCorruption(f"{m.name!r}: unsupported tar entry type {m.type!r}")
        self.created.add(canon)

    def _touch(self, canon: str) -> None:
        if canon == self._touched_for:
            return
        self._touched_for = canon
        while canon and canon not in self.touched:
            self.touched.add(canon)
            canon = canon.rpartition("/")[0]

    # ------------------------------------------------------------------ entries

    def _clear(self, pfd: int, name: str, keep_dir: bool) -> os.stat_result | None:
        """Remove what is at ``name`` (but keep a directory if ``keep_dir``)."""
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return st
            shutil.rmtree(name, dir_fd=pfd)
            self.root.invalidate()
        else:
            os.unlink(name, dir_fd=pfd)
            if stat.S_ISLNK(st.st_mode):
                self.root.invalidate()  # a cached parent may have been reached through it
        return st

    def _meta_fd(self, fd: int, m: tarfile.TarInfo) -> None:
        # chown first: it clears setuid/setgid bits and file capabilities
        os.chown(proc_path(fd), m.uid, m.gid)
        os.chmod(proc_path(fd), m.mode & 0o7777)
        _set_xattrs(proc_path(fd), _xattrs(m), follow=True)

    def _root_dir(self, m: tarfile.TarInfo) -> None:
        fd = os.dup(self.root.fd)
        try:
            self._meta_fd(fd, m)
        finally:
            os.close(fd)
        self.root.dir_times[""] = _times(m)
        self.root_seen = True

    def _dir(self, m: tarfile.TarInfo, name: str, pfd: int, base: str, canon: str) -> None:
        old = self._clear(pfd, base, keep_dir=True)
        if old is None or not stat.S_ISDIR(old.st_mode):
            os.mkdir(base, 0o700, dir_fd=pfd)
        fd = os.open(base, _DIR_FLAGS, dir_fd=pfd)
        try:
            self._meta_fd(fd, m)
            if self.overlay and old is not None and is_whiteout(old):
                # replacing a same-layer whiteout: the new dir hides the lower one entirely
                os.setxattr(proc_path(fd), self.opaque_xattr, b"y")
        except BaseException:
            os.close(fd)
            raise
        self.root.dir_times[canon] = _times(m)
        if not m.mode & stat.S_ISGID:
            self.plain_dirs.add(canon)
        self.root.remember(name, fd, canon)  # likely the next entries' parent

    def _file(self, tf: tarfile.TarFile, m: tarfile.TarInfo, pfd: int, base: str, plain_parent: bool) -> None:
        # Created with its final mode when the umask keeps it and it has no setuid/setgid/
        # sticky bit (those must follow the chown); owned as the tar says without a chown
        # when we are that owner already. Each saved system call is ~66k in a big image.
        mode = m.mode & 0o7777
        direct = not mode & 0o7000 and not mode & _UMASK
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:  # O_EXCL says whether anything is there to clear, without a stat first
            fd = os.open(base, flags, mode if direct else 0o600, dir_fd=pfd)
        except FileExistsError:
            self._clear(pfd, base, keep_dir=False)
            fd = os.open(base, flags, mode if direct else 0o600, dir_fd=pfd)
        try:
            if m.size:
                src = tf.extractfile(m)
                assert src is not None
                while data := src.read(_CHUNK):
                    _write_all(fd, data)
            if not (plain_parent and m.uid == _EUID and m.gid == _EGID):
                os.fchown(fd, m.uid, m.gid)
            if not direct:
                os.fchmod(fd, mode)
            _set_xattrs(fd, _xattrs(m), follow=True)
            os.utime(fd, ns=_times(m))
        finally:
            os.close(fd)
        self.size += m.size

    def _symlink(self, m: tarfile.TarInfo, pfd: int, base: str) -> None:
        self._clear(pfd, base, keep_dir=False)
        os.symlink(m.linkname, base, dir_fd=pfd)  # created verbatim, never followed
        os.chown(base, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
        _set_xattrs(proc_path(pfd, base), _xattrs(m), follow=False)
        os.utime(base, ns=_times(m), dir_fd=pfd, follow_symlinks=False)

    def _special(self, m: tarfile.TarInfo, pfd: int, base: str) -> None:
        self._clear(pfd, base, keep_dir=False)
        kind = stat.S_IFIFO if m.isfifo() else stat.S_IFCHR if m.ischr() else stat.S_IFBLK
        try:
            os.mknod(base, kind | 0o600, os.makedev(m.devmajor, m.devminor), dir_fd=pfd)
        except PermissionError:
            if kind == stat.S_IFIFO:
                raise
            return  # no CAP_MKNOD (user namespace): skipped, as rootless docker does
        os.chown(base, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
        os.chmod(base, m.mode & 0o7777, dir_fd=pfd, follow_symlinks=False)
        _set_xattrs(proc_path(pfd, base), _xattrs(m), follow=False)
        os.utime(base, ns=_times(m), dir_fd=pfd, follow_symlinks=False)

    def _hardlink(self, m: tarfile.TarInfo, pfd: int, base: str) -> None:
        target = clean(m.linkname)
        tparent, _, tbase = target.rpartition("/")
        # (overlay: a parent only in the lowers is created, the target gets copied up)
        res = self.root.resolve(tparent, "lower" if self.overlay else "none") if target else None
        if res is None:
            raise DataCorruption(f"hardlink {m.name!r} -> {m.linkname!r}: target not in layer")
        tfd, tcanon = res
        try:
            tst = self._link_target(tfd, tcanon, tbase)
            if tst is None:
                raise DataCorruption(f"hardlink {m.name!r} -> {m.linkname!r}: target not found")
            if stat.S_ISDIR(tst.st_mode):
                raise DataCorruption(f"hardlink {m.name!r} -> {m.linkname!r}: target is a directory")
            try:
                cur = os.stat(base, dir_fd=pfd, follow_symlinks=False)
            except FileNotFoundError:
                cur = None
            if cur is not None and os.path.samestat(cur, tst):
                return  # already that very inode (e.g. a link to itself)
            self._clear(pfd, base, keep_dir=False)
            # linkat without AT_SYMLINK_FOLLOW: a symlink target is linked, not followed
            os.link(tbase, base, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(tfd)

    def _link_target(self, tfd: int, tcanon: str, tbase: str) -> os.stat_result | None:
        try:
            st = os.stat(tbase, dir_fd=tfd, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if st is not None and not (self.overlay and is_whiteout(st)):
            return st
        if st is not None or self.root.lower is None:
            return None
        # only in a lower layer: copy it up first, as overlayfs does when you link it
        lower = self.root.lower.lookup([*filter(None, tcanon.split("/")), tbase])
        if lower is None:
            return None
        mode = lower.st.st_mode
        if stat.S_ISREG(mode):
            fd = os.open(tbase, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600, dir_fd=tfd)
            try:
                with open(lower.path, "rb") as src:
                    while data := src.read(_CHUNK):
                        _write_all(fd, data)
                os.fchown(fd, lower.st.st_uid, lower.st.st_gid)
                os.fchmod(fd, stat.S_IMODE(mode))
                copy_xattrs(lower.path, proc_path(fd), follow_dst=True)
                os.utime(fd, ns=(lower.st.st_atime_ns, lower.st.st_mtime_ns))
            finally:
                os.close(fd)
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(lower.path), tbase, dir_fd=tfd)
            os.chown(tbase, lower.st.st_uid, lower.st.st_gid, dir_fd=tfd, follow_symlinks=False)
        else:
            return lower.st if stat.S_ISDIR(mode) else None
        return os.stat(tbase, dir_fd=tfd, follow_symlinks=False)

    # ------------------------------------------------------------------ whiteouts

    def _whiteout(self, parent: str, name: str) -> None:
        if name in ("", ".", ".."):
            raise DataCorruption(f"invalid whiteout {join(parent, WHITEOUT_PREFIX + name)!r}")
        res = self.root.parent(parent, "lower" if self.overlay else "none")
        if res is None:
            return  # the directory does not exist: nothing to hide
        pfd, pcanon = res
        canon = join(pcanon, name)
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if canon in self.created or canon in self.touched:
            # the same layer put content there: only the lower content goes away
            if st is not None and stat.S_ISDIR(st.st_mode):
                fd = os.open(name, _DIR_FLAGS, dir_fd=pfd)
                try:
                    self._make_opaque(fd, canon)
                finally:
                    os.close(fd)
            return
        if self.overlay:
            if st is not None and is_whiteout(st):
                return
            if st is not None:
                self._clear(pfd, name, keep_dir=False)
            os.mknod(name, stat.S_IFCHR, os.makedev(0, 0), dir_fd=pfd)
        elif st is not None:
            self._clear(pfd, name, keep_dir=False)

    def _opaque(self, parent: str) -> None:
        res = self.root.parent(parent, "lower" if self.overlay else "none")
        if res is not None:
            self._make_opaque(res[0], res[1])

    def _make_opaque(self, dfd: int, dcanon: str) -> None:
        self._prune(dfd, dcanon)
        if self.overlay:
            os.setxattr(proc_path(dfd), self.opaque_xattr, b"y")

    def _prune(self, top_fd: int, top_canon: str) -> None:
        """Remove everything under a directory that this layer did not create; directories
        this layer created or filled are pruned recursively (their lower content goes)."""
        stack = [(os.dup(top_fd), top_canon)]
        try:
            while stack:
                dfd, dcanon = stack.pop()
                try:
                    lfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dfd)
                    try:
                        names = os.listdir(lfd)
                    finally:
                        os.close(lfd)
                    for name in names:
                        canon = join(dcanon, name)
                        if canon in self.created or canon in self.touched:
                            try:
                                stack.append((os.open(name, _DIR_FLAGS, dir_fd=dfd), canon))
                            except NotADirectoryError:
                                pass  # this layer's file: keep
                        else:
                            self._clear(dfd, name, keep_dir=False)
                finally:
                    os.close(dfd)
        finally:
            for dfd, _ in stack:
                os.close(dfd)
        self.root.invalidate()

    # ------------------------------------------------------------------ end

    def finish(self) -> None:
        if self.pending is not None:
            lowers = self.pending.load()
            if lowers and not self.root_seen:
                # as the overlay snapshotter's prepare does: the merged root's owner and
                # mode are the upperdir's, so they carry the parent's over
                st = os.lstat(lowers[0])
                os.chown(proc_path(self.root.fd), st.st_uid, st.st_gid)
                os.chmod(proc_path(self.root.fd), st.st_mode & 0o7777)
        # children changed the directories' mtimes: restore the tar's (deepest first is not
        # needed, setting a directory's times does not touch its parent)
        for canon, times in self.root.dir_times.items():
            fd = self.root.open_nofollow(canon)
            if fd is None:
                continue  # replaced later in the layer
            try:
                os.utime(proc_path(fd), ns=times)
            finally:
                os.close(fd)
