"""Hostile layer tars must stay inside the extraction root.

Every case of tests/fixtures/malicious_tars.py is applied in native (bind) and overlay
(upperdir) mode, and into an upperdir whose lowers come late (``final_mounts``, as a pull
unpacks a layer before the one below it is done), resolving paths with openat2, with the
manual walk and (openat2) in a worker process, next to a sentinel directory. Nothing outside the target -- the sentinel, the lower layer, the test's other
directories, the host -- may change; what the case expects inside is checked through a
real overlay mount of the result.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import sys
from pathlib import Path

import pytest

from dockyard import syscalls
from dockyard.archive import apply_layer, scoped
from dockyard.archive.worker import apply_layer_in_worker
from dockyard.errors import DataCorruption
from dockyard.mount import mounts_under
from dockyard.snapshots.base import Mount
from tests.fixtures.malicious_tars import Case, View, corpus, overlay_mount

SECRET = b"the sentinel's secret\n"
CASES = {c.name: c for c in corpus("/sentinel")}

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mknod, chown, overlay)")


def tree(top: Path, skip: set[Path]) -> dict[str, tuple]:
    """Everything observable about a tree (not atime), keyed by relative path."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = [d for d in dirnames if Path(dirpath, d) not in skip]
        for name in [*dirnames, *filenames, ""]:
            path = os.path.join(dirpath, name) if name else dirpath
            if Path(path) in skip or (not name and Path(dirpath) != top):
                continue
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    content: object = hashlib.sha256(f.read()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(path)
            else:
                content = None
            xattrs = sorted((n, os.getxattr(path, n, follow_symlinks=False))
                            for n in os.listxattr(path, follow_symlinks=False))
            out[os.path.relpath(path, top)] = (
                st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, st.st_rdev,
                None if stat.S_ISDIR(st.st_mode) else st.st_size, content, xattrs,
            )
    return out


def overlay_xattrs(top: Path) -> list[tuple[str, str]]:
    found = []
    for dirpath, dirnames, filenames in os.walk(top):
        for name in [*dirnames, *filenames]:
            path = os.path.join(dirpath, name)
            for x in os.listxattr(path, follow_symlinks=False):
                if x.startswith(("trusted.overlay.", "user.overlay.")):
                    found.append((os.path.relpath(path, top), x))
    return found


@pytest.fixture(params=["openat2", "walk", "worker"])
def resolver(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param != "walk" and not syscalls.has_openat2():
        pytest.skip("kernel without openat2")
    if request.param == "walk":
        monkeypatch.setattr(scoped, "has_openat2", lambda: False)
    if request.param == "worker":
        monkeypatch.setattr(sys.modules[__name__], "apply_layer", apply_layer_in_worker)
    return request.param


def make_sentinel(tmp_path: Path) -> Path:
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir(mode=0o750)
    (sentinel / "sub").mkdir(mode=0o700)
    secret = sentinel / "secret"
    secret.write_bytes(SECRET)
    os.chown(secret, 1234, 1234)
    os.chmod(secret, 0o640)
    os.utime(secret, ns=(1_000_000_000_123, 1_000_000_000_456))
    os.utime(sentinel, ns=(1_000_000_000_000, 1_000_000_000_000))
    return sentinel


def apply_case(case: Case, mode: str, tmp_path: Path, sentinel: Path) -> None:
    lower, upper, work = tmp_path / "lower", tmp_path / "upper", tmp_path / "work"
    for d in (lower, upper, work, tmp_path / "merged"):
        d.mkdir()
    for layer in case.layers[:-1]:  # the lower snapshot is built natively in both modes
        apply_layer(_stream(layer), [Mount("bind", str(lower), ["rw", "rbind"])])
    final_mounts = None
    if mode == "native":
        target, mounts = lower, [Mount("bind", str(lower), ["rw", "rbind"])]
    else:
        target = upper
        mounts = [Mount("overlay", "overlay",
                        [f"lowerdir={lower}", f"upperdir={upper}", f"workdir={work}"])]
        if mode == "pending":  # the same overlay, known only when the applier asks
            final_mounts = mounts.copy
            mounts = [Mount("bind", str(upper), ["rw", "rbind"])]
    skip = {target, work}
    before = tree(tmp_path, skip)
    secret_st = os.lstat(sentinel / "secret")
    listing = sorted(os.listdir(sentinel))

    if case.raises:
        with pytest.raises(DataCorruption):
            apply_layer(_stream(case.layers[-1]), mounts, final_mounts=final_mounts)
    else:
        apply_layer(_stream(case.layers[-1]), mounts, final_mounts=final_mounts)

    assert tree(tmp_path, skip) == before, "something outside the target changed"
    assert sorted(os.listdir(sentinel)) == listing
    assert (sentinel / "secret").read_bytes() == SECRET
    st = os.lstat(sentinel / "secret")
    assert (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns) == (
        secret_st.st_mode, secret_st.st_uid, secret_st.st_gid, secret_st.st_mtime_ns)
    assert stat.S_IMODE(os.lstat(sentinel).st_mode) == 0o750
    for p in case.host_paths:
        assert not os.path.lexists(p), f"{p} was created on the host"
    # overlay markers only ever come from whiteouts, never from the tar's own xattrs
    allowed = set() if mode == "native" else {"trusted.overlay.opaque"}
    assert [x for x in overlay_xattrs(target) if x[1] not in allowed] == []


def _stream(data: bytes) -> io.BytesIO:
    return io.BytesIO(data)


def check_merged(case: Case, mode: str, tmp_path: Path) -> None:
    if case.check is None or case.raises:
        return
    if mode == "native":
        case.check(View(tmp_path / "lower"))
        return
    # read-only overlay of upper over lower: exactly what a container would see
    with overlay_mount(tmp_path / "merged", [tmp_path / "upper", tmp_path / "lower"]) as merged:
        case.check(View(merged))


@pytest.mark.parametrize("mode", ["native", "overlay", "pending"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_malicious_tar_is_contained(name: str, mode: str, resolver: str, tmp_path: Path) -> None:
    sentinel = make_sentinel(tmp_path)
    case = {c.name: c for c in corpus(str(sentinel))}[name]
    apply_case(case, mode, tmp_path, sentinel)
    check_merged(case, mode, tmp_path)
    assert not mounts_under(str(tmp_path))
