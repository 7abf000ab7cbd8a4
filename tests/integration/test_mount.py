"""dockyard.mount against the real kernel: binds, overlay strategies, cleanup."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from dockyard import mount as dmount
from dockyard.errors import InvalidArgument
from dockyard.mount import (
    is_mounted,
    mount_all,
    mounts_under,
    overlay_strategy_for,
    supports_lowerdir_append,
    temp_mount,
    unmount_all,
)
from dockyard.snapshots.base import Mount

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mount(2) needs root")


@pytest.fixture(autouse=True)
def leaves_no_mounts(tmp_path: Path):
    yield
    leaked = mounts_under(str(tmp_path))
    unmount_all(str(tmp_path))  # so one failure does not cascade into the next tests
    assert leaked == [], f"test leaked mounts: {leaked}"


@pytest.fixture(scope="module", autouse=True)
def module_leaves_no_mounts(tmp_path_factory: pytest.TempPathFactory):
    yield
    assert mounts_under(str(tmp_path_factory.getbasetemp())) == []


def _dir(path: Path, files: dict[str, str] | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name, content in (files or {}).items():
        (path / name).write_text(content)
    return path


def _read_only(path: str) -> bool:
    return bool(os.statvfs(path).f_flag & os.ST_RDONLY)


# --------------------------------------------------------------------------- bind


def test_bind_rw(tmp_path: Path) -> None:
    src = _dir(tmp_path / "src", {"a": "A"})
    target = _dir(tmp_path / "target")
    mount_all([Mount("bind", str(src), ["rw", "rbind"])], str(target))
    try:
        assert is_mounted(str(target))
        assert (target / "a").read_text() == "A"
        (target / "b").write_text("B")
        assert (src / "b").read_text() == "B"
        assert not _read_only(str(target))
    finally:
        unmount_all(str(target))
    assert not is_mounted(str(target))
    assert not (target / "a").exists()


def test_bind_ro(tmp_path: Path) -> None:
    src = _dir(tmp_path / "src", {"a": "A"})
    target = _dir(tmp_path / "target")
    mount_all([Mount("bind", str(src), ["ro", "rbind", "nosuid", "nodev"])], str(target))
    try:
        assert (target / "a").read_text() == "A"
        with pytest.raises(OSError) as exc:
            (target / "b").write_text("B")
        assert exc.value.errno == errno.EROFS
        flags = os.statvfs(str(target)).f_flag
        assert flags & os.ST_RDONLY and flags & os.ST_NOSUID and flags & os.ST_NODEV
        # only the bind is read-only, not the source filesystem
        (src / "c").write_text("C")
        assert (target / "c").read_text() == "C"
    finally:
        unmount_all(str(target))


def test_unmount_all_nested_and_stacked(tmp_path: Path) -> None:
    outer = _dir(tmp_path / "outer", {"o": "1"})
    _dir(outer / "sub")
    inner = _dir(tmp_path / "inner", {"i": "1"})
    other = _dir(tmp_path / "other", {"x": "1"})
    target = _dir(tmp_path / "target")
    mount_all([Mount("bind", str(outer), ["rbind"])], str(target))
    mount_all([Mount("bind", str(inner), ["rbind"])], str(target / "sub"))
    mount_all([Mount("bind", str(other), ["rbind", "ro"])], str(target / "sub"))  # stacked
    assert len(mounts_under(str(target))) == 3
    assert (target / "sub" / "x").exists()
    unmount_all(str(target))
    assert mounts_under(str(target)) == []
    assert os.listdir(target) == []
    assert sorted(os.listdir(outer)) == ["o", "sub"]  # sources untouched


def test_unmount_all_busy_mount_is_detached(tmp_path: Path) -> None:
    src = _dir(tmp_path / "src", {"a": "A"})
    target = _dir(tmp_path / "target")
    mount_all([Mount("bind", str(src), ["rbind"])], str(target))
    f = open(target / "a")  # keeps the mount busy
    try:
        unmount_all(str(target))
        assert not is_mounted(str(target))
        assert f.read() == "A"
    finally:
        f.close()


def test_unmount_all_of_unmounted_path_is_noop(tmp_path: Path) -> None:
    unmount_all(str(tmp_path / "nothing-here"))  # missing path: no error
    unmount_all(str(tmp_path))
    assert mounts_under(str(tmp_path)) == [] and tmp_path.is_dir()


def test_mount_point_with_space_and_symlinked_path(tmp_path: Path) -> None:
    src = _dir(tmp_path / "src", {"a": "A"})
    target = _dir(tmp_path / "with space")
    link = tmp_path / "link"
    link.symlink_to(target)
    mount_all([Mount("bind", str(src), ["rbind"])], str(target))
    try:
        assert is_mounted(str(target))
        assert is_mounted(str(link))  # compared after resolving symlinks
        assert mounts_under(str(tmp_path)) == [str(target)]
    finally:
        unmount_all(str(link))
    assert not is_mounted(str(target))


# --------------------------------------------------------------------------- temp_mount / rollback


def test_temp_mount_cleans_up_on_exception(tmp_path: Path) -> None:
    src = _dir(tmp_path / "src", {"a": "A"})
    seen: list[str] = []
    with pytest.raises(RuntimeError, match="boom"), temp_mount(
        [Mount("bind", str(src), ["rbind"])], dir=str(tmp_path)
    ) as path:
        seen.append(path)
        assert is_mounted(path)
        assert Path(path, "a").read_text() == "A"
        raise RuntimeError("boom")
    assert not os.path.exists(seen[0])
    assert mounts_under(str(tmp_path)) == []


def test_temp_mount_failed_mount_removes_dir(tmp_path: Path) -> None:
    before = set(os.listdir(tmp_path))
    with pytest.raises(OSError), temp_mount([Mount("bind", str(tmp_path / "missing"), ["rbind"])], dir=str(tmp_path)):
        pytest.fail("must not get here")
    assert set(os.listdir(tmp_path)) == before


def test_mount_all_rolls_back_on_failure(tmp_path: Path) -> None:
    src = _dir(tmp_path / "src", {"a": "A"})
    target = _dir(tmp_path / "target")
    mounts = [Mount("bind", str(src), ["rbind"]), Mount("bind", str(tmp_path / "missing"), ["rbind"])]
    with pytest.raises(OSError):
        mount_all(mounts, str(target))
    assert mounts_under(str(target)) == []


# --------------------------------------------------------------------------- overlay


def _overlay(tmp_path: Path, layers: int, deep: bool = False) -> tuple[Mount, Path]:
    """An overlay with ``layers`` lowers (top-most first), each holding one file.

    ``deep`` puts everything ~400 bytes below ``tmp_path``: long absolute paths with a
    long common prefix, the shape of a real data root, which relative paths shorten.
    """
    base = tmp_path / ("d" * 200) / ("e" * 200) if deep else tmp_path
    lowers = [str(_dir(base / "layers" / f"{i:03d}", {f"f{i}": str(i)})) for i in range(layers)]
    # the same file in the top and bottom layers: the top must win
    (Path(lowers[0]) / "shared").write_text("top")
    (Path(lowers[-1]) / "shared").write_text("bottom")
    upper = _dir(base / "upper")
    work = _dir(base / "work")
    m = Mount(
        "overlay",
        "overlay",
        ["index=off", "lowerdir=" + ":".join(lowers), f"upperdir={upper}", f"workdir={work}"],
    )
    return m, upper


@pytest.mark.parametrize("strategy", ["page", "fsconfig", "relative"])
def test_overlay_strategies_small_stack(tmp_path: Path, strategy: str) -> None:
    if strategy == "fsconfig" and not supports_lowerdir_append():
        pytest.skip("kernel lacks overlay lowerdir+ (Linux < 6.8)")
    m, upper = _overlay(tmp_path, 3)
    with temp_mount([m], dir=str(tmp_path), overlay_strategy=strategy) as p:
        assert sorted(os.listdir(p)) == ["f0", "f1", "f2", "shared"]
        assert Path(p, "shared").read_text() == "top"
        Path(p, "new").write_text("N")
        os.remove(Path(p, "f1"))
    assert (upper / "new").read_text() == "N"
    assert (upper / "f1").is_char_device()  # overlay whiteout


@pytest.mark.parametrize("strategy", ["auto", "page", "fsconfig", "relative"])
def test_overlay_strategies_128_long_lowers(tmp_path: Path, strategy: str) -> None:
    """128 layers at ~500-byte absolute paths: far past mount(2)'s one page."""
    m, _ = _overlay(tmp_path, 128, deep=True)
    assert len(",".join(m.options)) > 4096
    if strategy == "page":
        with pytest.raises(InvalidArgument, match="at most 4095"):
            mount_all([m], str(_dir(tmp_path / "target")), overlay_strategy="page")
        return
    if strategy == "fsconfig" and not supports_lowerdir_append():
        pytest.skip("kernel lacks overlay lowerdir+ (Linux < 6.8)")
    with temp_mount([m], dir=str(tmp_path), overlay_strategy=strategy) as p:
        names = set(os.listdir(p))
        assert names == {f"f{i}" for i in range(128)} | {"shared"}
        assert Path(p, "shared").read_text() == "top"


