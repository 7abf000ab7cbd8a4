"""Compression and layer apply on a real filesystem, checked through real overlay mounts."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os
import shutil
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import zstandard

from dockyard.archive import ApplyResult, apply_layer, compress, decompress, detect_compression
from dockyard.archive.worker import apply_layer_in_worker
from dockyard.errors import DataCorruption, InvalidArgument
from dockyard.mount import mounts_under
from dockyard.snapshots.base import Mount
from tests.fixtures.malicious_tars import (
    MTIME,
    blk,
    chr_,
    dir_,
    fifo,
    hard,
    overlay_mount,
    reg,
    sym,
    tar,
    tree_state,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mknod, chown, overlay)")


class Pipe(io.RawIOBase):
    """A forward-only stream (no seek, no peek) that returns short reads, like a socket."""

    def __init__(self, data: bytes, chunk: int = 7777) -> None:
        self._data = memoryview(data)
        self._chunk = chunk

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, buf) -> int:
        n = min(len(buf), self._chunk, len(self._data))
        buf[:n] = self._data[:n]
        self._data = self._data[n:]
        return n


@pytest.fixture(autouse=True, params=["in-process", "worker"])
def implementation(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test applies layers both here and in a worker process (archive/worker.py)."""
    if request.param == "worker":
        monkeypatch.setattr(sys.modules[__name__], "apply_layer", apply_layer_in_worker)
    return request.param


def bind(path: Path) -> list[Mount]:
    return [Mount("bind", str(path), ["rw", "rbind"])]


def overlay(lower: Path | list[Path], upper: Path, work: Path) -> list[Mount]:
    lowers = lower if isinstance(lower, list) else [lower]
    return [Mount("overlay", "overlay", ["index=off", "lowerdir=" + ":".join(map(str, lowers)),
                                         f"upperdir={upper}", f"workdir={work}"])]


def compressed(data: bytes, kind: str | None) -> bytes:
    if kind is None:
        return data
    out = io.BytesIO()
    compress(io.BytesIO(data), out, kind)  # type: ignore[arg-type]
    return out.getvalue()


@pytest.fixture
def dirs(tmp_path: Path):
    names = ("lower", "upper", "work", "merged", "native")
    for n in names:
        (tmp_path / n).mkdir()
    yield {n: tmp_path / n for n in names}
    assert not mounts_under(str(tmp_path)), "mount left behind"


# --------------------------------------------------------------------------- compression


def test_detect_compression() -> None:
    assert detect_compression(gzip.compress(b"x")[:6]) == "gzip"
    assert detect_compression(zstandard.ZstdCompressor().compress(b"x")[:6]) == "zstd"
    assert detect_compression(b"\x50\x2a\x4d\x18\x00\x00") == "zstd"  # skippable frame
    assert detect_compression(bz2.compress(b"x")[:6]) == "bzip2"
    assert detect_compression(lzma.compress(b"x")[:6]) == "xz"
    assert detect_compression(tar(reg("a"))[:6]) is None
    assert detect_compression(b"") is None
    assert detect_compression(b"\x1f") is None


@pytest.mark.parametrize("kind", ["gzip", "zstd", "bzip2", "xz"])
def test_compress_decompress_stream(kind: str) -> None:
    data = os.urandom(300_000) + b"a" * 2_000_000
    packed = compressed(data, kind)
    assert detect_compression(packed[:6]) == kind
    out = decompress(Pipe(packed))  # type: ignore[arg-type]
    assert out.read() == data
    # deterministic: same input, same bytes (no name, no timestamp in the gzip header)
    assert compressed(data, kind) == packed


def test_decompress_multi_member_and_multi_frame() -> None:
    assert decompress(Pipe(gzip.compress(b"one") + gzip.compress(b"two"))).read() == b"onetwo"  # type: ignore[arg-type]
    cctx = zstandard.ZstdCompressor()
    skippable = b"\x50\x2a\x4d\x18" + (4).to_bytes(4, "little") + b"meta"
    frames = skippable + cctx.compress(b"one") + cctx.compress(b"two")
    assert decompress(Pipe(frames)).read() == b"onetwo"  # type: ignore[arg-type]


def test_decompress_plain_and_short() -> None:
    assert decompress(Pipe(b"abc", chunk=1)).read() == b"abc"  # type: ignore[arg-type]
    assert decompress(io.BytesIO(b"")).read() == b""


