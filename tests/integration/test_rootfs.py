"""dockyard.runtime.rootfs against the real kernel.

Each test forks a child that unshares its namespaces, runs setup_rootfs / pivot_to /
finish_rootfs on a busybox rootfs built in tmp_path, then either checks things from
Python inside the container or execs busybox sh, and reports over a pipe. The parent
asserts. The host's mount table must come out of every test unchanged.
"""

from __future__ import annotations

import errno
import json
import os
import select
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dockyard import syscalls
from dockyard.errors import InvalidArgument
from dockyard.runtime.rootfs import (
    DOCKER_MASKED_PATHS,
    DOCKER_READONLY_PATHS,
    bind_console,
    default_mounts,
    finish_rootfs,
    pivot_to,
    setup_rootfs,
    validate_sysctls,
)
from dockyard.syscalls import NAMESPACE_FLAGS, CloneFlag

APPLETS = ("sh", "cat", "ls", "mount", "readlink", "touch", "echo", "stat", "wc", "test", "mkdir")


# --------------------------------------------------------------------------- host mount table


def _host_mounts() -> set[tuple[str, str, str, str]]:
    out = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-", 6)
            out.add((fields[0], fields[4], fields[sep + 1], fields[sep + 2]))
    return out


@pytest.fixture(autouse=True)
def host_mounts_unchanged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The host's /proc/self/mountinfo neither gains nor loses an entry.

    Mount points under *other* pytest sessions' base directories are ignored: other test
    runs may share this machine, and their mounts come and go on their own schedule.
    """
    mine = str(tmp_path_factory.getbasetemp())
    pytest_root = os.path.dirname(mine)

    def relevant(entry: tuple[str, str, str, str]) -> bool:
        mp = entry[1]
        return not (mp.startswith(pytest_root + "/") and not (mp + "/").startswith(mine + "/"))

    before = _host_mounts()
    yield
    after = _host_mounts()
    gained = sorted(e for e in after - before if relevant(e))
    lost = sorted(e for e in before - after if relevant(e))
    assert not gained and not lost, f"host mount table changed: gained {gained}, lost {lost}"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """bundle/rootfs: static busybox, a few applet links, the usual directories.

    Every test that runs a container uses it, so this is where they skip without root."""
    if os.geteuid() != 0:
        pytest.skip("mount namespaces, mount(2) and pivot_root need root")
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox is not installed (apt-get install busybox-static)")
    ldd = subprocess.run(["ldd", busybox], capture_output=True, text=True, check=False)
    if ldd.returncode == 0 and "not a dynamic" not in ldd.stdout + ldd.stderr:
        pytest.skip(f"{busybox} is dynamically linked; the rootfs has no libc (install busybox-static)")
    b = tmp_path / "bundle"
    root = b / "rootfs"
    for d in ("bin", "proc", "sys", "dev", "tmp", "etc", "root"):
        (root / d).mkdir(parents=True)
    (root / "tmp").chmod(0o1777)
    shutil.copy2(busybox, root / "bin" / "busybox")
    for applet in APPLETS:
        (root / "bin" / applet).symlink_to("busybox")
    return b


def _spec(*, namespaces: tuple[str, ...] = ("mount",), mounts: list[dict[str, Any]] | None = None,
          extra_mounts: Iterable[dict[str, Any]] = (), readonly: bool = True, **linux: Any) -> dict[str, Any]:
    """Docker's defaults (plus a /tmp tmpfs) unless ``mounts``; read-only root."""
    base = default_mounts() + [{"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                                "options": ["nosuid", "nodev", "mode=1777"]}]
    return {
        "ociVersion": "1.0.2",
        "root": {"path": "rootfs", "readonly": readonly},
        "mounts": (base if mounts is None else mounts) + list(extra_mounts),
        "linux": {
            "namespaces": [{"type": t} for t in namespaces],
            "maskedPaths": list(DOCKER_MASKED_PATHS),
            "readonlyPaths": list(DOCKER_READONLY_PATHS),
            **linux,
        },
    }


# --------------------------------------------------------------------------- the child


def _write_id_maps() -> None:
    # Map our own uid/gid 0 only: a process may write that one line for itself.
    with open("/proc/self/uid_map", "w") as f:
        f.write("0 0 1")
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/gid_map", "w") as f:
        f.write("0 0 1")


def _child(bundle: Path, spec: dict[str, Any], result_w: int, *, no_pivot: bool,
           pre: Callable[[], Any] | None, post: Callable[[], Any] | None,
           host_step: tuple[int, int] | None, shell: str | None,
           patch: Callable[[], None] | None) -> None:
    """Never returns: the forked child must not run any more of pytest."""
    result: dict[str, Any] = {}
    try:
        types = {ns["type"] for ns in spec["linux"]["namespaces"]}
        if "user" in types:
            syscalls.unshare(CloneFlag.NEWUSER)
            _write_id_maps()
        flags = 0
        for t in types - {"user"}:
            flags |= NAMESPACE_FLAGS[t]
        syscalls.unshare(flags)
        if "pid" in types:
            # a new pid namespace takes effect for children: the grandchild is its pid 1
            pid = os.fork()
            if pid:
                _, status = os.waitpid(pid, 0)
                os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
        if patch is not None:
            patch()
        setup_rootfs(spec, str(bundle))
        if pre is not None:
            result["pre"] = pre()
        pivot_to(str(bundle / "rootfs"), no_pivot=no_pivot)
        finish_rootfs(spec)
        if host_step is not None:
            ready_w, go_r = host_step
            os.write(ready_w, b"r")
            os.read(go_r, 1)
        if shell is not None:
            os.dup2(result_w, 1)
            os.dup2(result_w, 2)
            os.execv("/bin/sh", ["sh", "-c", shell])
        if post is not None:
            result["post"] = post()
    except BaseException as e:  # noqa: BLE001 - everything goes back to the parent
        result = {"error": f"{type(e).__name__}: {e}", "type": type(e).__name__, "errno": getattr(e, "errno", None)}
    try:
        os.write(result_w, json.dumps(result, default=str).encode())
    finally:
        os._exit(0)


def run_container(bundle: Path, spec: dict[str, Any], *, no_pivot: bool = False,
                  pre: Callable[[], Any] | None = None, post: Callable[[], Any] | None = None,
                  host_step: Callable[[], None] | None = None, shell: str | None = None,
                  patch: Callable[[], None] | None = None, timeout: float = 60) -> Any:
    """Run a container in a forked child; its report (a dict), or the shell's output."""
    result_r, result_w = os.pipe()
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(result_r)
        _child(bundle, spec, result_w, no_pivot=no_pivot, pre=pre, post=post,
               host_step=(ready_w, go_r) if host_step else None, shell=shell, patch=patch)
    for fd in (result_w, ready_w, go_r):
        os.close(fd)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        if host_step is not None and select.select([ready_r], [], [], timeout)[0] and os.read(ready_r, 1) == b"r":
            try:
                host_step()
            finally:
                os.write(go_w, b"g")
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([result_r], [], [], left)[0]:
                os.kill(pid, signal.SIGKILL)
                raise AssertionError(f"container did not finish in {timeout}s")
            chunk = os.read(result_r, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        for fd in (result_r, ready_r, go_w):
            os.close(fd)
        os.waitpid(pid, 0)
    raw = b"".join(chunks)
    if shell is not None:
        return raw.decode(errors="replace")
    return json.loads(raw)


def ok(report: dict[str, Any]) -> dict[str, Any]:
    assert "error" not in report, report["error"]
    return report


# --------------------------------------------------------------------------- helpers used inside


def _container_mounts() -> dict[str, dict[str, str]]:
    """mount point -> {fstype, options, super}; the top-most mount wins."""
    out: dict[str, dict[str, str]] = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-", 6)
            out[fields[4]] = {"fstype": fields[sep + 1], "options": fields[5], "super": fields[sep + 3]}
    return out


def _errno_of(fn: Callable[[], Any]) -> int | None:
    try:
        fn()
    except OSError as e:
        return e.errno
    return None


def _write(path: str, data: str = "x") -> None:
    with open(path, "w") as f:
        f.write(data)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _is_ro(path: str) -> bool:
    return bool(os.statvfs(path).f_flag & os.ST_RDONLY)


def _node(path: str) -> list[Any]:
    st = os.stat(path)
    return [stat.S_ISCHR(st.st_mode), os.major(st.st_rdev), os.minor(st.st_rdev), stat.S_IMODE(st.st_mode), st.st_uid]


def _host_cgroup_v2() -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == "/sys/fs/cgroup" and " - cgroup2 " in line for line in f)


# --------------------------------------------------------------------------- a whole container


def _default_facts() -> dict[str, Any]:
    mounts = _container_mounts()
    facts: dict[str, Any] = {"pid": os.getpid(), "mountpoints": sorted(mounts)}
    facts["fstype"] = {p: mounts[p]["fstype"] for p in (
        "/", "/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup", "/tmp") if p in mounts}
    facts["ro"] = {p: _is_ro(p) for p in ("/", "/sys", "/sys/fs/cgroup", "/dev", "/dev/shm", "/tmp", "/proc", "/proc/sys")}
    facts["devices"] = {n: _node(f"/dev/{n}") for n in ("null", "zero", "full", "random", "urandom", "tty")}
    facts["links"] = {n: os.readlink(f"/dev/{n}") for n in ("fd", "stdin", "stdout", "stderr", "ptmx", "core")
                      if os.path.islink(f"/dev/{n}")}
    facts["null_write"] = _errno_of(lambda: _write("/dev/null", "discarded"))
    with open("/dev/zero", "rb") as f:
        facts["zero"] = f.read(4).hex()
    # a pty from the container's own devpts through /dev/ptmx
    master, slave = os.openpty()
    name = os.ttyname(slave)
    os.write(master, b"hello\n")
    facts["pty"] = [name, os.read(slave, 100).decode()]
    bind_console(name)
    facts["console_is_pty"] = os.stat("/dev/console").st_rdev == os.fstat(slave).st_rdev
    facts["writable"] = {p: _errno_of(lambda p=p: _write(p)) for p in ("/dev/shm/f", "/tmp/f")}
    facts["masked_files"] = {p: [_node(p)[1:3], _read(p)] for p in ("/proc/keys", "/proc/timer_list", "/proc/interrupts")}
    facts["masked_dirs"] = {p: [os.listdir(p), _is_ro(p)] for p in ("/proc/acpi", "/sys/firmware") if os.path.isdir(p)}
    facts["write_errors"] = {
        "/proc/sys/kernel/hostname": _errno_of(lambda: _write("/proc/sys/kernel/hostname", "nope")),
        "/proc/irq/default_smp_affinity": _errno_of(lambda: _write("/proc/irq/default_smp_affinity", "1")),
        "/newfile": _errno_of(lambda: _write("/newfile")),
        "/sys/probe": _errno_of(lambda: os.mkdir("/sys/probe")),
        # the hierarchies are read-only (on v1 the tmpfs holding them stays rw, as with runc)
        "/sys/fs/cgroup/<hierarchy>/probe": _errno_of(lambda: os.mkdir(
            "/sys/fs/cgroup/probe" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "/sys/fs/cgroup/memory/probe")),
    }
    if os.path.exists("/proc/sysrq-trigger"):
        facts["write_errors"]["/proc/sysrq-trigger"] = _errno_of(lambda: _write("/proc/sysrq-trigger", "h"))
    facts["sysctl"] = {k: _read(f"/proc/sys/{k}").strip() for k in ("net/ipv4/ip_forward", "kernel/shmmni")}
    facts["cgroup"] = sorted(os.listdir("/sys/fs/cgroup"))
    facts["cgroup_files"] = (os.path.exists("/sys/fs/cgroup/memory/memory.limit_in_bytes")
                             or os.path.exists("/sys/fs/cgroup/cgroup.controllers"))
    return facts


def test_default_container(bundle: Path, tmp_path: Path) -> None:
    host_sysctl = {k: _read(f"/proc/sys/{k}") for k in ("net/ipv4/ip_forward", "kernel/shmmni")}
    spec = _spec(namespaces=("mount", "pid", "network", "ipc", "uts"),
                 sysctl={"net.ipv4.ip_forward": "1", "kernel.shmmni": "2048"})
    f = ok(run_container(bundle, spec, post=_default_facts))["post"]

    assert f["pid"] == 1
    fstypes = dict(f["fstype"])
    assert fstypes.pop("/") not in ("tmpfs", "proc")  # the rootfs' own filesystem
    assert fstypes.pop("/sys/fs/cgroup") == ("cgroup2" if _host_cgroup_v2() else "tmpfs")
    assert fstypes == {"/proc": "proc", "/dev": "tmpfs", "/dev/pts": "devpts", "/dev/shm": "tmpfs",
                       "/dev/mqueue": "mqueue", "/sys": "sysfs", "/tmp": "tmpfs"}
    assert f["ro"] == {"/": True, "/sys": True, "/sys/fs/cgroup": _host_cgroup_v2(), "/dev": False, "/dev/shm": False,
                       "/tmp": False, "/proc": False, "/proc/sys": True}
    assert f["devices"] == {"null": [True, 1, 3, 0o666, 0], "zero": [True, 1, 5, 0o666, 0],
                            "full": [True, 1, 7, 0o666, 0], "random": [True, 1, 8, 0o666, 0],
                            "urandom": [True, 1, 9, 0o666, 0], "tty": [True, 5, 0, 0o666, 0]}
    expected_links = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
                      "stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx"}
    if os.path.exists("/proc/kcore"):
        expected_links["core"] = "/proc/kcore"
    assert f["links"] == expected_links
    assert f["null_write"] is None and f["zero"] == "00000000"
    assert f["pty"][0].startswith("/dev/pts/") and f["pty"][1] == "hello\n"
    assert f["console_is_pty"]
    assert f["writable"] == {"/dev/shm/f": None, "/tmp/f": None}
    for path, (rdev, content) in f["masked_files"].items():
        assert rdev == [1, 3] and content == "", path
    assert f["masked_dirs"] and all(v == [[], True] for v in f["masked_dirs"].values()), f["masked_dirs"]
    assert set(f["write_errors"].values()) == {errno.EROFS}, f["write_errors"]
    assert f["sysctl"] == {"net/ipv4/ip_forward": "1", "kernel/shmmni": "2048"}
    assert f["cgroup_files"], f["cgroup"]
    # the container's table names nothing of the host's paths
    assert not [mp for mp in f["mountpoints"] if str(tmp_path) in mp]
    # and the host's sysctls did not move
    assert {k: _read(f"/proc/sys/{k}") for k in host_sysctl} == host_sysctl


def test_busybox_shell_in_container(bundle: Path) -> None:
    script = r"""
        echo "pid=$$"
        echo "ptmx=$(readlink /dev/ptmx)"
        if touch /rootfile 2>/dev/null; then echo root=rw; else echo root=ro; fi
        echo data > /tmp/t && echo "tmp=$(cat /tmp/t)"
        echo "keys=$(cat /proc/keys | wc -c)"
        mount
    """
    out = run_container(bundle, _spec(namespaces=("mount", "pid", "network", "ipc", "uts")), shell=script)
    assert "pid=1\n" in out
    assert "ptmx=pts/ptmx\n" in out
    assert "root=ro\n" in out and "tmp=data\n" in out
    assert "keys=0\n" in out
    assert "proc on /proc type proc" in out
    assert "devpts on /dev/pts type devpts" in out
    assert "sysfs on /sys type sysfs (ro," in out


# --------------------------------------------------------------------------- bind mounts


def test_bind_mounts_ro_rw_file_and_flags(bundle: Path, tmp_path: Path) -> None:
    ro_src = tmp_path / "ro-src"
    rw_src = tmp_path / "rw-src"
    ro_src.mkdir()
    rw_src.mkdir()
    (ro_src / "hello").write_text("ro")
    (rw_src / "frozen").write_text("frozen")
    (tmp_path / "file-src").write_text("a file")
    # a source mount that is nosuid: a read-only bind keeps that unless told "suid"
    nosuid_src = tmp_path / "nosuid-src"
    nosuid_src.mkdir()
    syscalls.mount("tmpfs", str(nosuid_src), "tmpfs", syscalls.MountFlag.NOSUID, "size=1m")
    try:
        spec = _spec(extra_mounts=[
            {"destination": "/data/ro", "type": "bind", "source": str(ro_src), "options": ["rbind", "ro", "rprivate"]},
            {"destination": "/data/rw", "type": "bind", "source": str(rw_src), "options": ["rbind", "rw", "nosuid", "noexec"]},
            {"destination": "/etc/hostfile", "type": "bind", "source": str(tmp_path / "file-src"), "options": ["bind", "ro"]},
            # relative source: relative to the bundle; no type: the options say bind
            {"destination": "/data/rel", "source": "../ro-src", "options": ["rbind"]},
            {"destination": "/data/keeps", "type": "bind", "source": str(nosuid_src), "options": ["rbind", "ro"]},
            {"destination": "/data/suid", "type": "bind", "source": str(nosuid_src), "options": ["rbind", "ro", "suid"]},
        ])
        # a read-only *file* path (this kernel may have no /proc/sysrq-trigger to show it)
        spec["linux"]["readonlyPaths"].append("/data/rw/frozen")

        def post() -> dict[str, Any]:
            mounts = _container_mounts()
            return {
                "ro_read": _read("/data/ro/hello"),
                "ro_write": _errno_of(lambda: _write("/data/ro/new")),
                "rw_write": _errno_of(lambda: _write("/data/rw/from-container", "written inside")),
                "rw_options": mounts["/data/rw"]["options"],
                "frozen": [_read("/data/rw/frozen"), _errno_of(lambda: _write("/data/rw/frozen"))],
                "file": [_read("/etc/hostfile"), os.path.isfile("/etc/hostfile"), _errno_of(lambda: _write("/etc/hostfile"))],
                "rel": _read("/data/rel/hello"),
                "keeps": mounts["/data/keeps"]["options"],
                "suid": mounts["/data/suid"]["options"],
            }

        f = ok(run_container(bundle, spec, post=post))["post"]
    finally:
        syscalls.umount(str(nosuid_src), syscalls.UmountFlag.DETACH)
    assert f["ro_read"] == "ro" and f["ro_write"] == errno.EROFS
    assert f["rw_write"] is None
    assert {"rw", "nosuid", "noexec"} <= set(f["rw_options"].split(","))
    assert f["frozen"] == ["frozen", errno.EROFS]
    assert f["file"] == ["a file", True, errno.EROFS]
    assert f["rel"] == "ro"
    assert {"ro", "nosuid"} <= set(f["keeps"].split(","))
    assert "ro" in f["suid"].split(",") and "nosuid" not in f["suid"].split(",")
    assert (rw_src / "from-container").read_text() == "written inside"
    assert sorted(os.listdir(ro_src)) == ["hello"]


def test_recursive_readonly_bind(bundle: Path) -> None:
    """"rro" makes the submounts of an rbind read-only too (mount_setattr); "ro" only
    remounts the top one."""
    tree = str(bundle / "rootfs" / "tree")  # the container's own /tree, in the pre-pivot view
    spec = _spec(extra_mounts=[
        {"destination": "/tree", "type": "tmpfs", "source": "tmpfs", "options": []},
        {"destination": "/tree/sub", "type": "tmpfs", "source": "tmpfs", "options": []},
        {"destination": "/ro", "type": "bind", "source": tree, "options": ["rbind", "ro"]},
        {"destination": "/rro", "type": "bind", "source": tree, "options": ["rbind", "rro"]},
    ])
    paths = ("/tree/sub", "/ro", "/ro/sub", "/rro", "/rro/sub")
    f = ok(run_container(bundle, spec, post=lambda: {p: _is_ro(p) for p in paths}))["post"]
    assert f == {"/tree/sub": False, "/ro": True, "/ro/sub": False, "/rro": True, "/rro/sub": True}


def test_bind_propagation(bundle: Path, tmp_path: Path) -> None:
    """A mount made on the host under a shared source reaches rshared and rslave binds,
    not an rprivate one. ``/`` is private here, so the source is made a shared mount."""
    src = tmp_path / "shared-src"
    (src / "sub").mkdir(parents=True)
    syscalls.mount(str(src), str(src), None, syscalls.MountFlag.BIND)
    try:
        syscalls.mount(None, str(src), None, syscalls.MountFlag.SHARED)
        spec = _spec(extra_mounts=[
            {"destination": f"/{prop}", "type": "bind", "source": str(src), "options": ["rbind", prop]}
            for prop in ("rshared", "rslave", "rprivate")
        ])

        def host_step() -> None:
            syscalls.mount("tmpfs", str(src / "sub"), "tmpfs", 0, "size=1m")
            (src / "sub" / "marker").write_text("from the host")

        def post() -> dict[str, bool]:
            return {p: os.path.exists(f"/{p}/sub/marker") for p in ("rshared", "rslave", "rprivate")}

        f = ok(run_container(bundle, spec, post=post, host_step=host_step))["post"]
        assert f == {"rshared": True, "rslave": True, "rprivate": False}
    finally:
        for target in (src / "sub", src):
            try:
                syscalls.umount(str(target), syscalls.UmountFlag.DETACH)
            except OSError:
                pass


def test_shared_rootfs_mounts_do_not_reach_the_host(bundle: Path) -> None:
    """The rootfs itself on a shared mount, default and rshared rootfsPropagation: the
    container's mounts stay in the container (the autouse fixture checks the host)."""
    rootfs = bundle / "rootfs"
    syscalls.mount(str(rootfs), str(rootfs), None, syscalls.MountFlag.BIND)
    try:
        syscalls.mount(None, str(rootfs), None, syscalls.MountFlag.SHARED)
        for propagation in ("", "rshared"):
            spec = _spec()
            if propagation:
                spec["linux"]["rootfsPropagation"] = propagation
            f = ok(run_container(bundle, spec, post=lambda: sorted(_container_mounts())))["post"]
            assert "/proc" in f and "/dev/pts" in f
            with open("/proc/self/mountinfo") as mi:
                assert not [line for line in mi if str(rootfs) + "/" in line], propagation
    finally:
        syscalls.umount(str(rootfs), syscalls.UmountFlag.DETACH)


# --------------------------------------------------------------------------- destination safety


def test_symlinked_destinations_land_inside_the_rootfs(bundle: Path, tmp_path: Path) -> None:
    rootfs = bundle / "rootfs"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "sentinel").write_text("host data")
    payload = tmp_path / "payload"
    payload.mkdir()
    (payload / "p").write_text("payload")
    (rootfs / "toroot").symlink_to("/")
    (rootfs / "etc" / "up").symlink_to("../../../../../../..")
    (rootfs / "abs").symlink_to(str(outside))
    # A volume whose content is attacker-controlled: its symlinks only become part of the
    # path once it is mounted, i.e. after earlier checks could have run (CVE-2021-30465).
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "esc").symlink_to(str(outside))
    (vol / "rel").symlink_to("../../../../../../../..")
    binds = [("/toroot/a", payload), ("/etc/up/b", payload), ("/abs/e", payload), ("/vol", vol),
             ("/vol/esc/c", payload), ("/vol/rel/d", payload), ("/../../../f", payload)]
    # no tmpfs on /tmp: what gets created under the rootfs' /tmp stays visible from here
    spec = _spec(readonly=False, mounts=default_mounts(), extra_mounts=[
        {"destination": d, "type": "bind", "source": str(s), "options": ["rbind", "ro"]} for d, s in binds])

    def pre() -> dict[str, Any]:
        # Still in the host's view of paths, inside the container's mount namespace.
        mounts = _container_mounts()
        return {
            "outside_listing": sorted(os.listdir(outside)),
            "outside_mounted": [mp for mp in mounts if mp.startswith(str(outside))],
            "new_mounts_outside_rootfs": [mp for mp in mounts if mp.startswith(str(tmp_path))
                                          and not mp.startswith(str(rootfs) + "/") and mp != str(rootfs)],
        }

    def post() -> dict[str, Any]:
        return {p: sorted(os.listdir(p)) for p in ("/a", "/b", "/d", "/f", str(outside), f"{outside}/c", f"{outside}/e")}

    report = ok(run_container(bundle, spec, pre=pre, post=post))
    assert report["pre"] == {"outside_listing": ["sentinel"], "outside_mounted": [], "new_mounts_outside_rootfs": []}
    # "/" and ".." of every symlink were the container's root; the absolute host path
    # became the same path under the rootfs.
    assert report["post"] == {"/a": ["p"], "/b": ["p"], "/d": ["p"], "/f": ["p"], str(outside): ["c", "e"],
                              f"{outside}/c": ["p"], f"{outside}/e": ["p"]}
    assert sorted(os.listdir(rootfs / str(outside).lstrip("/"))) == ["c", "e"]
    assert sorted(os.listdir(outside)) == ["sentinel"] and (outside / "sentinel").read_text() == "host data"
    assert sorted(os.listdir(payload)) == ["p"]
    assert not [n for n in ("a", "b", "d", "f") if (tmp_path / n).exists() or Path("/", n).exists()]


