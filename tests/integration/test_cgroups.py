"""dockyard.runtime.cgroups: one conformance suite run against every implementation.

    v1          this host's real v1 hierarchies, real processes and enforced limits
    v2-unified  the host's real cgroup2 mount (/sys/fs/cgroup/unified on this hybrid host:
                no controllers, but create/add/pids/freeze/kill/destroy/events are real)
    v2-scratch  a tmp tree emulating a v2 cgroupfs with every controller (file values,
                controller enabling, stats/events parsing, the OOM watcher's logic)
    v1-scratch  the same for v1 (file values, cpuset inheritance, parsing)

A test that cannot run on an implementation is skipped with the reason from ``MISSING``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dockyard.errors import Conflict, InvalidArgument, NotFound, Unavailable
from dockyard.runtime.cgroups import (
    REAL_FS,
    Cgroup,
    CgroupFs,
    V1Cgroup,
    V2Cgroup,
    detect_version,
    open_cgroup,
    parse_cgroup_path,
)
from dockyard.runtime.cgroups import resources as R
from dockyard.runtime.cgroups.base import V1_UNLIMITED
from dockyard.runtime.cgroups.detect import (
    parse_mountinfo,
    read_mounts,
    v1_hierarchies,
    v2_mount_point,
)
from dockyard.runtime.cgroups.notify import KernfsWatch

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="cgroupfs writes need root")

MiB = 1 << 20
PREFIX = "dockyard-test-"

# ----------------------------------------------------------------------------- the matrix

IMPLS = ["v1", "v2-unified", "v2-scratch", "v1-scratch"]
_NO_KERNEL = "a scratch tree has no kernel: no processes, nothing enforced or rejected"
_NO_CONTROLLERS = "this host's cgroup2 hierarchy has no controllers (hybrid host); the files are checked on v2-scratch"
MISSING: dict[tuple[str, str], str] = {
    ("v2-scratch", "processes"): _NO_KERNEL,
    ("v1-scratch", "processes"): _NO_KERNEL,
    ("v2-scratch", "kernel"): _NO_KERNEL,
    ("v1-scratch", "kernel"): _NO_KERNEL,
    ("v2-unified", "enforce"): _NO_CONTROLLERS,
    ("v2-scratch", "enforce"): _NO_KERNEL,
    ("v1-scratch", "enforce"): _NO_KERNEL,
    ("v2-unified", "values"): _NO_CONTROLLERS,
    ("v1", "parse"): "the kernel's numbers are not fixed; parsing is checked on scratch trees (v1 stats are also read in the enforcement tests)",
    ("v2-unified", "parse"): "no controller statistics on this host's cgroup2 hierarchy; parsing is checked on v2-scratch",
    ("v2-unified", "oom"): "no memory controller (memory.events) on this host's cgroup2 hierarchy; the v2 watcher is checked on v2-scratch",
    ("v1-scratch", "oom"): "the v1 OOM notification is an eventfd only the kernel signals; checked on v1",
}


@dataclass
class Impl:
    name: str
    version: int
    root: str | None = None
    fs: CgroupFs | None = None

    def open(self, path: str) -> Cgroup:
        return open_cgroup(path, version=self.version, root=self.root, fs=self.fs)

    def need(self, feature: str) -> None:
        reason = MISSING.get((self.name, feature))
        if reason:
            pytest.skip(f"{self.name}: {reason}")

    def file(self, cg: Cgroup, controller: str, name: str) -> str:
        if isinstance(cg, V1Cgroup):
            d = cg.dir(controller)
            assert d is not None, f"no {controller} hierarchy"
            return os.path.join(d, name)
        assert isinstance(cg, V2Cgroup)
        return os.path.join(cg.dir, name)

    def read(self, cg: Cgroup, controller: str, name: str) -> str:
        with open(self.file(cg, controller, name)) as f:
            return f.read().strip()


# ----------------------------------------------------------------------------- scratch trees


class PipeWatch:
    """What KernfsWatch gives on cgroupfs, for a scratch file: ScratchFs.write wakes it."""

    def __init__(self, path: str, fs: ScratchFs) -> None:
        self.path, self._fs = path, fs
        self._r, self._w = os.pipe()
        fs.watchers.setdefault(path, []).append(self)

    def notify(self) -> None:
        os.write(self._w, b"x")

    def read(self) -> str:
        with contextlib.suppress(BlockingIOError):
            os.set_blocking(self._r, False)
            os.read(self._r, 4096)
        return Path(self.path).read_text()

    def wait(self, timeout: float | None) -> bool:
        return bool(select.select([self._r], [], [], timeout)[0])

    def fileno(self) -> int:
        return self._r

    def close(self) -> None:
        if self in self._fs.watchers.get(self.path, []):
            self._fs.watchers[self.path].remove(self)
            os.close(self._r)
            os.close(self._w)


V2_FILES: dict[str, dict[str, str]] = {
    "": {"cgroup.procs": "", "cgroup.subtree_control": "", "cgroup.events": "populated 0\nfrozen 0\n",
         "cgroup.freeze": "0", "cgroup.kill": "", "cgroup.max.depth": "max",
         "cpu.stat": "usage_usec 0\nuser_usec 0\nsystem_usec 0\n"},
    "memory": {"memory.max": "max", "memory.low": "0", "memory.current": "0", "memory.peak": "0",
               "memory.stat": "anon 0\nfile 0\n", "memory.swap.max": "max", "memory.swap.current": "0",
               "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n"},
    "cpu": {"cpu.max": "max 100000", "cpu.weight": "100"},
    "io": {"io.weight": "default 100", "io.max": ""},
    "pids": {"pids.max": "max", "pids.current": "0"},
    "cpuset": {"cpuset.cpus": "", "cpuset.mems": ""},
}
V1_FILES: dict[str, dict[str, str]] = {
    "cpu": {"cpu.shares": "1024", "cpu.cfs_quota_us": "-1", "cpu.cfs_period_us": "100000",
            "cpu.stat": "nr_periods 0\nnr_throttled 0\nthrottled_time 0\n"},
    "cpuacct": {"cpuacct.usage": "0", "cpuacct.usage_percpu": "0 0 ", "cpuacct.usage_user": "0",
                "cpuacct.usage_sys": "0"},
    "cpuset": {"cpuset.cpus": "", "cpuset.mems": ""},
    "memory": {"memory.limit_in_bytes": str(V1_UNLIMITED), "memory.soft_limit_in_bytes": str(V1_UNLIMITED),
               "memory.memsw.limit_in_bytes": str(V1_UNLIMITED), "memory.usage_in_bytes": "0",
               "memory.max_usage_in_bytes": "0", "memory.stat": "cache 0\nrss 0\ntotal_cache 0\ntotal_rss 0\n",
               "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
               "memory.swappiness": "60", "cgroup.event_control": ""},
    "devices": {"devices.allow": "", "devices.deny": "", "devices.list": "a *:* rwm"},
    "freezer": {"freezer.state": "THAWED"},
    "blkio": {"blkio.weight": "500", "blkio.weight_device": "", "blkio.throttle.read_bps_device": "",
              "blkio.throttle.write_bps_device": "", "blkio.throttle.read_iops_device": "",
              "blkio.throttle.write_iops_device": ""},
    "pids": {"pids.max": "max", "pids.current": "0"},
    "systemd": {},
}
# keyed files: the kernel adds a line per write rather than replacing the content
APPEND = {"cgroup.procs", "io.max", "devices.allow", "devices.deny", "blkio.weight_device",
          "blkio.throttle.read_bps_device", "blkio.throttle.write_bps_device",
          "blkio.throttle.read_iops_device", "blkio.throttle.write_iops_device"}


class ScratchFs(CgroupFs):
    """cgroupfs semantics on a tmp tree: mkdir creates the interface files the kernel would
    (v2: for the controllers the parent enables), rmdir drops them (EBUSY while tasks or
    child cgroups remain), files are never created by a write (ENOENT), subtree_control
    takes +/- edits of available controllers, keyed files gain a line per write, and a
    write wakes the file's watchers as kernfs notification does. ``writes`` logs them all."""

    def __init__(self, root: Path, version: int, swap_accounting: bool = True) -> None:
        self.root, self.version, self.swap = root, version, swap_accounting
        self.writes: list[tuple[str, str]] = []
        self.watchers: dict[str, list[PipeWatch]] = {}
        root.mkdir()
        if version == 2:
            self._populate(root, {**V2_FILES[""], "cgroup.controllers": "cpuset cpu io memory pids"})
        else:
            for name, files in V1_FILES.items():
                self._populate(root / name, {"cgroup.procs": "", **files}, mkdir=True)
            (root / "cpuset" / "cpuset.cpus").write_text("0-3\n")
            (root / "cpuset" / "cpuset.mems").write_text("0\n")

    def _populate(self, d: Path, files: dict[str, str], mkdir: bool = False) -> None:
        if mkdir:
            d.mkdir()
        for name, content in files.items():
            if not self.swap and (".memsw." in name or "memory.swap." in name):
                continue  # swapaccount=0: the kernel offers no swap files
            (d / name).write_text(content)

    def mkdir(self, path: str) -> None:
        os.mkdir(path)
        d = Path(path)
        if self.version == 2:
            enabled = (d.parent / "cgroup.subtree_control").read_text().split()
            files = {**V2_FILES[""], "cgroup.controllers": " ".join(enabled)}
            for c in enabled:
                files.update(V2_FILES[c])
        else:
            hierarchy = d.relative_to(self.root).parts[0]
            files = {"cgroup.procs": "", **V1_FILES[hierarchy]}
        self._populate(d, files)

    def rmdir(self, path: str) -> None:
        d = Path(path)
        if not d.exists():
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        if any(p.is_dir() for p in d.iterdir()) or (d / "cgroup.procs").read_text().strip():
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), path)
        for p in d.iterdir():
            p.unlink()
        d.rmdir()

    def write(self, path: str, value: str) -> None:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        self.writes.append((path, value))
        if p.name == "cgroup.subtree_control":
            available = (p.parent / "cgroup.controllers").read_text().split()
            enabled = p.read_text().split()
            for token in value.split():
                if token[1:] not in available:
                    raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), path)
                enabled = [c for c in enabled if c != token[1:]] + ([token[1:]] if token[0] == "+" else [])
            p.write_text(" ".join(enabled) + "\n")
        elif p.name == "cpu.max" and len(value.split()) == 1:
            p.write_text(f"{value} {p.read_text().split()[1]}\n")  # a quota alone keeps the period
        elif p.name.endswith("_in_bytes"):
            size = V1_UNLIMITED if value == "-1" else int(value)
            # the kernel keeps memory+swap >= memory at every step
            pair = {"memory.limit_in_bytes": "memory.memsw.limit_in_bytes",
                    "memory.memsw.limit_in_bytes": "memory.limit_in_bytes"}.get(p.name)
            if pair and (p.parent / pair).exists():
                other = int((p.parent / pair).read_text())
                if (size > other) if "memsw" not in p.name else (size < other):
                    raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), path)
            p.write_text(f"{size}\n")
        elif p.name == "memory.oom_control":
            lines = p.read_text().splitlines()
            p.write_text("\n".join([f"oom_kill_disable {value}", *lines[1:]]) + "\n")
        elif p.name in APPEND:
            with open(p, "a") as f:
                f.write(value + "\n")
        else:
            p.write_text(value + "\n")
        for w in self.watchers.get(path, []):
            w.notify()

    def kernel_sets(self, path: str, content: str) -> None:
        """What the kernel does to its own files (counters, statistics)."""
        Path(path).write_text(content)
        for w in self.watchers.get(path, []):
            w.notify()

    def watch(self, path: str) -> PipeWatch:  # type: ignore[override]
        return PipeWatch(path, self)

    def written(self, suffix: str) -> list[str]:
        return [v for p, v in self.writes if p.endswith("/" + suffix)]


