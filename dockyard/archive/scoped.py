"""Resolve directories *inside* an extraction root, never outside it.

Every path from a tar is resolved as if the root were ``/``: symlinks (absolute or with
``..``) are followed relative to the root and ``..`` stops at it, which is what docker does
by extracting in a chroot. With openat2(RESOLVE_IN_ROOT) the kernel does this for us; the
fallback walks one component at a time with O_NOFOLLOW and interprets symlinks itself.

For an overlay upperdir the walk also consults the lowerdirs (via ``LayerView``): a
directory missing from the upper but present below is created in the upper with the lower's
owner/mode/xattrs, and a symlink present only below is followed, so paths resolve
exactly as they would in the merged mount.
"""

from __future__ import annotations

import errno
import os
import resource
import stat
from collections import OrderedDict, deque
from typing import Literal

from dockyard import syscalls
from dockyard.archive.layers import LayerView, is_overlay_xattr, is_whiteout
from dockyard.errors import DataCorruption
from dockyard.syscalls import Resolve, has_openat2


def _parent_cache_size() -> int:
    """O_PATH fds of recent parent directories an extraction keeps open: enough for a layer
    that goes round-robin over a thousand directories, within a sixteenth of our fd limit
    (dockyardd raises its soft limit to the hard one, as dockerd does)."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return max(16, min(1024, (soft if soft != resource.RLIM_INFINITY else 1 << 20) // 16))

Create = Literal["all", "lower", "none"]
# "all": create missing directories; "lower": only those that exist in a lower layer
# (overlay) so there is something to hide; "none": return None when anything is missing.

_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_LINKS = 40  # like the kernel's MAXSYMLINKS


def proc_path(fd: int, name: str | None = None) -> str:
    """A path naming the object behind ``fd`` (or ``name`` in directory ``fd``) that the
    path-only syscalls (chmod, setxattr, utime) can use without re-resolving anything."""
    return f"/proc/self/fd/{fd}" if name is None else f"/proc/self/fd/{fd}/{name}"


def join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


class ScopedRoot:
    """An extraction root (a bind source or an overlay upperdir)."""

    def __init__(self, path: str, lower: LayerView | None = None, overlay: bool = False,
                 xattr_prefix: str = "trusted.overlay.") -> None:
        self.path = os.path.realpath(path)
        self.fd = os.open(self.path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self.lower = lower
        self.overlay = overlay
        self.opaque_xattr = xattr_prefix + "opaque"
        # canonical dir -> (atime_ns, mtime_ns) to restore once all children exist
        self.dir_times: dict[str, tuple[int, int]] = {}
        # recent parents (rel -> O_PATH fd, canonical path), least recently used first: most
        # tars are grouped by directory, some go round-robin over many
        self._parents: OrderedDict[str, tuple[int, str]] = OrderedDict()
        self._cache_size = _parent_cache_size()
        self._stale: list[int] = []  # forgotten fds, closed at the next parent/remember call

    # ------------------------------------------------------------------ cache

    def parent(self, rel: str, create: Create) -> tuple[int, str] | None:
        """Cached ``resolve``: the fd stays owned by the cache and is valid until the next
        ``parent``/``remember``/``invalidate`` call."""
        self._close_stale()
        hit = self._parents.get(rel)
        if hit is not None:
            self._parents.move_to_end(rel)
            return hit
        res = self.resolve(rel, create)
        if res is not None:
            self._add(rel, res)
        return res

    def remember(self, rel: str, fd: int, canon: str) -> None:
        """Hand a just-created directory's O_PATH fd to the cache (it is the likely next
        parent); the cache now owns ``fd``."""
        self._close_stale()
        self._add(rel, (fd, canon))

    def invalidate(self) -> None:
        """Something on a cached path may have been removed or replaced: forget them all
        (their fds stay open until the next call: the caller may be using one)."""
        while self._parents:
            self._stale.append(self._parents.popitem()[1][0])

    def _close_stale(self) -> None:
        while self._stale:
            os.close(self._stale.pop())

    def _add(self, rel: str, value: tuple[int, str]) -> None:
        old = self._parents.pop(rel, None)
        if old is not None:
            self._stale.append(old[0])
        self._parents[rel] = value
        if len(self._parents) > self._cache_size:
            self._stale.append(self._parents.popitem(last=False)[1][0])

    def close(self) -> None:
        self.invalidate()
        self._close_stale()
        os.close(self.fd)

    # ------------------------------------------------------------------ resolution

    def resolve(self, rel: str, create: Create) -> tuple[int, str] | None:
        """Open directory ``rel`` (relative, already cleaned) inside the root. Returns an
        O_PATH fd the caller owns and the canonical path of the directory in the root."""
        if not rel:
            return os.dup(self.fd), ""
        if has_openat2():
            # first without symlinks: then the (cleaned) path is its own canonical form and
            # no readlink of /proc/self/fd is needed; a symlink on the way (ELOOP) resolves
            for no_symlinks in (Resolve.NO_SYMLINKS, 0):
                try:
                    fd = syscalls.openat2(self.fd, rel, os.O_PATH | os.O_DIRECTORY,
                                          resolve=Resolve.IN_ROOT | Resolve.NO_MAGICLINKS | no_symlinks)
                except (FileNotFoundError, NotADirectoryError, BlockingIOError):
                    # something to create, an overlay whiteout/lower entry on the way, or
                    # EAGAIN (a concurrent rename somewhere): the walk sorts it out
                    break
                except OSError as err:
                    if no_symlinks and err.errno == errno.ELOOP:
                        continue
                    raise DataCorruption(f"cannot resolve {rel!r} in layer: {err.strerror}") from err
                return (fd, rel) if no_symlinks else (fd, self._canonical(fd))
        return self._walk(rel, create)

    def _canonical(self, fd: int) -> str:
        real = os.readlink(proc_path(fd))
        if real == self.path:
            return ""
        if not real.startswith(self.path + "/"):  # cannot happen with RESOLVE_IN_ROOT
            os.close(fd)
            raise DataCorruption(f"path escaped the extraction root: {real!r}")
        return real[len(self.path) + 1:]

    def _walk(self, rel: str, create: Create) -> tuple[int, str] | None:
        todo = deque(rel.split("/"))
        fds: list[int] = []  # fds[i] is the directory canon[:i+1]; the root is self.fd
        canon: list[str] = []
        # hidden[i]: an upper directory on canon[:i+1] is opaque, so the lowers do not
        # show below it (whiteouts on the way are seen as components themselves)
        hidden: list[bool] = []
        links = 0
        try:
            while todo:
                name = todo.popleft()
                if name in ("", "."):
                    continue
                if name == "..":
                    if canon:
                        canon.pop()
                        hidden.pop()
                        os.close(fds.pop())
                    continue
                dfd = fds[-1] if fds else self.fd
                try:
                    fds.append(os.open(name, _DIR_FLAGS, dir_fd=dfd))
                    canon.append(name)
                    hidden.append(self._below_opaque(hidden, fds[-1]))
                    continue
                except FileNotFoundError:
                    st = None
                except NotADirectoryError:
                    st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                target: str | None = None
                if st is not None and stat.S_ISLNK(st.st_mode):
                    target = os.readlink(name, dir_fd=dfd)
                elif st is not None and not (self.overlay and is_whiteout(st)):
                    raise DataCorruption(f"{'/'.join([*canon, name])!r} is not a directory")
                else:
                    # missing (or whited out in the upper): what does the lower hold?
                    lower = None
                    if self.lower is not None and st is None and not (hidden and hidden[-1]):
                        lower = self.lower.lookup([*canon, name])
                    if lower is not None and stat.S_ISLNK(lower.st.st_mode):
                        target = os.readlink(lower.path)
                    elif lower is not None and not lower.is_dir:
                        raise DataCorruption(f"{'/'.join([*canon, name])!r} is not a directory")
                    elif lower is None and create != "all":
                        return None
                    else:
                        fds.append(self._mkdir(dfd, name, lower, st))
                        canon.append(name)
                        hidden.append(st is not None or bool(hidden and hidden[-1]))
                        continue
                links += 1
                if links > _MAX_LINKS:
                    raise DataCorruption(f"too many levels of symbolic links resolving {rel!r}")
                if target.startswith("/"):
                    while fds:
                        os.close(fds.pop())
                    canon.clear()
                    hidden.clear()
                todo.extendleft(reversed(target.split("/")))
            fd = fds.pop() if fds else os.dup(self.fd)
            return fd, "/".join(canon)
        finally:
            for fd in fds:
                os.close(fd)

    def _below_opaque(self, hidden: list[bool], fd: int) -> bool:
        if self.lower is None:
            return False
        if hidden and hidden[-1]:
            return True
        try:
            return os.getxattr(proc_path(fd), self.opaque_xattr) == b"y"
        except OSError:
            return False

    def _mkdir(self, dfd: int, name: str, lower, replaced: os.stat_result | None) -> int:
        """Create a missing directory: owner/mode/xattrs as the lower layer has it
        (overlay), else 0755."""
        if replaced is not None:
            # a whiteout from this same layer: a directory over it must hide the lower one,
            # which is what overlayfs does too (mkdir over a whiteout makes it opaque)
            os.unlink(name, dir_fd=dfd)
        os.mkdir(name, 0o700, dir_fd=dfd)
        fd = os.open(name, _DIR_FLAGS, dir_fd=dfd)
        p = proc_path(fd)
        if lower is not None:
            st = lower.st
            os.chown(p, st.st_uid, st.st_gid)
            os.chmod(p, stat.S_IMODE(st.st_mode))
            copy_xattrs(lower.path, p, follow_dst=True)
            # (its mtime is left to what this layer does in it, as in native mode)
        else:
            os.chmod(p, 0o755)  # not umask-dependent
        if replaced is not None:
            os.setxattr(p, self.opaque_xattr, b"y")
        return fd

    def open_nofollow(self, canon: str) -> int | None:
        """O_PATH fd of directory ``canon`` if it still is one (no symlink followed)."""
        if not canon:
            return os.dup(self.fd)
        try:
            if has_openat2():
                return syscalls.openat2(self.fd, canon, os.O_PATH | os.O_DIRECTORY,
                                        resolve=Resolve.BENEATH | Resolve.NO_SYMLINKS | Resolve.NO_MAGICLINKS)
            fd = os.dup(self.fd)
            for name in canon.split("/"):
                try:
                    nfd = os.open(name, _DIR_FLAGS, dir_fd=fd)
                finally:
                    os.close(fd)
                fd = nfd
            return fd
        except OSError:
            return None


def copy_xattrs(src: str, dst: str, follow_dst: bool) -> None:
    """Copy the non-overlay xattrs of ``src`` (a trusted snapshot path) onto ``dst``
    (``follow_dst``: ``dst`` is an fd's /proc magic link, to be followed)."""
    try:
        names = os.listxattr(src, follow_symlinks=False)
    except OSError:
        return
    for name in names:
        if is_overlay_xattr(name):
            continue
        try:
            os.setxattr(dst, name, os.getxattr(src, name, follow_symlinks=False),
                        follow_symlinks=follow_dst)
        except OSError:
            pass  # xattrs the target fs or namespace refuses (e.g. user.* on symlinks)