@pytest.mark.parametrize("dest, link, message", [
    ("/rootlink", "/", "resolves to the container's root"),
    ("/uplink", "../../..", "resolves to the container's root"),
    ("/proclink", "/proc/sys/kernel", "inside procfs"),
])
def test_refused_destinations(bundle: Path, tmp_path: Path, dest: str, link: str, message: str) -> None:
    (bundle / "rootfs" / dest.lstrip("/")).symlink_to(link)
    src = tmp_path / "src"
    src.mkdir()
    spec = _spec(extra_mounts=[{"destination": dest, "type": "bind", "source": str(src), "options": ["rbind"]}])
    report = run_container(bundle, spec, post=lambda: "mounted")
    assert report.get("type") == "InvalidArgument", report
    assert message in report["error"] and f"mounts[{len(spec['mounts']) - 1}]" in report["error"]


def test_proc_must_be_a_plain_directory(bundle: Path, tmp_path: Path) -> None:
    rootfs = bundle / "rootfs"
    (rootfs / "proc").rmdir()
    (rootfs / "proc").symlink_to("/tmp")
    report = run_container(bundle, _spec(), post=lambda: "mounted")
    assert report.get("type") == "InvalidArgument" and "plain directory" in report["error"], report


def test_allowlisted_proc_file_can_be_mounted_over(bundle: Path, tmp_path: Path) -> None:
    (tmp_path / "uptime").write_text("42.00 42.00\n")
    spec = _spec(extra_mounts=[{"destination": "/proc/uptime", "type": "bind",
                                "source": str(tmp_path / "uptime"), "options": ["bind", "ro"]}])
    assert ok(run_container(bundle, spec, post=lambda: _read("/proc/uptime")))["post"] == "42.00 42.00\n"