# ----------------------------------------------------------------------------- fixtures


def _real_v1_available() -> str | None:
    if detect_version() != 1:
        return "the host is not on cgroup v1"
    hier = v1_hierarchies(read_mounts())
    missing = [c for c in ("memory", "pids", "freezer", "cpu", "cpuacct", "cpuset", "devices") if c not in hier]
    return f"v1 hierarchies not mounted: {missing}" if missing else None


@pytest.fixture(params=IMPLS)
def impl(request: pytest.FixtureRequest, tmp_path: Path) -> Impl:
    name = request.param
    if name == "v1":
        why = _real_v1_available()
        if why:
            pytest.skip(why)
        return Impl(name, 1)
    if name == "v2-unified":
        if v2_mount_point(read_mounts()) is None:
            pytest.skip("no cgroup2 hierarchy is mounted")
        return Impl(name, 2)
    version = 2 if name == "v2-scratch" else 1
    root = tmp_path / "cgroupfs"
    return Impl(name, version, str(root), ScratchFs(root, version))


@dataclass
class Env:
    """Unique cgroups under one ``dockyard-test-<uuid>`` parent, and the processes we
    start; the teardown kills those (by pid), destroys everything and checks it is gone."""

    impl: Impl
    parent: str = field(default_factory=lambda: f"/{PREFIX}{uuid.uuid4().hex[:12]}")
    procs: list[subprocess.Popen] = field(default_factory=list)
    n: int = 0

    def cgroup(self, name: str | None = None) -> Cgroup:
        self.n += 1
        return self.impl.open(f"{self.parent}/{name or f'c{self.n}'}")

    def spawn(self, args: list[str], **kw) -> subprocess.Popen:
        p = subprocess.Popen(args, **kw)
        self.procs.append(p)
        return p

    def python(self, code: str) -> subprocess.Popen:
        """A Python child that waits for ``release`` (so it can join a cgroup first)."""
        gate = "import sys\nsys.stdin.readline()\n"
        return self.spawn([sys.executable, "-c", gate + code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    @staticmethod
    def release(p: subprocess.Popen) -> None:
        assert p.stdin is not None
        p.stdin.write(b"go\n")
        p.stdin.flush()

    def teardown(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=30)
            for s in (p.stdin, p.stdout, p.stderr):
                if s:
                    s.close()
        parent = self.impl.open(self.parent)
        if parent.pids():
            # orphans of our own children (a shell's background jobs), in our unique cgroup
            parent.kill_all(signal.SIGKILL)
        parent.destroy()
        assert not parent.exists(), f"left behind: {parent.dirs()}"


@pytest.fixture
def env(impl: Impl) -> Iterator[Env]:
    e = Env(impl)
    try:
        yield e
    finally:
        e.teardown()


def _leftovers() -> list[str]:
    found = []
    for m in read_mounts():
        with contextlib.suppress(OSError):
            found += [os.path.join(m.mount_point, n) for n in os.listdir(m.mount_point) if n.startswith(PREFIX)]
    return found


@pytest.fixture(scope="module", autouse=True)
def no_test_cgroups_left() -> Iterator[None]:
    before = _leftovers()
    yield
    assert _leftovers() == before == [], "dockyard-test-* cgroups left behind"


def _stat_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def _cgroup_lines(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cgroup") as f:
        return f.read().splitlines()


# ============================================================================= pure parts


@pytest.mark.parametrize("given,want", [
    ("/dockyard/abc", "/dockyard/abc"),
    ("dockyard/abc", "/dockyard/abc"),
    ("//dockyard//abc/", "/dockyard/abc"),
    ("system.slice:docker:abc", "/system.slice/docker-abc.scope"),
    ("machine.slice::abc", "/machine.slice/abc.scope"),
    (":docker:abc", "/system.slice/docker-abc.scope"),
])
def test_cgroup_path_forms(given: str, want: str) -> None:
    assert parse_cgroup_path(given) == want


@pytest.mark.parametrize("bad", ["", "/", "/a/../b", "a/./b", "s:p:", "s/x:p:n", "a\nb"])
def test_cgroup_path_rejects(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_cgroup_path(bad)


MOUNTINFO_V2 = "30 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"
MOUNTINFO_HYBRID = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,release_agent=/x,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
MOUNTINFO_V1_ONLY = "\n".join(MOUNTINFO_HYBRID.splitlines()[:4]) + "\n"


@pytest.mark.parametrize("text,want", [(MOUNTINFO_V2, 2), (MOUNTINFO_HYBRID, 1), (MOUNTINFO_V1_ONLY, 1),
                                       # overmounted: the last mount on /sys/fs/cgroup counts
                                       (MOUNTINFO_HYBRID + MOUNTINFO_V2, 2)])
def test_detect_version_reads_mountinfo(tmp_path: Path, text: str, want: int) -> None:
    f = tmp_path / "mountinfo"
    f.write_text(text)
    assert detect_version(str(f)) == want


def test_detect_version_on_this_host() -> None:
    mounts = read_mounts()
    root = [m for m in mounts if m.mount_point == "/sys/fs/cgroup"]
    assert detect_version() == (2 if root and root[-1].fstype == "cgroup2" else 1)
    if detect_version() == 1:
        assert v1_hierarchies(mounts), "a v1 host has v1 hierarchies"


def test_v1_hierarchies_from_mountinfo() -> None:
    mounts = parse_mountinfo(MOUNTINFO_HYBRID)
    assert v1_hierarchies(mounts) == {
        "cpu": "/sys/fs/cgroup/cpu,cpuacct", "cpuacct": "/sys/fs/cgroup/cpu,cpuacct",
        "memory": "/sys/fs/cgroup/memory", "name=systemd": "/sys/fs/cgroup/systemd",
    }
    assert v2_mount_point(mounts) == "/sys/fs/cgroup/unified"
    assert v2_mount_point(parse_mountinfo(MOUNTINFO_V2)) == "/sys/fs/cgroup"


def test_v2_conversions() -> None:
    assert [R.shares_to_weight(s) for s in (2, 1024, 262144)] == [1, 39, 10000]
    assert [R.blkio_to_io_weight(w) for w in (10, 500, 1000)] == [1, 4950, 10000]
    assert R.swap_to_v2(-1, 32 * MiB) == "max"
    assert R.swap_to_v2(96 * MiB, 32 * MiB) == str(64 * MiB)
    with pytest.raises(InvalidArgument):
        R.swap_to_v2(16 * MiB, 32 * MiB)
    with pytest.raises(InvalidArgument):
        R.swap_to_v2(16 * MiB, -1)
    # the kernel clamps shares into [2, 262144]; so does the parser, so v2 converts alike
    assert R.parse_resources({"cpu": {"shares": 1}}).cpu_shares == 2
    assert R.parse_resources({"cpu": {"shares": 10**6}}).cpu_shares == 262144


# ============================================================================= lifecycle


def test_create_exists_destroy(env: Env) -> None:
    cg = env.cgroup()
    assert not cg.exists()
    assert cg.create() == []
    assert cg.exists()
    assert all(os.path.isdir(d) for d in cg.dirs())
    cg.destroy()
    assert not cg.exists()
    assert not any(os.path.exists(d) for d in cg.dirs())
    cg.destroy()  # already gone: fine


def test_create_twice_joins_existing(env: Env) -> None:
    cg = env.cgroup()
    cg.create()
    assert cg.create() == []
    assert cg.exists()


def test_destroy_removes_descendants_deepest_first(env: Env) -> None:
    outer = env.cgroup("outer")
    inner = env.impl.open(outer.path + "/a/b")
    inner.create()
    env.impl.open(outer.path + "/c").create()
    outer.destroy()
    assert not outer.exists() and not inner.exists()


def test_systemd_path_form(env: Env) -> None:
    cg = env.impl.open(f"{env.parent.strip('/')}:dockyard:{uuid.uuid4().hex[:8]}")
    assert cg.path.startswith(env.parent + "/dockyard-") and cg.path.endswith(".scope")
    cg.create()
    assert cg.exists()
    cg.destroy()
    assert not cg.exists()


def test_remove_if_empty_keeps_a_busy_parent(env: Env) -> None:
    """What the daemon does with its /dockyard parent on shutdown: removed only when no
    child cgroup (no container) is left in any hierarchy, never waiting."""
    parent = env.impl.open(env.parent + "/shared")
    child = env.impl.open(parent.path + "/c")
    child.create()
    assert parent.remove_if_empty() is False
    assert parent.exists() and child.exists()
    child.destroy()
    assert parent.remove_if_empty() is True
    assert not any(os.path.exists(d) for d in parent.dirs())
    assert parent.remove_if_empty() is True  # already gone: fine


class _ParentVanishes:
    """A CgroupFs whose first mkdir of each ``.../c`` finds its parent just removed, as when
    another daemon gives an empty shared parent back in the middle of our create."""

    def __init__(self, inner: CgroupFs) -> None:
        self.inner, self.removed = inner, set()

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def mkdir(self, d: str) -> None:
        if d.endswith("/c") and d not in self.removed:
            self.removed.add(d)
            self.inner.rmdir(os.path.dirname(d))
        self.inner.mkdir(d)


def test_create_survives_its_parent_removed_meanwhile(env: Env) -> None:
    env.impl.open(env.parent + "/p").create()
    fs = _ParentVanishes(env.impl.fs or REAL_FS)
    cg = open_cgroup(env.parent + "/p/c", version=env.impl.version, root=env.impl.root, fs=fs)  # type: ignore[arg-type]
    assert cg.create() == []
    assert fs.removed, "the race was not staged"
    assert cg.exists()
    cg.destroy()


def test_add_and_pids(env: Env) -> None:
    env.impl.need("processes")
    cg = env.cgroup()
    cg.create()
    sleeps = [env.spawn(["sleep", "300"]) for _ in range(2)]
    for p in sleeps:
        cg.add(p.pid)
    assert cg.pids() == sorted(p.pid for p in sleeps)
    lines = _cgroup_lines(sleeps[0].pid)
    # in every hierarchy this implementation manages
    expected = len(cg.dirs())
    assert sum(line.endswith(":" + cg.path) for line in lines) == expected, lines
    cg.kill_all(signal.SIGKILL)
    assert [p.wait(timeout=30) for p in sleeps] == [-signal.SIGKILL] * 2
    assert cg.pids() == []


def test_add_missing_process(env: Env) -> None:
    env.impl.need("processes")
    cg = env.cgroup()
    cg.create()
    p = env.spawn(["true"])
    p.wait()
    with pytest.raises(NotFound) as err:
        cg.add(p.pid)
    assert str(p.pid) in str(err.value)


def test_kill_all_with_other_signal(env: Env) -> None:
    env.impl.need("processes")
    cg = env.cgroup()
    cg.create()
    p = env.spawn(["sleep", "300"])
    cg.add(p.pid)
    cg.kill_all(signal.SIGTERM)  # freeze, signal each task, thaw
    assert p.wait(timeout=30) == -signal.SIGTERM
    assert cg.state() == "thawed"


def test_destroy_retries_while_tasks_exit(env: Env) -> None:
    env.impl.need("processes")
    cg = env.cgroup()
    cg.create()
    procs = [env.spawn(["sleep", "300"]) for _ in range(3)]
    for p in procs:
        cg.add(p.pid)
    cg.kill_all(signal.SIGKILL)
    cg.destroy()  # right away: the kernel may still hold the dying tasks
    assert not cg.exists()
    assert all(p.wait(timeout=30) == -signal.SIGKILL for p in procs)


def test_destroy_with_live_tasks_is_a_bounded_conflict(env: Env) -> None:
    env.impl.need("processes")
    cg = env.cgroup()
    cg.create()
    p = env.spawn(["sleep", "300"])
    cg.add(p.pid)
    with pytest.raises(Conflict) as err:
        cg.destroy(timeout=0.2)
    assert str(p.pid) in str(err.value)
    assert cg.exists() and cg.pids() == [p.pid]
    p.kill()
    p.wait()
    cg.destroy()
    assert not cg.exists()


# ============================================================================= freezer


def test_freeze_thaw(env: Env) -> None:
    env.impl.need("processes")
    cg = env.cgroup()
    cg.create()
    busy = env.spawn([sys.executable, "-c", "while True: pass"])
    cg.add(busy.pid)
    assert cg.state() == "thawed"
    cg.freeze()
    assert cg.state() == "frozen"
    # a spinning task is runnable unless frozen: D in the v1 refrigerator, S in the v2 trap
    assert _stat_state(busy.pid) in ("D", "S")
    cg.freeze()  # idempotent
    cg.thaw()
    assert cg.state() == "thawed"
    cg.kill_all(signal.SIGKILL)
    assert busy.wait(timeout=30) == -signal.SIGKILL


def test_kill_all_frozen(env: Env) -> None:
    env.impl.need("processes")
    cg = env.cgroup()
    cg.create()
    p = env.spawn(["sleep", "300"])
    cg.add(p.pid)
    cg.freeze()
    cg.kill_all(signal.SIGKILL)  # v1 thaws so the task can die; v2 cgroup.kill needs no thaw
    assert p.wait(timeout=30) == -signal.SIGKILL


def test_thaw_without_freezer_state_is_noop(env: Env) -> None:
    cg = env.cgroup()
    cg.thaw()  # the cgroup does not even exist: nothing is frozen
    assert cg.state() == "thawed"


def test_kernfs_watch_sees_cgroup_events(env: Env) -> None:
    """The mechanism under v2 freeze() and the v2 OOM watcher, on a real kernel file."""
    if env.impl.name != "v2-unified":
        pytest.skip(f"{env.impl.name}: cgroup.events notification needs the real cgroup2 mount")
    cg = env.cgroup()
    cg.create()
    p = env.spawn(["sleep", "300"])
    cg.add(p.pid)
    with KernfsWatch(os.path.join(cg.dirs()[0], "cgroup.events")) as w:
        assert "populated 1" in w.read()
        p.kill()
        p.wait()
        assert w.wait(10)
        assert "populated 0" in w.read()


def test_kernfs_watch_refuses_plain_files(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(Unavailable):
        KernfsWatch(str(f))


# ============================================================================= enforcement (v1)


def test_pids_limit_enforced(env: Env) -> None:
    env.impl.need("enforce")
    if shutil.which("busybox") is None:
        pytest.skip("busybox not installed")
    cg = env.cgroup()
    cg.create({"pids": {"limit": 5}})
    script = ("read gate; i=0; while [ $i -lt 8 ]; do busybox sleep 300 >/dev/null 2>&1 & "
              "i=$((i+1)); echo forked $i; done; echo all")
    sh = env.spawn(["busybox", "sh", "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                   stderr=subprocess.PIPE)
    cg.add(sh.pid)
    out, err = sh.communicate(b"go\n", timeout=30)
    # the shell is task 1: four children fit, the next fork gets EAGAIN
    assert out.decode().split() == ["forked", "1", "forked", "2", "forked", "3", "forked", "4"]
    assert os.strerror(errno.EAGAIN) in err.decode()
    assert sh.returncode != 0
    stats = cg.stats()["pids"]
    assert stats == {"current": 4, "limit": 5}  # the shell is gone; its sleeps are not
    cg.kill_all(signal.SIGKILL)
    cg.destroy()  # the orphaned sleeps are not ours to wait for: destroy waits them out
    assert not cg.exists()


def test_memory_limit_oom_kills(env: Env) -> None:
    env.impl.need("enforce")
    cg = env.cgroup()
    cg.create({"memory": {"limit": 32 * MiB, "swap": 32 * MiB}})
    assert cg.oom_kills() == 0
    with cg.oom_watcher() as watcher:
        hog = env.python("b = b'x' * (100 << 20)\nprint('survived')")
        cg.add(hog.pid)
        env.release(hog)
        assert hog.wait(timeout=60) == -signal.SIGKILL
        assert watcher.wait(timeout=30)  # the event fd, not a sleep
    assert cg.oom_kills() >= 1
    mem = cg.stats()["memory"]
    assert mem["limit"] == 32 * MiB
    assert mem["max_usage"] is not None and mem["max_usage"] > 16 * MiB


def test_oom_watcher_ends_when_cgroup_goes(env: Env) -> None:
    env.impl.need("enforce")
    cg = env.cgroup()
    cg.create()
    with cg.oom_watcher() as watcher:
        cg.destroy()  # the kernel signals the eventfd on removal: not an OOM
        assert watcher.wait(timeout=10) is False


def test_memory_stats_report_usage(env: Env) -> None:
    env.impl.need("enforce")
    cg = env.cgroup()
    cg.create({"memory": {"limit": 256 * MiB}})
    p = env.python("b = b'x' * (40 << 20)\nprint('ready', flush=True)\nsys.stdin.readline()")
    cg.add(p.pid)
    env.release(p)
    assert p.stdout is not None and p.stdout.readline() == b"ready\n"
    mem = cg.stats()["memory"]
    assert mem["usage"] is not None and mem["usage"] >= 40 * MiB
    assert mem["rss"] is not None and mem["rss"] >= 40 * MiB
    assert mem["max_usage"] is not None and mem["max_usage"] >= mem["usage"]
    assert mem["limit"] == 256 * MiB and mem["cache"] is not None and mem["stat"]


def test_memory_limit_below_usage_is_invalid(env: Env) -> None:
    env.impl.need("enforce")
    cg = env.cgroup()
    cg.create({"memory": {"limit": 256 * MiB}})
    p = env.python("b = b'x' * (40 << 20)\nprint('ready', flush=True)\nsys.stdin.readline()")
    cg.add(p.pid)
    env.release(p)
    assert p.stdout is not None and p.stdout.readline() == b"ready\n"
    # no swap to push the process's memory to: the kernel refuses with EBUSY
    with pytest.raises(InvalidArgument) as err:
        cg.update({"memory": {"limit": 4 * MiB}})
    msg = str(err.value)
    assert "memory.limit_in_bytes" in msg and str(4 * MiB) in msg and "\n" not in msg
    assert cg.stats()["memory"]["limit"] == 256 * MiB


def test_cpu_usage_grows(env: Env) -> None:
    env.impl.need("processes")
    cg = env.cgroup()
    cg.create()
    before = cg.stats()["cpu"]
    assert before["usage"] is not None
    p = env.python("n = 0\nfor i in range(3_000_000):\n    n += i\n")
    cg.add(p.pid)
    env.release(p)
    assert p.wait(timeout=60) == 0  # its CPU time is charged by the time it has exited
    after = cg.stats()["cpu"]
    assert after["usage"] is not None and after["usage"] > before["usage"] + 10_000_000  # > 10 ms
    assert after["user"] is not None and after["user"] > 0
    if env.impl.version == 1:
        assert after["per_cpu"] and sum(after["per_cpu"]) == pytest.approx(after["usage"], rel=0.05)


def test_devices_enforced(env: Env) -> None:
    env.impl.need("enforce")
    cg = env.cgroup()
    cg.create({"devices": [{"allow": False, "access": "rwm"},
                           {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]})
    assert env.impl.read(cg, "devices", "devices.list") == "c 1:3 rwm"
    p = env.python(
        "import os\n"
        "for dev in ('/dev/null', '/dev/zero'):\n"
        "    try:\n"
        "        os.close(os.open(dev, os.O_RDONLY)); print(dev, 'ok')\n"
        "    except OSError as e:\n"
        "        print(dev, e.errno)\n"
    )
    cg.add(p.pid)
    out, _ = p.communicate(b"go\n", timeout=30)
    assert out.decode().splitlines() == ["/dev/null ok", f"/dev/zero {errno.EPERM}"]


# ============================================================================= file values


FULL = {
    "memory": {"limit": 32 * MiB, "swap": 64 * MiB, "reservation": 16 * MiB, "swappiness": 30,
               "disableOOMKiller": True, "kernel": 1 << 30},
    "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0", "realtimeRuntime": 5},
    "pids": {"limit": 5},
    "blockIO": {"weight": 300},
    "devices": [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"}],
    "hugepageLimits": [{"pageSize": "2MB", "limit": 0}],
}


def test_create_writes_resources(env: Env) -> None:
    env.impl.need("values")
    cg = env.cgroup()
    warnings = cg.create(FULL)
    read = env.impl.read
    if env.impl.version == 1:
        assert warnings == []
        assert read(cg, "memory", "memory.limit_in_bytes") == str(32 * MiB)
        assert read(cg, "memory", "memory.memsw.limit_in_bytes") == str(64 * MiB)
        assert read(cg, "memory", "memory.soft_limit_in_bytes") == str(16 * MiB)
        assert read(cg, "memory", "memory.swappiness") == "30"
        assert read(cg, "memory", "memory.oom_control").splitlines()[0] == "oom_kill_disable 1"
        assert read(cg, "cpu", "cpu.shares") == "512"
        assert read(cg, "cpu", "cpu.cfs_quota_us") == "50000"
        assert read(cg, "cpu", "cpu.cfs_period_us") == "100000"
        assert read(cg, "cpuset", "cpuset.cpus") == "0"
        assert read(cg, "cpuset", "cpuset.mems") == "0"
        assert read(cg, "pids", "pids.max") == "5"
        weight = "blkio.bfq.weight" if os.path.exists(env.impl.file(cg, "blkio", "blkio.bfq.weight")) else "blkio.weight"
        assert read(cg, "blkio", weight).split()[-1] == "300"
        if isinstance(env.impl.fs, ScratchFs):
            assert env.impl.fs.written("devices.deny") == ["a"]
            assert env.impl.fs.written("devices.allow") == ["c 1:3 rwm"]
        else:
            assert read(cg, "devices", "devices.list") == "c 1:3 rwm"
    else:
        assert warnings == [R.WARN_SWAPPINESS, R.WARN_OOM_KILL_DISABLE, R.WARN_DEVICES_V2]
        assert read(cg, "", "memory.max") == str(32 * MiB)
        assert read(cg, "", "memory.swap.max") == str(32 * MiB)  # memory+swap minus memory
        assert read(cg, "", "memory.low") == str(16 * MiB)
        assert read(cg, "", "cpu.weight") == str(R.shares_to_weight(512)) == "20"
        assert read(cg, "", "cpu.max") == "50000 100000"
        assert read(cg, "", "cpuset.cpus") == "0"
        assert read(cg, "", "pids.max") == "5"
        assert read(cg, "", "io.weight") == str(R.blkio_to_io_weight(300)) == "2930"
        # every needed controller was enabled on the way down
        for d in (env.impl.root, env.impl.root + env.parent):
            assert set((Path(d) / "cgroup.subtree_control").read_text().split()) == {"cpuset", "cpu", "io", "memory", "pids"}


def test_update_changes_values(env: Env) -> None:
    env.impl.need("values")
    cg = env.cgroup()
    cg.create({"memory": {"limit": 32 * MiB}, "cpu": {"quota": 50000, "period": 100000}, "pids": {"limit": 5}})
    assert cg.update({"memory": {"limit": 64 * MiB, "swap": 128 * MiB}, "pids": {"limit": -1},
                      "cpu": {"quota": -1}}) == []
    read = env.impl.read
    if env.impl.version == 1:
        assert read(cg, "memory", "memory.limit_in_bytes") == str(64 * MiB)
        assert read(cg, "memory", "memory.memsw.limit_in_bytes") == str(128 * MiB)
        assert read(cg, "pids", "pids.max") == "max"
        assert read(cg, "cpu", "cpu.cfs_quota_us") == "-1"
        # shrinking memory+swap below the old value: the limit goes first
        cg.update({"memory": {"limit": 16 * MiB, "swap": 32 * MiB}})
        assert read(cg, "memory", "memory.memsw.limit_in_bytes") == str(32 * MiB)
        cg.update({"memory": {"limit": -1}})  # unlimited lifts memory+swap too
        assert int(read(cg, "memory", "memory.limit_in_bytes")) >= V1_UNLIMITED
        assert int(read(cg, "memory", "memory.memsw.limit_in_bytes")) >= V1_UNLIMITED
        assert cg.stats()["memory"]["limit"] is None
    else:
        assert read(cg, "", "memory.max") == str(64 * MiB)
        assert read(cg, "", "memory.swap.max") == str(64 * MiB)
        assert read(cg, "", "pids.max") == "max"
        assert read(cg, "", "cpu.max") == "max 100000"
        cg.update({"cpu": {"period": 200000}})  # a period alone keeps the quota
        assert read(cg, "", "cpu.max") == "max 200000"
        cg.update({"memory": {"limit": -1, "swap": -1}})
        assert read(cg, "", "memory.max") == "max" and read(cg, "", "memory.swap.max") == "max"
        assert cg.stats()["memory"]["limit"] is None


def test_unified_resources(env: Env) -> None:
    cg = env.cgroup()
    if env.impl.version == 1:
        with pytest.raises(InvalidArgument, match="only supported on cgroup v2"):
            cg.create({"unified": {"pids.max": "3"}})
        assert not cg.exists()
        return
    cg.create({"unified": {"cgroup.max.depth": "3"}})
    assert env.impl.read(cg, "", "cgroup.max.depth") == "3"


def _block_device() -> tuple[int, int] | None:
    for name in sorted(os.listdir("/sys/block")):
        with contextlib.suppress(OSError):
            major, minor = Path(f"/sys/block/{name}/dev").read_text().split(":")
            return int(major), int(minor)
    return None


def test_blkio_device_rules(env: Env) -> None:
    if env.impl.name == "v1":
        # throttling takes any block device; per-device weights need BFQ on it, so those
        # are checked on the scratch trees
        dev = _block_device()
        if dev is None:
            pytest.skip("v1: no block device to throttle")
        cg = env.cgroup()
        cg.create({"blockIO": {"throttleReadBpsDevice": [{"major": dev[0], "minor": dev[1], "rate": 1048576}],
                               "throttleWriteIOPSDevice": [{"major": dev[0], "minor": dev[1], "rate": 100}]}})
        assert env.impl.read(cg, "blkio", "blkio.throttle.read_bps_device") == f"{dev[0]}:{dev[1]} 1048576"
        assert env.impl.read(cg, "blkio", "blkio.throttle.write_iops_device") == f"{dev[0]}:{dev[1]} 100"
        return
    if not isinstance(env.impl.fs, ScratchFs):
        pytest.skip(f"{env.impl.name}: no io controller on this host's cgroup2 hierarchy; checked on v2-scratch")
    fs = env.impl.fs
    cg = env.cgroup()
    cg.create({"blockIO": {"weightDevice": [{"major": 8, "minor": 0, "weight": 200}],
                           "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
                           "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 0}]}})
    if env.impl.version == 1:
        assert fs.written("blkio.weight_device") == ["8:0 200"]
        assert fs.written("blkio.throttle.read_bps_device") == ["8:0 1048576"]
        assert fs.written("blkio.throttle.write_iops_device") == ["8:0 0"]
    else:
        assert fs.written("io.weight") == [f"8:0 {R.blkio_to_io_weight(200)}"]
        assert fs.written("io.max") == ["8:0 rbps=1048576", "8:0 wiops=max"]


def test_missing_controllers_warn_and_discard(env: Env) -> None:
    """Docker's behaviour: a limit the host cannot enforce is discarded with a warning."""
    if env.impl.name != "v2-unified":
        pytest.skip(f"{env.impl.name}: has every controller; the controller-less v2-unified checks this")
    cg = env.cgroup()
    warnings = cg.create({"memory": {"limit": 32 * MiB, "swap": 64 * MiB}, "pids": {"limit": 5},
                          "cpu": {"shares": 512, "quota": 50000, "cpus": "0"}, "blockIO": {"weight": 300}})
    assert warnings == [R.WARN_CPUSET, R.WARN_MEMORY, R.WARN_SWAP, R.WARN_CPU_SHARES, R.WARN_CFS,
                        R.WARN_PIDS, R.WARN_BLKIO_WEIGHT]
    assert cg.exists()


@pytest.mark.parametrize("version", [1, 2])
def test_swap_without_swap_accounting_warns(tmp_path: Path, version: int) -> None:
    root = tmp_path / "cgroupfs"
    fs = ScratchFs(root, version, swap_accounting=False)
    cg = open_cgroup(f"/{PREFIX}x/c", version=version, root=str(root), fs=fs)
    assert cg.create({"memory": {"limit": 32 * MiB, "swap": 64 * MiB}}) == [R.WARN_SWAP]
    limit = "memory.limit_in_bytes" if version == 1 else "memory.max"
    assert [v for p, v in fs.writes if p.endswith(limit)] == [str(32 * MiB)]
    assert not [p for p, _ in fs.writes if "swap.max" in p or "memsw" in p]


def test_v1_cpuset_is_inherited_top_down(env: Env) -> None:
    if env.impl.version != 1:
        pytest.skip(f"{env.impl.name}: only v1 starts a cpuset empty")
    cg = env.impl.open(env.parent + "/a/b")
    cg.create()
    assert isinstance(cg, V1Cgroup)
    mount = cg.hierarchies["cpuset"]
    for path in (env.parent, env.parent + "/a", cg.path):
        for name in ("cpuset.cpus", "cpuset.mems"):
            with open(mount + path + "/" + name) as f, open(mount + "/" + name) as top:
                assert f.read().strip() == top.read().strip() != ""


# ============================================================================= bad input


BAD = {
    "negative shares": {"cpu": {"shares": -5}},
    "unknown device type": {"devices": [{"allow": True, "type": "x", "access": "rwm"}]},
    "bad cpuset": {"cpu": {"cpus": "abc"}},
    "bad access": {"devices": [{"allow": True, "type": "c", "access": "rwx"}]},
    "swap below limit": {"memory": {"limit": 64 * MiB, "swap": 32 * MiB}},
    "string limit": {"memory": {"limit": "32m"}},
    "quota too small": {"cpu": {"quota": 10}},
    "not an object": {"memory": 5},
    "unified cgroup.procs": {"unified": {"cgroup.procs": "1"}},
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_leaves_nothing(env: Env, case: str) -> None:
    cg = env.impl.open(env.parent + "/deep/leaf")
    with pytest.raises(InvalidArgument) as err:
        cg.create(BAD[case])
    assert "\n" not in str(err.value)
    assert not cg.exists()
    assert not env.impl.open(env.parent).exists(), "parents made by a failed create must go too"


def test_kernel_rejection_rolls_back(env: Env) -> None:
    env.impl.need("kernel")
    cg = env.impl.open(env.parent + "/deep/leaf")
    if env.impl.version == 1:
        bad, file = {"cpu": {"cpus": "1000"}}, "cpuset.cpus"  # valid syntax, no such CPU
    else:
        bad, file = {"unified": {"cgroup.max.depth": "lots"}}, "cgroup.max.depth"
    with pytest.raises(InvalidArgument) as err:
        cg.create(bad)
    assert file in str(err.value) and "\n" not in str(err.value)
    assert not cg.exists()
    assert not env.impl.open(env.parent).exists()


def test_unified_file_must_exist(env: Env) -> None:
    if env.impl.version != 2:
        pytest.skip(f"{env.impl.name}: unified is v2 only (rejected on v1 in test_unified_resources)")
    cg = env.cgroup()
    with pytest.raises(InvalidArgument, match="no.such.file"):
        cg.create({"unified": {"memory.nonexistent": "1"}})
    assert not cg.exists()


# ============================================================================= stats / events parsing


def test_stats_parsing(env: Env) -> None:
    env.impl.need("parse")
    fs = env.impl.fs
    assert isinstance(fs, ScratchFs)
    cg = env.cgroup()
    cg.create({"memory": {"limit": 64 * MiB}, "pids": {"limit": 100}})
    f = env.impl.file
    if env.impl.version == 1:
        fs.kernel_sets(f(cg, "memory", "memory.usage_in_bytes"), "5000000\n")
        fs.kernel_sets(f(cg, "memory", "memory.max_usage_in_bytes"), "6000000\n")
        fs.kernel_sets(f(cg, "memory", "memory.stat"),
                       "cache 100\nrss 200\nswap 7\ntotal_cache 1000\ntotal_rss 2000\ntotal_swap 70\n")
        fs.kernel_sets(f(cg, "memory", "memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")
        fs.kernel_sets(f(cg, "cpuacct", "cpuacct.usage"), "3000\n")
        fs.kernel_sets(f(cg, "cpuacct", "cpuacct.usage_percpu"), "1000 2000 \n")
        fs.kernel_sets(f(cg, "cpuacct", "cpuacct.usage_user"), "2500\n")
        fs.kernel_sets(f(cg, "cpuacct", "cpuacct.usage_sys"), "500\n")
        fs.kernel_sets(f(cg, "cpu", "cpu.stat"), "nr_periods 10\nnr_throttled 4\nthrottled_time 12345\n")
        fs.kernel_sets(f(cg, "pids", "pids.current"), "7\n")
        want_mem = {"usage": 5000000, "limit": 64 * MiB, "max_usage": 6000000, "cache": 1000, "rss": 2000, "swap": 70}
        want_cpu = {"usage": 3000, "per_cpu": [1000, 2000], "user": 2500, "system": 500,
                    "nr_periods": 10, "nr_throttled": 4, "throttled_time": 12345}
    else:
        fs.kernel_sets(f(cg, "", "memory.current"), "5000000\n")
        fs.kernel_sets(f(cg, "", "memory.peak"), "6000000\n")
        fs.kernel_sets(f(cg, "", "memory.swap.current"), "70\n")
        fs.kernel_sets(f(cg, "", "memory.stat"), "anon 2000\nfile 1000\nkernel 5\n")
        fs.kernel_sets(f(cg, "", "memory.events"), "low 0\nhigh 0\nmax 9\noom 4\noom_kill 3\n")
        fs.kernel_sets(f(cg, "", "cpu.stat"), "usage_usec 3\nuser_usec 2\nsystem_usec 1\n"
                                              "nr_periods 10\nnr_throttled 4\nthrottled_usec 12\n")
        fs.kernel_sets(f(cg, "", "pids.current"), "7\n")
        want_mem = {"usage": 5000000, "limit": 64 * MiB, "max_usage": 6000000, "cache": 1000, "rss": 2000, "swap": 70}
        want_cpu = {"usage": 3000, "per_cpu": [], "user": 2000, "system": 1000,
                    "nr_periods": 10, "nr_throttled": 4, "throttled_time": 12000}
    stats = cg.stats()
    assert {k: v for k, v in stats["memory"].items() if k != "stat"} == want_mem
    assert stats["memory"]["stat"]["total_rss" if env.impl.version == 1 else "anon"] == 2000
    assert stats["cpu"] == want_cpu
    assert stats["pids"] == {"current": 7, "limit": 100}
    assert cg.oom_kills() == 3


def test_oom_watcher_wakes_on_events(env: Env) -> None:
    """v2: memory.events changes on high/max too; only a rise of oom/oom_kill is an OOM."""
    env.impl.need("oom")
    if env.impl.name == "v1":
        pytest.skip("v1: covered by test_memory_limit_oom_kills with a real OOM kill")
    fs = env.impl.fs
    assert isinstance(fs, ScratchFs)
    cg = env.cgroup()
    cg.create({"memory": {"limit": 32 * MiB}})
    events = env.impl.file(cg, "", "memory.events")
    with cg.oom_watcher() as watcher:
        assert watcher.wait(timeout=0) is False
        fs.kernel_sets(events, "low 0\nhigh 5\nmax 2\noom 0\noom_kill 0\n")
        assert watcher.wait(timeout=0.2) is False  # a change, but no OOM
        fs.kernel_sets(events, "low 0\nhigh 5\nmax 3\noom 1\noom_kill 1\n")
        assert select.select([watcher.fileno()], [], [], 5)[0]  # readable for event loops
        assert watcher.wait(timeout=5) is True
    assert cg.oom_kills() == 1


def test_oom_watcher_unavailable_without_memory_controller(env: Env) -> None:
    if env.impl.name != "v2-unified":
        pytest.skip(f"{env.impl.name}: has a memory controller")
    cg = env.cgroup()
    cg.create()
    with pytest.raises(Unavailable, match="memory"):
        cg.oom_watcher()
    assert cg.oom_kills() == 0