def test_overlay_ro_flag_with_each_strategy(tmp_path: Path) -> None:
    m, _ = _overlay(tmp_path, 2)
    m.options.append("ro")
    strategies = ["page", "relative"] + (["fsconfig"] if supports_lowerdir_append() else [])
    for strategy in strategies:
        with temp_mount([m], dir=str(tmp_path), overlay_strategy=strategy) as p:
            assert _read_only(p), strategy
            with pytest.raises(OSError) as exc:
                Path(p, "x").write_text("x")
            assert exc.value.errno == errno.EROFS


def test_overlay_strategy_selection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(dmount.STRATEGY_ENV, raising=False)
    small, _ = _overlay(tmp_path / "small", 2)
    big, _ = _overlay(tmp_path / "big", 128, deep=True)
    assert overlay_strategy_for(small) == "page"
    assert overlay_strategy_for(big) == ("fsconfig" if supports_lowerdir_append() else "relative")
    monkeypatch.setattr(dmount, "_lowerdir_append", False)  # as on a kernel < 6.8
    assert overlay_strategy_for(big) == "relative"
    monkeypatch.setenv(dmount.STRATEGY_ENV, "relative")
    assert overlay_strategy_for(small) == "relative"
    assert overlay_strategy_for(small, "page") == "page"  # the argument beats the env var
    with pytest.raises(InvalidArgument, match="unknown overlay mount strategy"):
        overlay_strategy_for(small, "bogus")