def test_bind_console_before_pivot(bundle: Path) -> None:
    """bind_console with a rootfs path (before the pivot) resolves /dev/console in-root."""
    master, slave = os.openpty()
    try:
        name = os.ttyname(slave)
        spec = _spec()
        f = ok(run_container(bundle, spec, pre=lambda: bind_console(name, str(bundle / "rootfs")),
                             post=lambda: os.stat("/dev/console").st_rdev))
        assert f["post"] == os.fstat(slave).st_rdev
    finally:
        os.close(master)
        os.close(slave)


# --------------------------------------------------------------------------- pivot fallback


def _root_facts() -> dict[str, Any]:
    return {
        "root": sorted(os.listdir("/")),
        "busybox": os.path.exists("/bin/busybox"),
        "proc_pid1": os.path.exists("/proc/1"),
        "root_write": _errno_of(lambda: _write("/x")),
    }


def test_no_pivot(bundle: Path, tmp_path: Path) -> None:
    f = ok(run_container(bundle, _spec(namespaces=("mount", "pid")), no_pivot=True, post=_root_facts))["post"]
    assert f["busybox"] and f["proc_pid1"]
    assert sorted(f["root"]) == sorted(os.listdir(bundle / "rootfs"))
    assert f["root_write"] == errno.EROFS
    assert not os.path.exists(tmp_path / "bundle" / "rootfs" / "x")


