"""Diffs of real snapshots: an overlay upperdir written through a real overlay mount, and
two native directories; every diff is re-applied and must reproduce the changed tree."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from dockyard.archive import Change, DiffResult, apply_layer, changes, write_diff
from dockyard.errors import NotImplementedYet
from dockyard.mount import mounts_under
from dockyard.snapshots.base import Mount
from tests.fixtures.malicious_tars import (
    MTIME,
    chr_,
    dir_,
    hard,
    overlay_mount,
    reg,
    sym,
    tar,
    tree_state,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mknod, chown, overlay)")


def base_layer() -> bytes:
    return tar(
        dir_("bin/"), reg("bin/busybox", b"bb", 0o755), sym("bin/sh", "busybox"),
        dir_("dev/"), chr_("dev/null", 1, 3),
        dir_("etc/"), reg("etc/hosts", b"127.0.0.1 localhost\n"), reg("etc/passwd", b"root:x:0:0\n"),
        reg("etc/group", b"root:x:0:\n"), reg("etc/shadow", b"secret\n", 0o640),
        reg("etc/motd", b"hi\n"), reg("etc/os-release", b"ID=test\n"),
        reg("etc/hard1", b"linked\n"), hard("etc/hard2", "etc/hard1"),
        dir_("opt/"), dir_("opt/app/"), reg("opt/app/old1", b"1"), dir_("opt/app/sub/"),
        reg("opt/app/sub/old2", b"2"),
        dir_("srv/"), reg("srv/data", b"d"),
        dir_("usr/"), reg("usr/same", b"same-size-A"),
        dir_("var/"), dir_("var/cache/"), reg("var/cache/a", b"a"), dir_("var/cache/b/"),
        reg("var/cache/b/c", b"c"), dir_("var/log/"), reg("var/log/messages", b"m"),
    )


def make_changes(root: Path) -> None:
    """What a container does (through the merged mount, or straight into a native copy)."""
    (root / "new.txt").write_bytes(b"new")
    (root / "newdir").mkdir()
    (root / "newdir/f").write_bytes(b"f")
    os.link(root / "newdir/f", root / "newdir/g")
    os.mkfifo(root / "newdir/p")
    with open(root / "etc/hosts", "ab") as f:
        f.write(b"10.0.0.1 db\n")
    os.chmod(root / "etc/passwd", 0o600)
    os.chown(root / "etc/group", 1, 1)
    os.unlink(root / "etc/shadow")
    shutil.rmtree(root / "var/cache")
    shutil.rmtree(root / "opt/app")  # delete, then recreate: opaque in overlay
    (root / "opt/app").mkdir()
    (root / "opt/app/new").write_bytes(b"n")
    os.setxattr(root / "etc/os-release", "user.test", b"42")
    os.unlink(root / "bin/sh")
    os.symlink("/bin/busybox", root / "bin/sh")
    os.unlink(root / "etc/motd")  # file -> directory
    (root / "etc/motd").mkdir()
    (root / "etc/motd/x").write_bytes(b"x")
    shutil.rmtree(root / "srv")  # directory -> file
    (root / "srv").write_bytes(b"file")
    with open(root / "usr/same", "r+b") as f:  # same size, same (whole-second) mtime
        f.write(b"same-size-B")
    os.utime(root / "usr/same", (MTIME, MTIME))
    os.utime(root / "var/log/messages", (MTIME + 7, MTIME + 7))  # mtime only


EXPECTED = [
    ("C", "/bin"), ("C", "/bin/sh"),
    ("C", "/etc"), ("C", "/etc/group"), ("C", "/etc/hosts"), ("C", "/etc/motd"),
    ("A", "/etc/motd/x"), ("C", "/etc/os-release"), ("C", "/etc/passwd"), ("D", "/etc/shadow"),
    ("A", "/new.txt"), ("A", "/newdir"), ("A", "/newdir/f"), ("A", "/newdir/g"), ("A", "/newdir/p"),
    ("C", "/opt"), ("C", "/opt/app"), ("A", "/opt/app/new"), ("D", "/opt/app/old1"),
    ("D", "/opt/app/sub"),
    ("C", "/srv"),
    ("C", "/usr"), ("C", "/usr/same"),
    ("C", "/var"), ("D", "/var/cache"), ("C", "/var/log"), ("C", "/var/log/messages"),
]


def bind(path: Path, ro: bool = False) -> list[Mount]:
    return [Mount("bind", str(path), ["ro" if ro else "rw", "rbind"])]


def overlay(lower: Path, upper: Path, work: Path) -> list[Mount]:
    return [Mount("overlay", "overlay", ["index=off", f"lowerdir={lower}", f"upperdir={upper}",
                                         f"workdir={work}"])]


def diff_bytes(lower: list[Mount], upper: list[Mount]) -> tuple[bytes, DiffResult]:
    out = io.BytesIO()
    result = write_diff(lower, upper, out)
    return out.getvalue(), result


def names(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return [m.name + ("/" if m.isdir() else "") for m in tf]


def copy_tree(src: Path, dst: Path) -> None:
    subprocess.run(["cp", "-a", "--", str(src), str(dst)], check=True)


@pytest.fixture
def d(tmp_path: Path):
    dirs = {n: tmp_path / n for n in ("lower", "upper", "work", "merged", "copy", "upper2", "work2")}
    for p in dirs.values():
        p.mkdir()
    apply_layer(io.BytesIO(base_layer()), bind(dirs["lower"]))
    yield dirs
    assert not mounts_under(str(tmp_path)), "mount left behind"


def test_overlay_diff_round_trip(d) -> None:
    with overlay_mount(d["merged"], [d["lower"]], d["upper"], d["work"]) as merged:
        make_changes(merged)
        want = tree_state(merged)
    lower_m, upper_m = bind(d["lower"], ro=True), overlay(d["lower"], d["upper"], d["work"])

    assert [(c.kind, c.path) for c in changes(lower_m, upper_m)] == EXPECTED

    data, result = diff_bytes(lower_m, upper_m)
    assert result == DiffResult("sha256:" + hashlib.sha256(data).hexdigest(), len(data))
    assert data.endswith(b"\0" * 1024) and len(data) % 512 == 0
    listed = names(data)
    assert "etc/.wh.shadow" in listed and "var/.wh.cache" in listed
    assert listed[listed.index("opt/app/") + 1] == "opt/app/.wh..wh..opq"
    assert not any(n.startswith("opt/app/.wh.old") for n in listed)
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        g = tf.getmember("newdir/g")
        assert g.islnk() and g.linkname == "newdir/f"
        assert tf.getmember("etc/os-release").pax_headers["SCHILY.xattr.user.test"] == "42"
        assert not any(k.startswith("SCHILY.xattr.trusted.overlay")
                       for m in tf for k in m.pax_headers)
    # deterministic
    assert diff_bytes(lower_m, upper_m)[0] == data

    # native re-apply onto a copy of the lower reproduces the merged view
    copy_tree(d["lower"], d["copy"] / "root")
    apply_layer(io.BytesIO(data), bind(d["copy"] / "root"))
    assert tree_state(d["copy"] / "root") == want

    # and so does an overlay re-apply, seen through a real mount
    apply_layer(io.BytesIO(data), overlay(d["lower"], d["upper2"], d["work2"]))
    with overlay_mount(d["merged"], [d["upper2"], d["lower"]]) as merged:
        assert tree_state(merged) == want


def test_native_double_walk_round_trip(d) -> None:
    lower, upper = d["copy"] / "lower", d["copy"] / "upper"
    copy_tree(d["lower"], lower)
    copy_tree(d["lower"], upper)
    make_changes(upper)
    want = tree_state(upper)

    assert [(c.kind, c.path) for c in changes(bind(lower, ro=True), bind(upper))] == EXPECTED

    data, result = diff_bytes(bind(lower, ro=True), bind(upper))
    assert result.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    listed = names(data)
    assert "opt/app/.wh.old1" in listed and "opt/app/.wh.sub" in listed
    assert "etc/hard1" not in listed  # unchanged hardlinked files stay out

    target = d["copy"] / "target"
    copy_tree(d["lower"], target)
    apply_layer(io.BytesIO(data), bind(target))
    assert tree_state(target) == want


def test_no_changes_is_an_empty_layer(d) -> None:
    copy_tree(d["lower"], d["copy"] / "same")
    assert changes(bind(d["lower"]), bind(d["copy"] / "same")) == []
    data, _ = diff_bytes(bind(d["lower"]), bind(d["copy"] / "same"))
    assert data == b"\0" * 1024
    # an overlay whose upper is empty, too
    assert changes(bind(d["lower"]), overlay(d["lower"], d["upper"], d["work"])) == []


def test_first_layer_diffs_against_nothing(d) -> None:
    assert changes([], bind(d["lower"]))[:3] == [Change("A", "/bin"), Change("A", "/bin/busybox"),
                                                  Change("A", "/bin/sh")]
    data, _ = diff_bytes([], bind(d["lower"]))
    apply_layer(io.BytesIO(data), bind(d["copy"]))
    assert tree_state(d["copy"]) == tree_state(d["lower"])


def test_unrelated_lower_falls_back_to_double_walk(d) -> None:
    """An overlay upper diffed against something other than its own lowers (here: nothing)
    is compared as merged views, i.e. exported whole."""
    with overlay_mount(d["merged"], [d["lower"]], d["upper"], d["work"]) as merged:
        make_changes(merged)
        want = tree_state(merged)
    data, _ = diff_bytes([], overlay(d["lower"], d["upper"], d["work"]))
    assert not any(n.rsplit("/", 1)[-1].startswith(".wh.") for n in names(data))
    apply_layer(io.BytesIO(data), bind(d["copy"]))
    assert tree_state(d["copy"]) == want


def test_overlay_upper_entry_equal_to_lower_counts_as_changed(d) -> None:
    # a copy-up without a visible change (chmod to the same mode) is still in the upper
    with overlay_mount(d["merged"], [d["lower"]], d["upper"], d["work"]) as merged:
        os.chmod(merged / "usr/same", 0o644)
    assert changes(bind(d["lower"]), overlay(d["lower"], d["upper"], d["work"])) == [
        Change("C", "/usr"), Change("C", "/usr/same")]


def test_refuses_overlay_with_redirects(d) -> None:
    m = [Mount("overlay", "overlay", ["redirect_dir=on", f"lowerdir={d['lower']}",
                                      f"upperdir={d['upper']}", f"workdir={d['work']}"])]
    with pytest.raises(NotImplementedYet):
        changes(bind(d["lower"]), m)
