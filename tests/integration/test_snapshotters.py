"""Snapshotter conformance: every backend, really mounted, checked by file contents."""

from __future__ import annotations

import errno
import os
import sqlite3
import stat
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from dockyard.errors import Conflict, InvalidArgument, NotFound, NotImplementedYet, Unavailable
from dockyard.mount import (
    mount_all,
    mounts_under,
    overlay_strategy_for,
    supports_lowerdir_append,
    temp_mount,
    unmount_all,
)
from dockyard.snapshots import Kind, Mount, Snapshotter, detect, open_snapshotter

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mount(2) needs root")

MiB = 1 << 20


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def leaves_no_mounts(tmp_path: Path) -> Iterator[None]:
    yield
    leaked = mounts_under(str(tmp_path))
    unmount_all(str(tmp_path))  # so one failure does not cascade into the next tests
    assert leaked == [], f"test leaked mounts: {leaked}"


@pytest.fixture(scope="module", autouse=True)
def module_leaves_no_mounts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    yield
    assert mounts_under(str(tmp_path_factory.getbasetemp())) == []


@pytest.fixture(params=["overlay", "native"])
def snapshotter(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Snapshotter]:
    sn = open_snapshotter(request.param, str(tmp_path / "root"))
    yield sn
    sn.close()


# --------------------------------------------------------------------------- helpers


@contextmanager
def mounted(mounts: list[Mount], tmp_path: Path, strategy: str | None = None) -> Iterator[Path]:
    with temp_mount(mounts, dir=str(tmp_path), overlay_strategy=strategy) as p:
        yield Path(p)