def test_pivot_root_einval_falls_back_to_move_root(bundle: Path) -> None:
    """pivot_root refuses a rootfs on the initramfs with EINVAL; simulated here by
    replacing the syscall in the child, which then has to end up in the rootfs anyway."""
    refused: list[str] = []  # the child's copy records the calls

    def patch() -> None:
        def refuse(new_root: str, put_old: str) -> None:
            refused.append(new_root)
            raise OSError(errno.EINVAL, "Invalid argument: pivot_root (simulated initramfs)")
        syscalls.pivot_root = refuse  # type: ignore[assignment]

    def post() -> dict[str, Any]:
        return {**_root_facts(), "refused": refused}

    f = ok(run_container(bundle, _spec(namespaces=("mount", "pid")), patch=patch, post=post))["post"]
    assert f["refused"] == ["."]
    assert f["busybox"] and f["proc_pid1"] and f["root_write"] == errno.EROFS
    assert sorted(f["root"]) == sorted(os.listdir(bundle / "rootfs"))


# --------------------------------------------------------------------------- namespaces


def test_user_namespace(bundle: Path) -> None:
    """In a user namespace mknod is refused (host nodes are bound instead) and flags the
    host locked on inherited mounts are kept on every remount."""
    mounts = default_mounts()
    for m in mounts:
        if m["type"] == "devpts":  # gid 5 is not mapped in a one-id user namespace
            m["options"] = [o for o in m["options"] if o != "gid=5"]
    spec = _spec(namespaces=("user", "mount", "pid", "network", "ipc", "uts"),
                 mounts=mounts + [{"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": []}],
                 sysctl={"net.ipv4.ip_forward": "1"})

    def post() -> dict[str, Any]:
        mounts = _container_mounts()
        return {
            "devices": {n: _node(f"/dev/{n}")[:3] for n in ("null", "zero", "tty")},
            "null_is_mount": "/dev/null" in mounts,
            "null_write": _errno_of(lambda: _write("/dev/null")),
            "ro": {p: _is_ro(p) for p in ("/", "/sys", "/proc/sys")},
            "masked": _read("/proc/keys"),
            "sysctl": _read("/proc/sys/net/ipv4/ip_forward").strip(),
            "uid_map": _read("/proc/self/uid_map").split(),
        }

    f = ok(run_container(bundle, spec, post=post))["post"]
    assert f["uid_map"] == ["0", "0", "1"]
    assert f["devices"] == {"null": [True, 1, 3], "zero": [True, 1, 5], "tty": [True, 5, 0]}
    assert f["null_is_mount"] and f["null_write"] is None
    assert f["ro"] == {"/": True, "/sys": True, "/proc/sys": True}
    assert f["masked"] == "" and f["sysctl"] == "1"