def test_overlay_env_var_forces_strategy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    m, _ = _overlay(tmp_path, 2)
    monkeypatch.setenv(dmount.STRATEGY_ENV, "relative")
    with temp_mount([m], dir=str(tmp_path)) as p:
        # util-linux recorded the relative paths it was given: proof this path ran
        with open("/proc/self/mountinfo") as f:
            line = next(line for line in f if f" {p} " in line)
        assert "lowerdir=layers/000:layers/001" in line
        assert sorted(os.listdir(p)) == ["f0", "f1", "shared"]


def test_overlay_bad_options_report_kernel_reason(tmp_path: Path) -> None:
    m, _ = _overlay(tmp_path, 2)
    m.options.append("bogus=1")
    for strategy in ["page", "relative"] + (["fsconfig"] if supports_lowerdir_append() else []):
        with pytest.raises(OSError) as exc:
            mount_all([m], str(_dir(tmp_path / "target")), overlay_strategy=strategy)
        if strategy == "fsconfig":
            assert "Unknown parameter 'bogus'" in str(exc.value)
        assert mounts_under(str(tmp_path)) == []


def test_fsconfig_long_paths_without_set_fd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Kernels 6.8-6.12 reject FSCONFIG_SET_FD for overlay: the magic-link fallback."""
    if not supports_lowerdir_append():
        pytest.skip("kernel lacks overlay lowerdir+ (Linux < 6.8)")

    def no_set_fd(fd: int, key: str, value_fd: int) -> None:
        raise OSError(errno.EINVAL, "FSCONFIG_SET_FD not supported (simulated)")

    monkeypatch.setattr(dmount.syscalls, "fsconfig_fd", no_set_fd)
    m, upper = _overlay(tmp_path, 3, deep=True)
    with temp_mount([m], dir=str(tmp_path), overlay_strategy="fsconfig") as p:
        assert sorted(os.listdir(p)) == ["f0", "f1", "f2", "shared"]
        Path(p, "new").write_text("N")
    assert (upper / "new").read_text() == "N"


def test_other_filesystem_types_pass_options_through(tmp_path: Path) -> None:
    target = _dir(tmp_path / "target")
    mount_all([Mount("tmpfs", "dockyard-test", ["size=1m", "mode=0710", "nosuid", "ro"])], str(target))
    try:
        assert is_mounted(str(target))
        assert stat_mode(target) == 0o710
        flags = os.statvfs(str(target)).f_flag
        assert flags & os.ST_RDONLY and flags & os.ST_NOSUID
        assert os.statvfs(str(target)).f_blocks * os.statvfs(str(target)).f_frsize == 1 << 20
    finally:
        unmount_all(str(target))


def stat_mode(path: Path) -> int:
    return os.stat(path).st_mode & 0o7777