def tree(root: Path) -> dict[str, str]:
    """relative path -> file content (directories as "<dir>")."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root)] = "<dir>"
        for f in filenames:
            path = os.path.join(dirpath, f)
            out[os.path.relpath(path, root)] = Path(path).read_text()
    return out


def layer(sn: Snapshotter, tmp_path: Path, name: str, parent: str | None, files: dict[str, str]) -> str:
    """Prepare on ``parent``, write ``files`` through the mount, commit as ``name``."""
    key = f"{name}-active"
    with mounted(sn.prepare(key, parent), tmp_path) as p:
        for rel, content in files.items():
            (p / rel).parent.mkdir(parents=True, exist_ok=True)
            (p / rel).write_text(content)
    sn.commit(name, key)
    return name


def view_tree(sn: Snapshotter, tmp_path: Path, parent: str, strategy: str | None = None) -> dict[str, str]:
    key = f"view-of-{parent}-{len(list(sn.walk()))}"
    try:
        with mounted(sn.view(key, parent), tmp_path, strategy) as p:
            return tree(p)
    finally:
        sn.remove(key)


def snapshot_dirs(sn: Snapshotter) -> set[str]:
    return set(os.listdir(os.path.join(sn.root, "snapshots")))  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- chains


def test_prepare_commit_view_chain(snapshotter: Snapshotter, tmp_path: Path) -> None:
    sn = snapshotter
    mounts = sn.prepare("base-active")
    assert [m.type for m in mounts] == ["bind"]
    with mounted(mounts, tmp_path) as p:
        assert list(p.iterdir()) == []
        (p / "etc").mkdir()
        (p / "etc" / "os-release").write_text("base")
        (p / "bin").mkdir()
        (p / "bin" / "sh").write_text("#!sh")
    sn.commit("base", "base-active")
    layer(sn, tmp_path, "l2", "base", {"etc/os-release": "l2", "usr/lib/x": "x"})
    layer(sn, tmp_path, "l3", "l2", {"app/main": "main"})

    assert view_tree(sn, tmp_path, "l3") == {
        "etc": "<dir>",
        "etc/os-release": "l2",
        "bin": "<dir>",
        "bin/sh": "#!sh",
        "usr": "<dir>",
        "usr/lib": "<dir>",
        "usr/lib/x": "x",
        "app": "<dir>",
        "app/main": "main",
    }
    assert view_tree(sn, tmp_path, "base") == {"etc": "<dir>", "etc/os-release": "base", "bin": "<dir>", "bin/sh": "#!sh"}

    # a container on top sees the same and writes privately
    with mounted(sn.prepare("ctr", "l3"), tmp_path) as p:
        assert (p / "etc" / "os-release").read_text() == "l2"
        (p / "etc" / "os-release").write_text("ctr")
        # mounts() of an active snapshot gives the same view again, in parallel
        with mounted(sn.mounts("ctr"), tmp_path) as again:
            assert (again / "etc" / "os-release").read_text() == "ctr"
    assert view_tree(sn, tmp_path, "l3")["etc/os-release"] == "l2"


def test_writes_do_not_leak_to_parent_or_sibling(snapshotter: Snapshotter, tmp_path: Path) -> None:
    sn = snapshotter
    layer(sn, tmp_path, "base", None, {"shared": "orig", "dir/keep": "k"})
    with mounted(sn.prepare("a", "base"), tmp_path) as a, mounted(sn.prepare("b", "base"), tmp_path) as b:
        (a / "shared").write_text("from a")
        (a / "only-a").write_text("a")
        (a / "dir" / "keep").write_text("changed by a")
        assert (b / "shared").read_text() == "orig"
        assert not (b / "only-a").exists()
        assert (b / "dir" / "keep").read_text() == "k"
        (b / "only-b").write_text("b")
        assert not (a / "only-b").exists()
    assert view_tree(sn, tmp_path, "base") == {"shared": "orig", "dir": "<dir>", "dir/keep": "k"}
    # and the writes persist in their own snapshots across remounts
    with mounted(sn.mounts("a"), tmp_path) as a:
        assert (a / "shared").read_text() == "from a"
        assert not (a / "only-b").exists()


def test_deletes_hide_parent_files(snapshotter: Snapshotter, tmp_path: Path) -> None:
    sn = snapshotter
    layer(sn, tmp_path, "base", None, {"gone": "1", "kept": "2", "d/old": "3", "d2/x": "4"})
    with mounted(sn.prepare("child-active", "base"), tmp_path) as p:
        os.remove(p / "gone")  # overlay: a whiteout in the upperdir
        for f in (p / "d").iterdir():
            f.unlink()
        (p / "d").rmdir()
        (p / "d").mkdir()  # overlay: an opaque directory
        (p / "d" / "new").write_text("5")
        (p / "d2" / "x").unlink()
    sn.commit("child", "child-active")
    if sn.name == "overlay":
        upper = Path(sn.root, "snapshots", str(sn._meta.get("child").id), "fs")  # type: ignore[attr-defined]
        st = os.lstat(upper / "gone")
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    expected_child = {"kept": "2", "d": "<dir>", "d/new": "5", "d2": "<dir>"}
    assert view_tree(sn, tmp_path, "child") == expected_child
    # two layers further up, the deletions still hold
    layer(sn, tmp_path, "grandchild", "child", {"more": "6"})
    assert view_tree(sn, tmp_path, "grandchild") == {**expected_child, "more": "6"}
    assert view_tree(sn, tmp_path, "base") == {"gone": "1", "kept": "2", "d": "<dir>", "d/old": "3", "d2": "<dir>", "d2/x": "4"}


def test_preserves_file_attributes_across_layers(snapshotter: Snapshotter, tmp_path: Path) -> None:
    sn = snapshotter
    cap = bytes.fromhex("0100000220000000000000000000000000000000")  # cap_net_raw+p
    with mounted(sn.prepare("base-active"), tmp_path) as p:
        os.chown(p, 1000, 1000)
        os.chmod(p, 0o750)
        (p / "suid").write_text("x")
        os.chown(p / "suid", 0, 0)
        os.chmod(p / "suid", 0o4755)
        (p / "owned").write_text("y")
        os.chown(p / "owned", 1234, 5678)
        os.utime(p / "owned", ns=(1_000_000_000_123, 2_000_000_000_456))
        os.setxattr(p / "owned", "user.note", b"hello")
        os.setxattr(p / "owned", "security.capability", cap)
        os.link(p / "owned", p / "hardlink")
        os.symlink("owned", p / "symlink")
        os.lchown(p / "symlink", 42, 43)
        os.mknod(p / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        os.mkfifo(p / "fifo", 0o600)
        (p / "dir").mkdir(mode=0o700)
        os.utime(p / "dir", ns=(3_000_000_000_000, 4_000_000_000_000))
    sn.commit("base", "base-active")
    with mounted(sn.prepare("child", "base"), tmp_path) as p:
        root = os.lstat(p)
        assert (root.st_uid, root.st_gid, stat.S_IMODE(root.st_mode)) == (1000, 1000, 0o750)
        assert stat.S_IMODE(os.lstat(p / "suid").st_mode) == 0o4755
        owned = os.lstat(p / "owned")
        assert (owned.st_uid, owned.st_gid, owned.st_mtime_ns) == (1234, 5678, 2_000_000_000_456)
        assert os.getxattr(p / "owned", "user.note") == b"hello"
        assert os.getxattr(p / "owned", "security.capability") == cap
        hard = os.lstat(p / "hardlink")
        assert hard.st_ino == owned.st_ino and hard.st_nlink == 2
        assert os.readlink(p / "symlink") == "owned"
        link = os.lstat(p / "symlink")
        assert (link.st_uid, link.st_gid) == (42, 43)
        null = os.lstat(p / "null")
        assert stat.S_ISCHR(null.st_mode) and null.st_rdev == os.makedev(1, 3)
        assert stat.S_ISFIFO(os.lstat(p / "fifo").st_mode)
        d = os.lstat(p / "dir")
        assert stat.S_IMODE(d.st_mode) == 0o700 and d.st_mtime_ns == 4_000_000_000_000


# --------------------------------------------------------------------------- metadata


def test_stat_walk_kinds_parents(snapshotter: Snapshotter, tmp_path: Path) -> None:
    sn = snapshotter
    layer(sn, tmp_path, "base", None, {"a": "1"})
    layer(sn, tmp_path, "top", "base", {"b": "2"})
    sn.prepare("ctr", "top")
    sn.view("ro", "top")
    sn.prepare("scratch")

    base, top, ctr, ro, scratch = (sn.stat(k) for k in ("base", "top", "ctr", "ro", "scratch"))
    assert (base.kind, base.parent) == (Kind.COMMITTED, None)
    assert (top.kind, top.parent) == (Kind.COMMITTED, "base")
    assert (ctr.kind, ctr.parent) == (Kind.ACTIVE, "top")
    assert (ro.kind, ro.parent) == (Kind.VIEW, "top")
    assert (scratch.kind, scratch.parent) == (Kind.ACTIVE, None)
    assert base.name == "base" and ctr.name == "ctr"
    assert 0 < base.created <= top.created <= ctr.updated
    assert top.updated >= top.created

    walked = {i.name: i for i in sn.walk()}
    assert set(walked) == {"base", "top", "ctr", "ro", "scratch"}
    assert walked["ctr"] == ctr

    with pytest.raises(NotFound, match="snapshot nope does not exist"):
        sn.stat("nope")
    with pytest.raises(NotFound):
        sn.mounts("nope")
    with pytest.raises(InvalidArgument):
        sn.mounts("base")  # committed snapshots are not mounted directly


def test_parent_rules(snapshotter: Snapshotter) -> None:
    sn = snapshotter
    sn.prepare("active")
    sn.view("view")
    with pytest.raises(NotFound):
        sn.prepare("x", "missing")
    with pytest.raises(InvalidArgument, match="not committed"):
        sn.prepare("x", "active")
    with pytest.raises(InvalidArgument, match="not committed"):
        sn.view("x", "view")
    with pytest.raises(InvalidArgument):
        sn.prepare("")
    assert {i.name for i in sn.walk()} == {"active", "view"}  # failures left nothing behind
    assert len(snapshot_dirs(sn)) == 2


def test_commit_rules(snapshotter: Snapshotter) -> None:
    sn = snapshotter
    sn.prepare("a")
    sn.view("v")
    with pytest.raises(InvalidArgument, match="view"):
        sn.commit("v-committed", "v")
    with pytest.raises(NotFound):
        sn.commit("x", "missing")
    sn.commit("c", "a")
    with pytest.raises(NotFound):
        sn.stat("a")  # the active key is gone once committed
    with pytest.raises(NotFound):
        sn.commit("c2", "a")
    sn.prepare("b")
    with pytest.raises(Conflict, match="snapshot c already exists"):
        sn.commit("c", "b")
    with pytest.raises(InvalidArgument, match="committed"):
        sn.commit("c3", "c")
    assert sn.stat("b").kind is Kind.ACTIVE  # the failed commit changed nothing


def test_rebase_gives_a_parentless_snapshot_its_parent(snapshotter: Snapshotter, tmp_path: Path) -> None:
    sn = snapshotter
    with mounted(sn.prepare("upper"), tmp_path) as p:  # filled before its parent exists
        (p / "etc").mkdir()
        (p / "etc" / "os-release").write_text("upper")
    layer(sn, tmp_path, "base", None, {"etc/os-release": "base", "bin/sh": "#!sh"})
    if not sn.independent_layers:
        with pytest.raises(NotImplementedYet, match="cannot rebase"):
            sn.rebase("upper", "base")
        assert sn.stat("upper").parent is None
        return
    with pytest.raises(InvalidArgument, match="not committed"):
        sn.rebase("upper", "upper")
    with pytest.raises(NotFound):
        sn.rebase("upper", "missing")
    assert sn.stat("upper").parent is None  # the refusals changed nothing
    mounts = sn.rebase("upper", "base")
    assert sn.stat("upper").parent == "base"
    assert mounts == sn.mounts("upper")
    with pytest.raises(InvalidArgument, match="without a parent"):
        sn.rebase("upper", "base")
    sn.commit("top", "upper")
    assert view_tree(sn, tmp_path, "top") == {
        "etc": "<dir>", "etc/os-release": "upper", "bin": "<dir>", "bin/sh": "#!sh"}
    with pytest.raises(Conflict, match="has children"):
        sn.remove("base")


def test_duplicate_key_conflicts(snapshotter: Snapshotter) -> None:
    sn = snapshotter
    sn.prepare("k")
    dirs = snapshot_dirs(sn)
    for create in (sn.prepare, sn.view):
        with pytest.raises(Conflict, match="snapshot k already exists"):
            create("k")
    sn.commit("name", "k")
    with pytest.raises(Conflict, match="snapshot name already exists"):
        sn.prepare("name")
    assert snapshot_dirs(sn) == dirs  # no directory left by the failed attempts


def test_labels(snapshotter: Snapshotter) -> None:
    sn = snapshotter
    sn.prepare("a", labels={"containerd.io/gc.root": "yes", "x": "1"})
    assert sn.stat("a").labels == {"containerd.io/gc.root": "yes", "x": "1"}
    sn.commit("kept", "a")
    assert sn.stat("kept").labels == {"containerd.io/gc.root": "yes", "x": "1"}
    sn.prepare("b", labels={"old": "1"})
    sn.commit("replaced", "b", labels={"new": "2"})
    assert sn.stat("replaced").labels == {"new": "2"}
    sn.view("v", "replaced", labels={"v": "3"})
    assert sn.stat("v").labels == {"v": "3"}
    with pytest.raises(InvalidArgument):
        sn.prepare("bad", labels={"n": 1})  # type: ignore[dict-item]


def test_usage_counts_bytes(snapshotter: Snapshotter, tmp_path: Path) -> None:
    sn = snapshotter
    with mounted(sn.prepare("a"), tmp_path) as p:
        (p / "big").write_bytes(os.urandom(MiB))
        os.link(p / "big", p / "big-link")  # a hardlink must not count twice
        (p / "d").mkdir()
    u = sn.usage("a")
    assert MiB <= u.size < MiB + 64 * 1024
    assert u.inodes == 3  # root dir, big (once), d
    sn.commit("c", "a")
    assert sn.usage("c") == u
    # a committed snapshot is measured once (at the first ask, not by commit) and recorded
    assert sn._meta.get("c").usage == u  # type: ignore[attr-defined]
    with mounted(sn.prepare("child", "c"), tmp_path) as p:
        (p / "small").write_bytes(b"x" * 10)
    child = sn.usage("child")
    if sn.name == "overlay":
        assert child.size < 64 * 1024  # only its own layer
        assert child.inodes == 2
    else:
        assert child.size >= MiB + 4096  # a full copy
    with pytest.raises(NotFound):
        sn.usage("missing")


def test_remove_semantics(snapshotter: Snapshotter, tmp_path: Path) -> None:
    sn = snapshotter
    layer(sn, tmp_path, "base", None, {"f": "base"})
    sn.prepare("child", "base")
    sn.view("v", "base")
    dirs = snapshot_dirs(sn)
    with pytest.raises(Conflict, match="children"):
        sn.remove("base")
    with pytest.raises(NotFound, match="snapshot missing does not exist"):
        sn.remove("missing")
    sn.remove("child")
    with pytest.raises(Conflict):
        sn.remove("base")  # the view is still a child
    sn.remove("v")
    sn.remove("base")
    assert snapshot_dirs(sn) == set()
    assert dirs and list(sn.walk()) == []
    with pytest.raises(NotFound):
        sn.remove("base")
    # keys are reusable, and the new snapshot starts empty
    with mounted(sn.prepare("base"), tmp_path) as p:
        assert list(p.iterdir()) == []
        (p / "f").write_text("again")
    sn.commit("child", "base")
    assert view_tree(sn, tmp_path, "child") == {"f": "again"}


def test_views_are_read_only(snapshotter: Snapshotter, tmp_path: Path) -> None:
    sn = snapshotter
    layer(sn, tmp_path, "one", None, {"a": "1"})
    layer(sn, tmp_path, "two", "one", {"b": "2"})
    for parent in ("one", "two", None):
        key = f"view-{parent}"
        with mounted(sn.view(key, parent), tmp_path) as p:
            for attempt in (lambda: (p / "new").write_text("x"), lambda: (p / "newdir").mkdir()):
                with pytest.raises(OSError) as exc:
                    attempt()
                assert exc.value.errno == errno.EROFS
            if parent is not None:
                with pytest.raises(OSError) as exc:
                    (p / "a").write_text("changed")
                assert exc.value.errno == errno.EROFS
                assert (p / "a").read_text() == "1"


def test_128_layer_stack(snapshotter: Snapshotter, tmp_path: Path) -> None:
    sn = snapshotter
    parent = None
    for i in range(128):
        parent = layer(sn, tmp_path, f"layer{i}", parent, {f"file{i:03d}": str(i)})
    expected = {f"file{i:03d}": str(i) for i in range(128)}
    assert view_tree(sn, tmp_path, "layer127") == expected
    with mounted(sn.prepare("ctr", "layer127"), tmp_path) as p:
        assert tree(p) == expected
        (p / "file000").write_text("overwritten")
    with mounted(sn.mounts("ctr"), tmp_path) as p:
        assert (p / "file000").read_text() == "overwritten"


@pytest.mark.parametrize("strategy", ["page", "fsconfig", "relative"])
def test_128_layer_stack_overlay_strategies(tmp_path: Path, strategy: str) -> None:
    if strategy == "fsconfig" and not supports_lowerdir_append():
        pytest.skip("kernel lacks overlay lowerdir+ (Linux < 6.8)")
    with open_snapshotter("overlay", str(tmp_path / "root")) as sn:
        parent = None
        for i in range(128):
            parent = layer(sn, tmp_path, f"layer{i}", parent, {f"file{i:03d}": str(i)})
        view = sn.view("top", "layer127")
        assert overlay_strategy_for(view[0], None) != "page"  # past one page under tmp_path
        if strategy == "page":
            # The limit is detected before mount(2), which would silently truncate options.
            with pytest.raises(InvalidArgument, match="at most 4095"), mounted(view, tmp_path, "page"):
                pass
            return
        with mounted(view, tmp_path, strategy) as p:
            assert tree(p) == {f"file{i:03d}": str(i) for i in range(128)}
        with mounted(sn.prepare("ctr", "layer127"), tmp_path, strategy) as p:
            (p / "file127").unlink()
            (p / "new").write_text("n")
            assert len(os.listdir(p)) == 128


# --------------------------------------------------------------------------- persistence, crash safety


def test_metadata_survives_reopen(snapshotter: Snapshotter, tmp_path: Path) -> None:
    sn = snapshotter
    layer(sn, tmp_path, "base", None, {"f": "base"})
    with mounted(sn.prepare("ctr", "base", labels={"l": "v"}), tmp_path) as p:
        (p / "g").write_text("ctr")
    sn.view("v", "base")
    before = sorted((i.name, i.kind, i.parent, i.labels, i.created) for i in sn.walk())
    sn.close()
    with open_snapshotter(sn.name, sn.root) as again:  # type: ignore[attr-defined]
        assert sorted((i.name, i.kind, i.parent, i.labels, i.created) for i in again.walk()) == before
        with mounted(again.mounts("ctr"), tmp_path) as p:
            assert tree(p) == {"f": "base", "g": "ctr"}
        with pytest.raises(Conflict):
            again.prepare("ctr")
        again.prepare("new", "base")
        assert again.stat("new").parent == "base"


def test_root_is_locked_and_typed(snapshotter: Snapshotter) -> None:
    root = snapshotter.root  # type: ignore[attr-defined]
    with pytest.raises(Unavailable, match="in use"):
        open_snapshotter(snapshotter.name, root)
    snapshotter.close()
    other = "native" if snapshotter.name == "overlay" else "overlay"
    with pytest.raises(InvalidArgument, match="belongs to"):
        open_snapshotter(other, root)
    with pytest.raises(InvalidArgument, match="unknown snapshotter"):
        open_snapshotter("zfs", root)


def test_startup_cleans_orphans(snapshotter: Snapshotter, tmp_path: Path) -> None:
    sn = snapshotter
    layer(sn, tmp_path, "base", None, {"f": "base"})
    sn.prepare("doomed", "base")
    doomed_id = sn._meta.get("doomed").id  # type: ignore[attr-defined]
    root = Path(sn.root)  # type: ignore[attr-defined]
    sn.close()
    # a crash after the directory was placed but before its row committed ...
    orphan = root / "snapshots" / "9999" / "fs"
    orphan.mkdir(parents=True)
    (orphan / "junk").write_text("x")
    # ... one during population ...
    (root / "snapshots" / "new-crashed" / "fs").mkdir(parents=True)
    # ... and one midway through remove (row marked, directory not yet deleted)
    with sqlite3.connect(root / "metadata.db") as db:
        db.execute("UPDATE snapshots SET state = 'removing', key = NULL WHERE id = ?", (doomed_id,))
    db.close()
    with open_snapshotter(sn.name, str(root)) as again:
        assert snapshot_dirs(again) == {str(again._meta.get("base").id)}  # type: ignore[attr-defined]
        assert {i.name for i in again.walk()} == {"base"}
        assert view_tree(again, tmp_path, "base") == {"f": "base"}
        again.prepare("doomed", "base")  # the key is free again
        with sqlite3.connect(root / "metadata.db") as db:
            assert db.execute("SELECT count(*) FROM snapshots WHERE state = 'removing'").fetchone() == (0,)
        db.close()


def test_concurrent_prepares(snapshotter: Snapshotter, tmp_path: Path) -> None:
    sn = snapshotter
    layer(sn, tmp_path, "base", None, {"f": "base"})
    keys = [f"c{i}" for i in range(16)] * 2  # every key twice: one of each pair conflicts

    def prepare(key: str) -> str:
        try:
            sn.prepare(key, "base")
            return "ok"
        except Conflict:
            return "conflict"

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(prepare, keys))
    assert results.count("ok") == 16 and results.count("conflict") == 16
    assert len({i.name for i in sn.walk()}) == 17
    assert len(snapshot_dirs(sn)) == 17
    with mounted(sn.mounts("c7"), tmp_path) as p:
        assert tree(p) == {"f": "base"}


def test_remove_refuses_mounted_inside(snapshotter: Snapshotter, tmp_path: Path) -> None:
    """Something mounted inside a snapshot's directory: rmtree would wipe the mount too."""
    sn = snapshotter
    sn.prepare("a")
    fs = Path(sn.root, "snapshots", str(sn._meta.get("a").id), "fs")  # type: ignore[attr-defined]
    (fs / "mnt").mkdir()
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "data").write_text("keep me")
    mount_all([Mount("bind", str(precious), ["rbind"])], str(fs / "mnt"))
    try:
        with pytest.raises(Conflict, match="mounted"):
            sn.remove("a")
    finally:
        unmount_all(str(fs / "mnt"))
    assert (precious / "data").read_text() == "keep me"
    assert sn.stat("a").kind is Kind.ACTIVE
    sn.remove("a")