def test_cgroup_namespace_and_cgroup2(bundle: Path) -> None:
    spec = _spec(namespaces=("mount", "cgroup"))

    def post() -> dict[str, Any]:
        mounts = _container_mounts()
        cg = {mp: m["fstype"] for mp, m in mounts.items() if mp.startswith("/sys/fs/cgroup")}
        own = _read("/proc/self/cgroup")
        return {"cg": cg, "own": own, "ro": _is_ro("/sys/fs/cgroup")}

    f = ok(run_container(bundle, spec, post=post))["post"]
    assert f["ro"] == _host_cgroup_v2()  # a v1 tmpfs stays rw, as with runc
    if _host_cgroup_v2():
        assert f["cg"] == {"/sys/fs/cgroup": "cgroup2"}
    else:
        assert f["cg"]["/sys/fs/cgroup"] == "tmpfs"
        assert "cgroup" in f["cg"].values()
        # in its cgroup namespace the container is at the root of every hierarchy
        assert all(line.endswith(":/") for line in f["own"].splitlines()), f["own"]

    spec2 = _spec(mounts=[m for m in default_mounts() if m["type"] != "cgroup"] + [
        {"destination": "/sys/fs/cgroup", "type": "cgroup2", "source": "cgroup2", "options": ["ro", "nosuid"]}])
    f2 = ok(run_container(bundle, spec2, post=lambda: [_container_mounts()["/sys/fs/cgroup"]["fstype"],
                                                       os.path.exists("/sys/fs/cgroup/cgroup.procs"),
                                                       _is_ro("/sys/fs/cgroup")]))["post"]
    assert f2 == ["cgroup2", True, True]


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("entry, kind, words", [
    ({"destination": "/x", "type": "bogusfs", "source": "none"}, "InvalidArgument", "unknown filesystem type 'bogusfs'"),
    ({"destination": "/data", "type": "bind", "source": "/nonexistent/dockyard", "options": ["rbind"]},
     "FileNotFoundError", "/nonexistent/dockyard"),
    ({"destination": "/x", "type": "tmpfs", "source": "tmpfs", "options": ["tmpcopyup"]}, "InvalidArgument", "tmpcopyup"),
    ({"destination": "/x", "source": "none"}, "InvalidArgument", "type is required"),
])
def test_mount_errors(bundle: Path, entry: dict[str, Any], kind: str, words: str) -> None:
    spec = _spec(extra_mounts=[entry])
    report = run_container(bundle, spec, post=lambda: "mounted")
    assert report.get("type") == kind, report
    assert words in report["error"] and entry["destination"] in report["error"], report["error"]
    assert "\n" not in report["error"]


