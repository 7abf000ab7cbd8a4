"""Choosing and building a snapshotter."""

from __future__ import annotations

import os
import shutil
import tempfile

from dockyard.errors import InvalidArgument
from dockyard.snapshots.base import Mount, Snapshotter
from dockyard.snapshots.native import NativeSnapshotter
from dockyard.snapshots.overlay import OverlaySnapshotter, _base_options

BACKENDS: dict[str, type[OverlaySnapshotter] | type[NativeSnapshotter]] = {
    "overlay": OverlaySnapshotter,
    "native": NativeSnapshotter,
}


def open_snapshotter(name: str, root: str) -> Snapshotter:
    """Open (creating if needed) the ``name`` snapshotter whose data lives in ``root``."""
    try:
        cls = BACKENDS[name]
    except KeyError:
        raise InvalidArgument(f"unknown snapshotter {name!r} (want one of {', '.join(BACKENDS)})") from None
    return cls(root)


def detect(root: str) -> str:
    """``"overlay"`` if overlayfs works on ``root``'s filesystem, else ``"native"``.

    Really mounts a two-layer overlay (with the options the overlay snapshotter uses) in a
    scratch directory under ``root`` and checks a write lands in the upperdir: overlay
    refuses some filesystems as upper (no d_type, no xattrs, NFS, another overlay...), and
    only the kernel knows. Everything is unmounted and removed afterwards.
    """
    from dockyard.mount import temp_mount, unmount_all  # lazy: dockyard.mount imports us

    os.makedirs(root, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix=".detect-", dir=root)
    try:
        d = {name: os.path.join(scratch, name) for name in ("l1", "l2", "u", "w", "m")}
        for path in d.values():
            os.mkdir(path)
        with open(os.path.join(d["l2"], "f"), "w") as f:
            f.write("lower")
        mount = Mount(
            "overlay",
            "overlay",
            [*_base_options(), f"lowerdir={d['l1']}:{d['l2']}", f"upperdir={d['u']}", f"workdir={d['w']}"],
        )
        try:
            with temp_mount([mount], dir=d["m"]) as merged, open(os.path.join(merged, "f"), "a") as f:
                f.write("upper")
        except (OSError, InvalidArgument):
            return "native"
        with open(os.path.join(d["u"], "f")) as f:
            return "overlay" if f.read() == "lowerupper" else "native"
    finally:
        unmount_all(scratch)
        shutil.rmtree(scratch, ignore_errors=True)