@pytest.mark.parametrize("kind", ["gzip", "zstd", "bzip2", "xz"])
def test_decompress_corrupt_is_data_corruption(kind: str) -> None:
    packed = bytearray(compressed(os.urandom(100_000), kind))
    truncated = bytes(packed[: len(packed) // 2])
    with pytest.raises(DataCorruption):
        decompress(io.BytesIO(truncated)).read()
    packed[len(packed) // 2] ^= 0xFF
    packed[len(packed) // 2 + 1] ^= 0xFF
    with pytest.raises(DataCorruption):
        decompress(io.BytesIO(bytes(packed))).read()


def test_compress_unknown_kind() -> None:
    with pytest.raises(InvalidArgument):
        compress(io.BytesIO(b""), io.BytesIO(), "lz4")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- apply basics


def sample_layer() -> bytes:
    return tar(
        dir_("etc/", 0o755, mtime=MTIME - 100),
        reg("etc/hosts", b"127.0.0.1 localhost\n", 0o644, uid=1000, gid=1001),
        reg("etc/suid", b"#!/bin/sh\n", 0o4755),
        dir_("tmp/", 0o1777),
        sym("etc/link", "/etc/hosts", uid=5, gid=6),
        hard("etc/hosts2", "etc/hosts"),
        fifo("run.fifo", 0o620),
        dir_("empty/", 0o700),
    )


@pytest.mark.parametrize("kind", [None, "gzip", "zstd", "bzip2", "xz"])
def test_round_trip_diff_id(kind: str | None, dirs) -> None:
    plain = sample_layer()
    assert len(plain) % 10240 == 0  # tarfile pads to a record: diff_id covers the padding
    result = apply_layer(Pipe(compressed(plain, kind)), bind(dirs["native"]))  # type: ignore[arg-type]
    assert result == ApplyResult("sha256:" + hashlib.sha256(plain).hexdigest(),
                                 len(b"127.0.0.1 localhost\n") + len(b"#!/bin/sh\n"))
    assert (dirs["native"] / "etc/hosts").read_bytes() == b"127.0.0.1 localhost\n"


def test_diff_id_includes_trailing_bytes(dirs) -> None:
    plain = sample_layer() + b"\0" * 4096  # more zero blocks than tarfile reads
    result = apply_layer(io.BytesIO(gzip.compress(plain)), bind(dirs["native"]))
    assert result.diff_id == "sha256:" + hashlib.sha256(plain).hexdigest()


def test_empty_stream_is_empty_layer(dirs) -> None:
    result = apply_layer(io.BytesIO(b""), bind(dirs["native"]))
    assert result == ApplyResult("sha256:" + hashlib.sha256(b"").hexdigest(), 0)
    assert os.listdir(dirs["native"]) == []


@pytest.mark.parametrize("data", [
    b"not a tar at all" * 64,
    tar(reg("big", b"x" * 5000))[:2048],  # truncated inside a file
    gzip.compress(tar(reg("a", b"x")))[:30],  # truncated compressed stream
    tar(reg("a", b"x"))[:1024] + b"\x01" * 512 + b"\0" * 1024,  # corrupt second header
])
def test_malformed_is_data_corruption(data: bytes, dirs) -> None:
    with pytest.raises(DataCorruption):
        apply_layer(io.BytesIO(data), bind(dirs["native"]))


def test_missing_end_of_archive_is_accepted(dirs) -> None:
    data = tar(reg("a", b"x"), reg("b", b"y"))[:2048]  # two members, no zero blocks
    result = apply_layer(io.BytesIO(data), bind(dirs["native"]))
    assert result.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert sorted(os.listdir(dirs["native"])) == ["a", "b"]


def test_refuses_read_only_targets(dirs) -> None:
    with pytest.raises(InvalidArgument):
        apply_layer(io.BytesIO(b""), [Mount("bind", str(dirs["native"]), ["ro", "rbind"])])
    with pytest.raises(InvalidArgument):
        apply_layer(io.BytesIO(b""), [Mount("overlay", "overlay", [f"lowerdir={dirs['lower']}:{dirs['native']}"])])
    with pytest.raises(InvalidArgument):
        apply_layer(io.BytesIO(b""), [])


@pytest.mark.parametrize("mode", ["native", "overlay"])
def test_metadata_preserved(mode: str, dirs) -> None:
    fine_mtime = tarfile.TarInfo("etc/fine")  # sub-second mtime and an atime, via PAX
    fine_mtime.mtime = 1_500_000_000.25
    fine_mtime.size = 1
    fine_mtime.pax_headers = {"atime": "1400000000.5", "SCHILY.xattr.user.color": "blue",
                              "SCHILY.xattr.user.bin": b"\xff\x00\x01".decode("utf-8", "surrogateescape")}
    layer = sample_layer()[:-1024].rstrip(b"\0")  # drop the end-of-archive blocks
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        src = tarfile.open(fileobj=io.BytesIO(sample_layer()))
        for m in src:
            tf.addfile(m, src.extractfile(m) if m.isreg() else None)
        tf.addfile(fine_mtime, io.BytesIO(b"f"))
        d = tarfile.TarInfo("xdir")
        d.type, d.mode, d.mtime = tarfile.DIRTYPE, 0o750, MTIME
        d.pax_headers = {"SCHILY.xattr.user.dir": "yes"}
        tf.addfile(d)
        for info, _ in (chr_("dev/null", 1, 3), blk("dev/loop0", 7, 0)):
            tf.addfile(info)
    del layer
    root = dirs["native"] if mode == "native" else dirs["upper"]
    mounts = bind(root) if mode == "native" else overlay(dirs["lower"], dirs["upper"], dirs["work"])
    apply_layer(io.BytesIO(buf.getvalue()), mounts)

    def st(rel: str) -> os.stat_result:
        return os.lstat(root / rel)

    assert stat.S_IMODE(st("etc/hosts").st_mode) == 0o644
    assert (st("etc/hosts").st_uid, st("etc/hosts").st_gid) == (1000, 1001)
    assert stat.S_IMODE(st("etc/suid").st_mode) == 0o4755  # chown did not clear setuid
    assert stat.S_IMODE(st("tmp").st_mode) == 0o1777
    assert stat.S_IMODE(st("empty").st_mode) == 0o700
    assert st("etc/hosts").st_mtime_ns == MTIME * 10**9
    assert st("etc").st_mtime_ns == (MTIME - 100) * 10**9  # restored after its children
    assert os.readlink(root / "etc/link") == "/etc/hosts"
    assert (st("etc/link").st_uid, st("etc/link").st_gid) == (5, 6)
    assert st("etc/link").st_mtime_ns == MTIME * 10**9
    assert os.path.samestat(st("etc/hosts"), st("etc/hosts2"))
    assert stat.S_ISFIFO(st("run.fifo").st_mode) and stat.S_IMODE(st("run.fifo").st_mode) == 0o620
    assert stat.S_ISCHR(st("dev/null").st_mode) and st("dev/null").st_rdev == os.makedev(1, 3)
    assert stat.S_ISBLK(st("dev/loop0").st_mode) and st("dev/loop0").st_rdev == os.makedev(7, 0)
    assert st("etc/fine").st_mtime_ns == 1_500_000_000_250_000_000
    assert st("etc/fine").st_atime_ns == 1_400_000_000_500_000_000
    assert os.getxattr(root / "etc/fine", "user.color") == b"blue"
    assert os.getxattr(root / "etc/fine", "user.bin") == b"\xff\x00\x01"
    assert os.getxattr(root / "xdir", "user.dir") == b"yes"
    assert stat.S_IMODE(st("xdir").st_mode) == 0o750


def test_replacing_entries(dirs) -> None:
    root = dirs["native"]
    apply_layer(io.BytesIO(tar(dir_("d/"), reg("d/keep", b"k"), dir_("gone/"), reg("gone/x"),
                               reg("f", b"file"), sym("l", "somewhere"))), bind(root))
    apply_layer(io.BytesIO(tar(dir_("d/", 0o700), reg("gone", b"now a file"), dir_("f/"),
                               reg("l", b"was a link"))), bind(root))
    assert (root / "d/keep").read_bytes() == b"k"  # directories merge
    assert stat.S_IMODE(os.lstat(root / "d").st_mode) == 0o700
    assert (root / "gone").read_bytes() == b"now a file"
    assert (root / "f").is_dir()
    assert not (root / "l").is_symlink() and (root / "l").read_bytes() == b"was a link"


def test_aufs_metadata_is_skipped(dirs) -> None:
    apply_layer(io.BytesIO(tar(dir_(".wh..wh.plnk/"), reg(".wh..wh.plnk/123.456", b"x"),
                               reg(".wh..wh.aufs"), reg("a", b"a"))), bind(dirs["native"]))
    assert os.listdir(dirs["native"]) == ["a"]


# --------------------------------------------------------------------------- whiteouts


def base_layer() -> bytes:
    return tar(
        dir_("a/", 0o750, uid=42, gid=43, mtime=MTIME - 5),
        reg("a/x", b"x"), reg("a/y", b"y"),
        dir_("b/"), reg("b/z", b"z"),
        dir_("c/"), reg("c/old", b"old"), dir_("c/sub/"), reg("c/sub/deep", b"deep"),
        reg("keep", b"keep"), reg("gone", b"gone"),
    )


def whiteout_layer() -> bytes:
    return tar(
        reg("a/.wh.x"),  # no "a/" entry: the upper's a/ must copy the lower's
        reg(".wh.b"),
        dir_("c/"), reg("c/.wh..wh..opq"), reg("c/new", b"new"),
        reg(".wh.gone"),
        reg(".wh.never-existed"),
        reg("added", b"added"),
    )


def expect_whiteouts_applied(root: Path) -> None:
    assert sorted(os.listdir(root)) == ["a", "added", "c", "keep"]
    assert sorted(os.listdir(root / "a")) == ["y"]
    assert sorted(os.listdir(root / "c")) == ["new"]


def test_overlay_whiteouts_and_real_mount(dirs) -> None:
    apply_layer(io.BytesIO(base_layer()), bind(dirs["lower"]))
    lower_before = tree_state(dirs["lower"])
    apply_layer(io.BytesIO(whiteout_layer()), overlay(dirs["lower"], dirs["upper"], dirs["work"]))
    assert tree_state(dirs["lower"]) == lower_before  # lowers are never written

    up = dirs["upper"]
    for rel in ("a/x", "b", "gone"):
        st = os.lstat(up / rel)
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0, rel
    assert os.getxattr(up / "c", "trusted.overlay.opaque") == b"y"
    assert not os.path.lexists(up / "a/y")
    a = os.lstat(up / "a")  # created from the lower's a/: owner, mode
    assert (stat.S_IMODE(a.st_mode), a.st_uid, a.st_gid) == (0o750, 42, 43)

    with overlay_mount(dirs["merged"], [dirs["lower"]], dirs["upper"], dirs["work"]) as merged:
        expect_whiteouts_applied(merged)
        assert (merged / "c/new").read_bytes() == b"new"
        assert (merged / "keep").read_bytes() == b"keep"
        # a/ changed during the apply in both modes: its mtime is "now", not compared
        merged_state = tree_state(merged, mtime=False)
        assert os.lstat(merged / "keep").st_mtime_ns == MTIME * 10**9

    # native mode applies the same layers to the same visible result
    apply_layer(io.BytesIO(base_layer()), bind(dirs["native"]))
    apply_layer(io.BytesIO(whiteout_layer()), bind(dirs["native"]))
    expect_whiteouts_applied(dirs["native"])
    assert tree_state(dirs["native"], mtime=False) == merged_state


def test_lowers_that_come_late(dirs) -> None:
    """A layer unpacked before the one below it is done (a pull): into a bare upperdir whose
    overlay mounts ``final_mounts`` gives once, when a lookup first needs the lowers (here
    ``a/.wh.x`` without an ``a/`` entry) or at the end. The result is the overlay apply's,
    and the root takes the lower root's owner and mode unless the tar sets them."""
    apply_layer(io.BytesIO(base_layer()), bind(dirs["lower"]))
    os.chown(dirs["lower"], 7, 8)
    os.chmod(dirs["lower"], 0o711)
    apply_layer(io.BytesIO(whiteout_layer()), overlay(dirs["lower"], dirs["upper"], dirs["work"]))
    expected = tree_state(dirs["upper"], mtime=False)
    os.chown(dirs["upper"], 7, 8)  # what the overlay snapshotter's prepare does
    os.chmod(dirs["upper"], 0o711)
    expected["."] = tree_state(dirs["upper"], mtime=False)["."]

    for n, (layer, asks_early) in enumerate([(whiteout_layer(), True), (tar(reg("added", b"added")), False)]):
        upper = dirs["native"] / f"upper{n}"
        upper.mkdir(mode=0o755)
        asked: list[bool] = []

        def final_mounts(upper: Path = upper, asked: list[bool] = asked) -> list[Mount]:
            asked.append((upper / "added").exists())  # whether the layer's last entry is in yet
            return overlay(dirs["lower"], upper, dirs["work"])

        apply_layer(io.BytesIO(layer), bind(upper), final_mounts=final_mounts)
        assert asked == [not asks_early], "asked once: early for a lookup, else at the end"
        st = os.lstat(upper)
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o711, 7, 8)
    assert tree_state(dirs["native"] / "upper0", mtime=False) == expected
    with overlay_mount(dirs["merged"], [dirs["native"] / "upper0", dirs["lower"]]) as merged:
        expect_whiteouts_applied(merged)

    upper = dirs["native"] / "root-entry"  # a tar that sets the root keeps its own
    upper.mkdir()
    apply_layer(io.BytesIO(tar(dir_("./", 0o750, uid=3, gid=4))), bind(upper),
                final_mounts=lambda: overlay(dirs["lower"], upper, dirs["work"]))
    st = os.lstat(upper)
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o750, 3, 4)


@pytest.mark.parametrize("mode", ["native", "overlay"])
def test_whiteouts_never_hide_same_layer_content(mode: str, dirs) -> None:
    base = tar(dir_("d/"), reg("d/lower", b"l"), dir_("e/"), reg("e/lower", b"l"), reg("f", b"lower"))
    layer = tar(
        reg("f", b"mine"), reg(".wh.f"),  # whiteout after the same layer's file: file stays
        reg("d/mine", b"m"), reg("d/.wh..wh..opq"),  # opaque marker after the content
        reg("e/mine", b"m"), reg(".wh.e"),  # whiteout of a dir this layer filled: opaque
    )
    apply_layer(io.BytesIO(base), bind(dirs["lower"] if mode == "overlay" else dirs["native"]))
    if mode == "native":
        apply_layer(io.BytesIO(layer), bind(dirs["native"]))
        check = dirs["native"]
    else:
        apply_layer(io.BytesIO(layer), overlay(dirs["lower"], dirs["upper"], dirs["work"]))
        ctx = overlay_mount(dirs["merged"], [dirs["upper"], dirs["lower"]])
        check = ctx.__enter__()
    try:
        assert (check / "f").read_bytes() == b"mine"
        assert sorted(os.listdir(check / "d")) == ["mine"]
        assert sorted(os.listdir(check / "e")) == ["mine"]
    finally:
        if mode == "overlay":
            ctx.__exit__(None, None, None)


@pytest.mark.parametrize("mode", ["native", "overlay"])
def test_whiteout_then_recreate_in_same_layer(mode: str, dirs) -> None:
    base = tar(dir_("d/"), reg("d/old", b"o"))
    layer = tar(reg(".wh.d"), dir_("d/", 0o700), reg("d/new", b"n"))
    if mode == "native":
        apply_layer(io.BytesIO(base), bind(dirs["native"]))
        apply_layer(io.BytesIO(layer), bind(dirs["native"]))
        assert sorted(os.listdir(dirs["native"] / "d")) == ["new"]
        return
    apply_layer(io.BytesIO(base), bind(dirs["lower"]))
    apply_layer(io.BytesIO(layer), overlay(dirs["lower"], dirs["upper"], dirs["work"]))
    assert os.getxattr(dirs["upper"] / "d", "trusted.overlay.opaque") == b"y"
    with overlay_mount(dirs["merged"], [dirs["upper"], dirs["lower"]]) as merged:
        assert sorted(os.listdir(merged / "d")) == ["new"]


@pytest.mark.parametrize("mode", ["native", "overlay"])
def test_paths_through_lower_symlinks(mode: str, dirs) -> None:
    """usrmerge: a later layer writing bin/tool where bin -> usr/bin in an earlier one."""
    base = tar(dir_("usr/", 0o755), dir_("usr/bin/", 0o711, uid=3), sym("bin", "usr/bin"),
               sym("abs", "/usr"), reg("usr/bin/old", b"old"))
    layer = tar(reg("bin/tool", b"tool"), reg("abs/bin/tool2", b"tool2"), hard("bin/tool3", "bin/old"))
    if mode == "native":
        apply_layer(io.BytesIO(base), bind(dirs["native"]))
        apply_layer(io.BytesIO(layer), bind(dirs["native"]))
        view = dirs["native"]
    else:
        apply_layer(io.BytesIO(base), bind(dirs["lower"]))
        apply_layer(io.BytesIO(layer), overlay(dirs["lower"], dirs["upper"], dirs["work"]))
        assert (dirs["upper"] / "usr/bin/tool").read_bytes() == b"tool"
        ub = os.lstat(dirs["upper"] / "usr/bin")
        assert (stat.S_IMODE(ub.st_mode), ub.st_uid) == (0o711, 3)
        # the hardlink target only existed below: copied up, then linked
        assert os.path.samestat(os.lstat(dirs["upper"] / "usr/bin/old"),
                                os.lstat(dirs["upper"] / "usr/bin/tool3"))
        ctx = overlay_mount(dirs["merged"], [dirs["upper"], dirs["lower"]])
        view = ctx.__enter__()
    try:
        assert os.path.islink(view / "bin")
        assert sorted(os.listdir(view / "usr/bin")) == ["old", "tool", "tool2", "tool3"]
        assert (view / "usr/bin/tool3").read_bytes() == b"old"
    finally:
        if mode == "overlay":
            ctx.__exit__(None, None, None)


def test_gnu_tar_output_applies(dirs, tmp_path: Path) -> None:
    """A tar written by GNU tar (long names, its own header flavour) applies and hashes."""
    if shutil.which("tar") is None:
        pytest.skip("no tar binary")
    src = tmp_path / "src"
    deep = src / ("long-name-" * 12) / "x"
    deep.mkdir(parents=True)
    (deep / "f").write_bytes(b"data")
    os.symlink("f", deep / "l")
    out = subprocess.run(["tar", "-C", str(src), "--format=gnu", "-cf", "-", "."],
                         check=True, capture_output=True).stdout
    result = apply_layer(io.BytesIO(out), bind(dirs["native"]))
    assert result.diff_id == "sha256:" + hashlib.sha256(out).hexdigest()
    assert tree_state(dirs["native"]) == tree_state(src)


# --------------------------------------------------------------------------- native == overlay

SCENARIOS = {
    # an opaque directory hides the lower's entries from later paths, symlinks included
    "opaque-hides-lower-for-later-entries": (
        tar(dir_("d/"), dir_("d/sub/", 0o700, uid=5), sym("d/link", "/target"), dir_("target/"),
            reg("d/old")),
        tar(dir_("d/"), reg("d/.wh..wh..opq"), reg("d/sub/file", b"f"), reg("d/link/f", b"g")),
    ),
    "whiteout-then-dir-then-children": (
        tar(dir_("d/", 0o700), reg("d/old"), dir_("d/keep/")),
        tar(reg(".wh.d"), reg("d/keep/new", b"n")),
    ),
    "replace-types-across-layers": (
        tar(dir_("a/"), reg("a/x"), reg("b", b"b"), dir_("t/"), sym("c", "t"), reg("e", b"e")),
        tar(reg("a", b"file now"), dir_("b/"), reg("b/in", b"i"), reg("c/y", b"via link"),
            hard("e2", "e")),
    ),
    "opaque-root": (
        tar(reg("old", b"o"), dir_("d/"), reg("d/x")),
        tar(reg(".wh..wh..opq"), reg("new", b"n")),
    ),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_native_and_overlay_agree(name: str, dirs) -> None:
    base, layer = SCENARIOS[name]
    apply_layer(io.BytesIO(base), bind(dirs["native"]))
    apply_layer(io.BytesIO(layer), bind(dirs["native"]))
    apply_layer(io.BytesIO(base), bind(dirs["lower"]))
    apply_layer(io.BytesIO(layer), overlay(dirs["lower"], dirs["upper"], dirs["work"]))
    with overlay_mount(dirs["merged"], [dirs["upper"], dirs["lower"]]) as merged:
        # mtimes of directories the apply touched are "now" in both: not compared
        assert tree_state(merged, mtime=False) == tree_state(dirs["native"], mtime=False)


def test_stack_of_parses_snapshot_mounts() -> None:
    from dockyard.archive.layers import stack_of

    s = stack_of([Mount("overlay", "overlay", ["index=off", "lowerdir=/a:/b\\:c", "lowerdir+=/d",
                                               "upperdir=/u", "workdir=/w", "userxattr"])])
    assert (s.dirs, s.upper, s.lowers, s.overlay) == (["/u", "/a", "/b:c", "/d"], "/u", ["/a", "/b:c", "/d"], True)
    assert s.xattr_prefix == "user.overlay."
    v = stack_of([Mount("bind", "/x", ["ro", "rbind"])])
    assert (v.dirs, v.upper, v.overlay) == (["/x"], None, False)
    assert stack_of([]).dirs == []
    with pytest.raises(InvalidArgument):
        stack_of([Mount("tmpfs", "tmpfs", [])])