def test_sysctl_validation() -> None:
    validate_sysctls({"net.ipv4.ip_forward": "1", "kernel.shmmax": "1", "kernel.msgmax": "1",
                      "kernel.sem": "1 2 3 4", "fs.mqueue.msg_max": "1", "net.ipv4.conf.eth0/1.rp_filter": "1"},
                     {"network", "ipc"})
    for bad, namespaces, words in [
        ({"vm.swappiness": "1"}, {"network", "ipc"}, "not allowed"),
        ({"kernel.hostname": "x"}, {"uts"}, "not allowed"),
        ({"kernel.semx": "1"}, {"ipc"}, "not allowed"),
        ({"net.ipv4.ip_forward": "1"}, {"ipc"}, "network namespace"),
        ({"kernel.shmmax": "1"}, {"network"}, "ipc namespace"),
        ({"net..x": "1"}, {"network"}, "invalid sysctl"),
        ({"net.ipv4/../x": "1"}, {"network"}, "invalid sysctl"),
    ]:
        with pytest.raises(InvalidArgument, match=words):
            validate_sysctls(bad, namespaces)


def test_bad_sysctl_refused_before_any_mount(bundle: Path) -> None:
    spec = _spec(sysctl={"vm.swappiness": "1"})
    report = run_container(bundle, spec, post=lambda: "ran")
    assert report.get("type") == "InvalidArgument" and "vm.swappiness" in report["error"]


def test_spec_devices(bundle: Path) -> None:
    spec = _spec(devices=[
        {"path": "/dev/net/tun", "type": "c", "major": 10, "minor": 200, "fileMode": 0o600, "uid": 0, "gid": 0},
        {"path": "/dev/fifo0", "type": "p", "fileMode": 0o640},
    ])
    f = ok(run_container(bundle, spec, post=lambda: [_node("/dev/net/tun"),
                                                     stat.S_ISFIFO(os.stat("/dev/fifo0").st_mode)]))["post"]
    assert f == [[True, 10, 200, 0o600, 0], True]
    bad = _spec(devices=[{"path": "/etc/evil", "type": "c", "major": 1, "minor": 1}])
    report = run_container(bundle, bad, post=lambda: "ran")
    assert report.get("type") == "InvalidArgument" and "/etc/evil" in report["error"]
