"""The files COPY and ADD read: a build context (a tar the client sent, unpacked; or, from a
client on the same host, its directory read in place), an earlier stage's root, downloads.

A context is seen less what its .dockerignore excludes (the client excluded those already
when it sent a tar; read in place, the daemon does it). Sources never leave the root: a
path whose directories resolve outside it through a symlink is refused.

For the cache, each file's digest (content and metadata) is remembered by its identity
(device, inode, size, mtime, ctime): a rebuild of an unchanged context in place reads no
file again."""

from __future__ import annotations

import fnmatch
import hashlib
import os
import posixpath
import stat
from collections.abc import Iterator
from typing import Any

from dockyard.builder import dockerignore
from dockyard.errors import InvalidArgument


class SourceTree:
    def __init__(self, root: str, *, ignore: bool = False, digests: Any = None) -> None:
        self.root = os.path.realpath(root)
        # an excluded Dockerfile or .dockerignore is read all the same, but not copied (docker)
        patterns = dockerignore.load(self.root) if ignore else []
        self.matcher = dockerignore.Matcher(patterns) if patterns else None
        self._digests = digests  # a BuildCache remembering file digests (in-place contexts)

    def excluded(self, rel: str) -> bool:
        return bool(self.matcher and rel not in ("", ".") and self.matcher.matches(rel))

    def _inside(self, rel: str) -> None:
        parent = os.path.realpath(os.path.join(self.root, posixpath.dirname(rel)))
        if parent != self.root and not parent.startswith(self.root + "/"):
            raise InvalidArgument(f"forbidden path outside the build context: {rel}")

    def glob(self, pattern: str) -> list[str]:
        """Paths (relative) a COPY source names: wildcards per path component, as docker's
        filepath.Match; excluded paths are not there."""
        clean = posixpath.normpath("/" + pattern).lstrip("/")
        if clean in ("", "."):
            return ["."]
        if not any(ch in clean for ch in "*?["):
            self._inside(clean)
            found = [clean] if os.path.lexists(os.path.join(self.root, clean)) else []
            return [p for p in found if not self.excluded(p)]
        found = [""]
        for part in clean.split("/"):
            nxt = []
            for base in found:
                directory = os.path.join(self.root, base)
                if not os.path.isdir(directory) or os.path.islink(directory):
                    continue
                for entry in sorted(os.listdir(directory)):
                    rel = posixpath.join(base, entry) if base else entry
                    if fnmatch.fnmatchcase(entry, part) and not self.excluded(rel):
                        nxt.append(rel)
            found = nxt
        return found

    def walk(self, top: str) -> Iterator[str]:
        """Everything under directory ``top`` (relative), sorted, each directory before its
        contents, excluded paths (and directories no exception re-includes) left out;
        symlinks are not followed."""
        start = os.path.join(self.root, top) if top not in ("", ".") else self.root
        for dirpath, dirnames, filenames in os.walk(start):
            rel_dir = os.path.relpath(dirpath, self.root)
            rel_dir = "" if rel_dir == "." else rel_dir
            keep = []
            for name in sorted(dirnames):
                rel = posixpath.join(rel_dir, name) if rel_dir else name
                if self.excluded(rel) and self.matcher is not None and self.matcher.excludes_dir_entirely(rel):
                    continue
                keep.append(name)
            dirnames[:] = keep
            for name in sorted(keep + filenames):
                rel = posixpath.join(rel_dir, name) if rel_dir else name
                if not self.excluded(rel):
                    yield rel

    def digests(self, matched: list[str]) -> dict[str, str]:
        """Each file the sources take (directories walked): content + metadata digests."""
        known = self._digests.file_digests(self.root) if self._digests is not None else {}
        fresh: list[tuple[str, tuple[int, ...], str]] = []
        out: dict[str, str] = {}

        def one(rel: str) -> None:
            full = os.path.join(self.root, rel) if rel not in ("", ".") else self.root
            st = os.lstat(full)
            ident = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)
            hit = known.get(full)
            if hit is not None and hit[0] == ident:
                out[rel] = hit[1]
                return
            h = hashlib.sha256(f"{stat.S_IFMT(st.st_mode)}:{stat.S_IMODE(st.st_mode)}:".encode())
            if stat.S_ISLNK(st.st_mode):
                h.update(os.readlink(full).encode())
            elif stat.S_ISREG(st.st_mode):
                with open(full, "rb") as f:
                    while chunk := f.read(1 << 20):
                        h.update(chunk)
            out[rel] = h.hexdigest()
            fresh.append((full, ident, out[rel]))

        for rel in matched:
            full = os.path.join(self.root, rel) if rel not in ("", ".") else self.root
            if os.path.isdir(full) and not os.path.islink(full):
                for sub in self.walk(rel):  # a directory's contents, not the directory itself:
                    one(sub)  # that is what COPY takes (the context root's mode varies by client)
            else:
                one(rel)
        if self._digests is not None and fresh:
            self._digests.put_file_digests(fresh)
        return out


__all__ = ["SourceTree"]