# --------------------------------------------------------------------------- detection


def test_detect_picks_overlay_here_and_cleans_up(tmp_path: Path) -> None:
    root = tmp_path / "data"
    assert detect(str(root)) == "overlay"  # ext4/xfs/btrfs on a 6.x kernel, as root
    assert os.listdir(root) == []


def test_detect_falls_back_to_native(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Any failure of the probe mount means native (here: an option the kernel rejects)."""
    import dockyard.snapshots.factory as factory

    monkeypatch.setattr(factory, "_base_options", lambda: ["bogus=1"])
    assert detect(str(tmp_path / "data")) == "native"
    assert os.listdir(tmp_path / "data") == []


def test_startup_cleanup_skips_mounted_orphan(snapshotter: Snapshotter, tmp_path: Path) -> None:
    """An orphan that cannot be deleted safely must not stop the snapshotter from opening."""
    root = Path(snapshotter.root)  # type: ignore[attr-defined]
    snapshotter.close()
    orphan = root / "snapshots" / "777" / "fs"
    orphan.mkdir(parents=True)
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "data").write_text("keep me")
    mount_all([Mount("bind", str(precious), ["rbind"])], str(orphan))
    try:
        with open_snapshotter(snapshotter.name, str(root)) as again:
            again.prepare("works")
        assert (precious / "data").read_text() == "keep me"
        assert orphan.exists()
    finally:
        unmount_all(str(orphan))
    with open_snapshotter(snapshotter.name, str(root)) as again:
        assert not orphan.exists()
        assert [i.name for i in again.walk()] == ["works"]
