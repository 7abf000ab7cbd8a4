"""dockyard.runtime.capabilities: names, docker's add/drop arithmetic, and apply() against
the real kernel. Every apply() runs in a forked child (pytest here is single-threaded), which
reports over a pipe and leaves with os._exit, so the test process keeps its capabilities."""

from __future__ import annotations

import errno
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dockyard.errors import InvalidArgument
from dockyard.runtime import capabilities as caps
from dockyard.runtime.capabilities import CAPS, DEFAULT_CAPS

NOBODY = 65534


def in_child(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in a forked child; return its result or re-raise its exception here."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(r)
        try:
            out: tuple[str, Any] = ("ok", fn())
        except BaseException as err:  # noqa: BLE001 - everything goes back to the parent
            out = ("err", err)
        try:
            data = pickle.dumps(out)
        except Exception as err:  # noqa: BLE001
            data = pickle.dumps(("err", RuntimeError(f"unpicklable result: {err!r}")))
        with os.fdopen(w, "wb") as f:
            f.write(data)
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    assert data, f"child died without reporting (wait status {status:#x})"
    kind, value = pickle.loads(data)
    if kind == "err":
        raise value
    return value


def mask(*names: str) -> int:
    out = 0
    for n in names:
        out |= 1 << CAPS[n]
    return out


def host_bounding() -> int:
    return caps.current()["CapBnd"]


def oci(bounding: list[str], permitted: list[str] | None = None, effective: list[str] | None = None,
        inheritable: list[str] | None = None, ambient: list[str] | None = None) -> dict[str, list[str]]:
    permitted = bounding if permitted is None else permitted
    return {
        "bounding": bounding,
        "permitted": permitted,
        "effective": permitted if effective is None else effective,
        "inheritable": inheritable or [],
        "ambient": ambient or [],
    }


# --------------------------------------------------------------------------- names and tables


def test_caps_table_is_complete() -> None:
    assert sorted(CAPS.values()) == list(range(41))
    assert CAPS["CAP_CHOWN"] == 0 and CAPS["CAP_CHECKPOINT_RESTORE"] == 40
    assert CAPS["CAP_SYS_ADMIN"] == 21 and CAPS["CAP_BPF"] == 39
    assert caps.last_cap() == int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    assert len(DEFAULT_CAPS) == 14 and len(set(DEFAULT_CAPS)) == 14
    assert set(DEFAULT_CAPS) <= set(CAPS)


@pytest.mark.parametrize("name", ["chown", "CHOWN", "CAP_CHOWN", "cap_chown", " Chown "])
def test_normalize_spellings(name: str) -> None:
    assert caps.normalize(name) == "CAP_CHOWN"


def test_parse() -> None:
    assert caps.parse(["chown", "NET_RAW", "CAP_KILL"]) == {0, 13, 5}
    assert caps.parse([]) == set()


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["foo"], 'unknown capability: "CAP_FOO"'),  # docker quotes the normalized name
        (["CAP_CAP_NET_RAW"], 'unknown capability: "CAP_CAP_NET_RAW"'),
        (["chown", "perfmonx"], 'unknown capability: "CAP_PERFMONX"'),
    ],
)
def test_parse_unknown(names: list[str], message: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        caps.parse(names)
    assert str(exc.value) == message


D = list(DEFAULT_CAPS)
ALL_CAPS = caps.all_caps()


@pytest.mark.parametrize(
    ("add", "drop", "privileged", "expected"),
    [
        ([], [], False, D),
        (None, None, False, D),
        (["NET_ADMIN"], [], False, [*D, "CAP_NET_ADMIN"]),
        (["net_admin", "CAP_NET_ADMIN"], [], False, [*D, "CAP_NET_ADMIN"]),
        ([], ["chown", "CAP_KILL"], False, [c for c in D if c not in ("CAP_CHOWN", "CAP_KILL")]),
        # an add beats a drop of the same cap: drop from the defaults first, then add
        (["CHOWN"], ["CHOWN"], False, [*(c for c in D if c != "CAP_CHOWN"), "CAP_CHOWN"]),
        (["ALL"], [], False, ALL_CAPS),
        (["all"], [], False, ALL_CAPS),
        (["ALL"], ["NET_ADMIN", "sys_admin"], False,
         [c for c in ALL_CAPS if c not in ("CAP_NET_ADMIN", "CAP_SYS_ADMIN")]),
        ([], ["ALL"], False, []),
        (["chown", "sys_time"], ["ALL"], False, ["CAP_CHOWN", "CAP_SYS_TIME"]),
        (["ALL"], ["ALL"], False, ALL_CAPS),  # docker: ALL in add wins, "ALL" names no cap to drop
        ([], [], True, ALL_CAPS),
        (["NET_ADMIN"], ["ALL"], True, ALL_CAPS),
    ],
)
def test_merge_docker(add: list[str] | None, drop: list[str] | None, privileged: bool,
                      expected: list[str]) -> None:
    assert caps.merge_docker(add, drop, privileged) == expected


@pytest.mark.parametrize(
    ("add", "drop", "privileged", "message"),
    [
        (["foo"], [], False, 'invalid CapAdd: unknown capability: "CAP_FOO"'),
        ([], ["bar"], False, 'invalid CapDrop: unknown capability: "CAP_BAR"'),
        (["foo"], ["bar"], False, 'invalid CapAdd: unknown capability: "CAP_FOO"'),
        (["foo"], [], True, 'invalid CapAdd: unknown capability: "CAP_FOO"'),
    ],
)
def test_merge_docker_unknown(add: list[str], drop: list[str], privileged: bool, message: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        caps.merge_docker(add, drop, privileged)
    assert str(exc.value) == message


def test_all_caps_stops_at_cap_last_cap() -> None:
    top = caps.last_cap()
    assert [n for n, v in sorted(CAPS.items(), key=lambda kv: kv[1]) if v <= top] == ALL_CAPS


# --------------------------------------------------------------------------- apply, real kernel

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="changing capabilities needs root")


@needs_root
def test_apply_reduced_set_as_root() -> None:
    def child() -> tuple[dict[str, int], list[str]]:
        ignored = caps.apply(oci(list(DEFAULT_CAPS), inheritable=list(DEFAULT_CAPS)))
        return caps.current(), ignored

    status, ignored = in_child(child)
    want = mask(*DEFAULT_CAPS)
    assert ignored == []
    assert status == {"CapInh": want, "CapPrm": want, "CapEff": want, "CapBnd": want, "CapAmb": 0}


@needs_root
def test_apply_after_setuid_with_keep_caps() -> None:
    def child() -> tuple[int, int, dict[str, int]]:
        caps.keep_caps_across_setuid()
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
        caps.apply(oci(["CAP_CHOWN", "CAP_NET_BIND_SERVICE", "CAP_KILL"],
                       permitted=["CAP_CHOWN", "CAP_NET_BIND_SERVICE"],
                       effective=["CAP_NET_BIND_SERVICE"]))
        return os.getuid(), os.getgid(), caps.current()

    uid, gid, status = in_child(child)
    assert (uid, gid) == (NOBODY, NOBODY)
    assert status == {
        "CapInh": 0,
        "CapPrm": mask("CAP_CHOWN", "CAP_NET_BIND_SERVICE"),
        "CapEff": mask("CAP_NET_BIND_SERVICE"),
        "CapBnd": mask("CAP_CHOWN", "CAP_NET_BIND_SERVICE", "CAP_KILL"),
        "CapAmb": 0,
    }


@needs_root
def test_setuid_without_keep_caps_fails_clearly() -> None:
    def child() -> None:
        os.setgroups([])
        os.setuid(NOBODY)  # without keep-caps the kernel empties permitted
        caps.apply(oci(["CAP_CHOWN"]))

    with pytest.raises(OSError) as exc:
        in_child(child)
    assert exc.value.errno == errno.EPERM
    assert "CAP_CHOWN" in str(exc.value) and "keep_caps_across_setuid" in str(exc.value)


@needs_root
def test_ambient_caps_survive_exec_as_non_root() -> None:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(r)
            caps.keep_caps_across_setuid()
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            caps.apply(oci(["CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_CHOWN"],
                           permitted=["CAP_NET_BIND_SERVICE", "CAP_NET_RAW"],
                           inheritable=["CAP_NET_BIND_SERVICE", "CAP_NET_RAW"],
                           ambient=["CAP_NET_BIND_SERVICE"]))
            os.dup2(w, 1)
            os.execv("/bin/sh", ["sh", "-c", "grep Cap /proc/self/status"])
        finally:
            os._exit(127)
    os.close(w)
    with os.fdopen(r) as f:
        out = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, out
    got = {k: int(v, 16) for k, v in (line.split(":\t") for line in out.splitlines())}
    nbs = mask("CAP_NET_BIND_SERVICE")
    # a non-root exec keeps only the ambient caps in permitted/effective; inheritable stays
    assert got == {
        "CapInh": mask("CAP_NET_BIND_SERVICE", "CAP_NET_RAW"),
        "CapPrm": nbs,
        "CapEff": nbs,
        "CapBnd": mask("CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_CHOWN"),
        "CapAmb": nbs,
    }


@needs_root
def test_dropping_cap_chown_denies_chown(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")

    def chown_as(cap_names: list[str]) -> Callable[[], int]:
        def child() -> int:
            caps.apply(oci(cap_names))
            try:
                os.chown(target, 1234, 1234)
            except OSError as err:
                return err.errno
            return 0
        return child

    without = [c for c in DEFAULT_CAPS if c != "CAP_CHOWN"]
    assert in_child(chown_as(without)) == errno.EPERM
    assert target.stat().st_uid == 0
    assert in_child(chown_as(list(DEFAULT_CAPS))) == 0
    assert target.stat().st_uid == 1234


@needs_root
def test_caps_the_host_lacks_are_skipped() -> None:
    """CAP_SYS_RESOURCE is missing from this VM's bounding set: a privileged container's
    full list must still apply, without it, and say so."""
    host = host_bounding()
    every = list(CAPS)

    def child() -> tuple[list[str], dict[str, int]]:
        return caps.apply(oci(every, inheritable=every, ambient=every)), caps.current()

    ignored, status = in_child(child)
    known = mask(*every)
    assert ignored == caps.names_of(known & ~host)
    for key in ("CapBnd", "CapPrm", "CapEff", "CapInh", "CapAmb"):
        assert status[key] == known & host, key


@needs_root
def test_caps_above_cap_last_cap_are_skipped() -> None:
    """A kernel older than our table (cap_last_cap 37: no PERFMON, BPF, CHECKPOINT_RESTORE)."""
    def child() -> tuple[list[str], dict[str, int]]:
        caps.last_cap = lambda: 37  # type: ignore[assignment]  # only in this child
        return caps.apply(oci(["CAP_CHOWN", "CAP_BPF", "CAP_PERFMON", "CAP_CHECKPOINT_RESTORE"])), caps.current()

    ignored, status = in_child(child)
    assert set(ignored) >= {"CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"}
    assert status["CapEff"] == status["CapPrm"] == mask("CAP_CHOWN")


@needs_root
@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (oci(["CAP_CHOWN", "CAP_NOPE"]), 'process.capabilities.bounding: unknown capability: "CAP_NOPE"'),
        ({"bounding": ["CAP_CHOWN"], "ambient": ["CAP_FROB"]},
         'process.capabilities.ambient: unknown capability: "CAP_FROB"'),
        (oci(["CAP_CHOWN", "CAP_KILL"], permitted=["CAP_CHOWN"], effective=["CAP_KILL"]),
         "effective capabilities not in permitted: CAP_KILL"),
        (oci(["CAP_CHOWN"], ambient=["CAP_CHOWN"]),
         "ambient capabilities must also be permitted and inheritable: CAP_CHOWN"),
        (oci(["CAP_CHOWN"], inheritable=["CAP_KILL"]), "inheritable capabilities not in bounding: CAP_KILL"),
        ({"bounding": "CAP_CHOWN"}, "process.capabilities.bounding must be a list"),
    ],
)
def test_bad_sets_change_nothing(spec: dict, message: str) -> None:
    def child() -> tuple[str, dict[str, int], dict[str, int]]:
        before = caps.current()
        try:
            caps.apply(spec)
        except InvalidArgument as err:
            return str(err), before, caps.current()
        return "no error", before, caps.current()

    err, before, after = in_child(child)
    assert message in err
    assert before == after


@needs_root
def test_missing_section_means_no_capabilities() -> None:
    status = in_child(lambda: (caps.apply(None), caps.current())[1])
    assert status == {"CapInh": 0, "CapPrm": 0, "CapEff": 0, "CapBnd": 0, "CapAmb": 0}


@needs_root
def test_bounding_drop_without_cap_setpcap_changes_nothing() -> None:
    def child() -> tuple[str, dict[str, int], dict[str, int]]:
        caps.apply(oci(["CAP_CHOWN", "CAP_KILL"]))  # CAP_SETPCAP is gone after this
        before = caps.current()
        try:
            caps.apply(oci(["CAP_CHOWN"]))
        except OSError as err:
            return str(err), before, caps.current()
        return "no error", before, caps.current()

    err, before, after = in_child(child)
    assert "cannot drop CAP_KILL from the bounding set without CAP_SETPCAP" in err
    assert before == after
