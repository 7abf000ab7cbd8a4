"""dockyard cp's extraction of a container's tar on the host: nothing outside the
destination, with tarfile's own filter and with the check used where tarfile has none."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from dockyard.cli.context import CLIError
from dockyard.cli.cp import _extract


def _tar(outside: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        link = tarfile.TarInfo("x")
        link.type, link.linkname = tarfile.SYMTYPE, str(outside)
        tf.addfile(link)
        evil = tarfile.TarInfo("x/planted")
        evil.size = 3
        tf.addfile(evil, io.BytesIO(b"bad"))
        ok = tarfile.TarInfo("fine")
        ok.size = 2
        tf.addfile(ok, io.BytesIO(b"ok"))
    return buf.getvalue()


@pytest.mark.parametrize("own_check", [False, True])
def test_nothing_lands_outside_the_destination(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, own_check: bool) -> None:
    if own_check:
        monkeypatch.delattr(tarfile, "tar_filter", raising=False)  # a Python before 3.11.4
    outside, dest = tmp_path / "outside", tmp_path / "dest"
    outside.mkdir()
    dest.mkdir()
    refused = []
    with tarfile.open(fileobj=io.BytesIO(_tar(outside))) as tf:
        for member in tf:
            try:
                _extract(tf, member, str(dest))
            except (CLIError, getattr(tarfile, "FilterError", CLIError)):
                refused.append(member.name)
    assert refused == ["x/planted"]
    assert list(outside.iterdir()) == []
    assert (dest / "fine").read_bytes() == b"ok"
