"""apply's lean tar header parser (archive/apply.py ``_TarInfo``) against tarfile's."""

from __future__ import annotations

import io
import tarfile

import pytest

from dockyard.archive.apply import _members, _TarInfo


def test_header_parser_agrees_with_tarfile() -> None:
    """apply's lean header parser reads what tarfile reads: ustar long names (prefix), GNU
    base-256 numbers and long names, PAX, a V7 directory, signed checksums; a bad checksum
    stops the archive as in tarfile."""
    big = tarfile.TarInfo("big-ids")
    big.uid, big.gid, big.size = 2**40, 8**8, 0  # beyond 8 octal digits: base-256 in GNU format
    members = [tarfile.TarInfo("d/" * 60 + "long-ustar"), big, tarfile.TarInfo("x" * 120),
               tarfile.TarInfo("pax-ü"), tarfile.TarInfo("dev")]
    members[-1].type, members[-1].devmajor, members[-1].devminor = tarfile.CHRTYPE, 4, 64
    blobs = []
    for fmt, infos in ((tarfile.USTAR_FORMAT, members[:1] + members[-1:]), (tarfile.GNU_FORMAT, members[:3]),
                       (tarfile.PAX_FORMAT, members)):
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w", format=fmt) as tf:
            for info in infos:
                tf.addfile(info)
        blobs.append(out.getvalue())
    v7_dir = bytearray(tarfile.TarInfo("olddir/").tobuf(tarfile.USTAR_FORMAT))
    v7_dir[156:157] = tarfile.AREGTYPE
    v7_dir[148:156] = b"        "
    signed = v7_dir[:]
    v7_dir[148:156] = b"%06o\0 " % sum(v7_dir)
    blobs.append(bytes(v7_dir) + bytes(1024))
    signed[265:269] = "äü".encode()  # a uname with bytes > 127, summed as signed chars
    signed_sum = sum(b - 256 if b > 127 else b for b in signed)
    signed[148:156] = b"%06o\0 " % signed_sum
    blobs.append(bytes(signed) + bytes(1024))

    def parse(data: bytes, cls: type) -> list[tuple]:
        tf = tarfile.open(fileobj=io.BytesIO(data), mode="r|", tarinfo=cls)
        return [(m.name, m.mode, m.uid, m.gid, m.size, m.mtime, m.type, m.linkname, m.uname, m.gname,
                 m.devmajor, m.devminor, m.pax_headers) for m in _members(tf)]

    for data in blobs:
        assert parse(data, _TarInfo) == parse(data, tarfile.TarInfo) != []
    bad = bytearray(blobs[0])
    bad[0] ^= 1
    with pytest.raises(tarfile.ReadError):
        parse(bytes(bad), _TarInfo)
    assert parse(blobs[-1], _TarInfo)[0][8] == "äü"
