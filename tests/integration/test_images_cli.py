"""The image commands end to end: dockyard CLI -> API -> dockyardd -> stores."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest

from tests.conftest import Daemon, store_state


def _ids(d: Daemon) -> dict[str, str]:
    out = d.cli("images", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").stdout
    return dict(line.split(" ", 1) for line in out.splitlines())


def test_import_lists_and_inspects(daemon: Daemon, busybox_image: str) -> None:
    assert _ids(daemon)["busybox:latest"] == busybox_image
    table = daemon.cli("images").stdout.splitlines()
    assert table[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    row = next(r for r in table if r.startswith("busybox "))
    assert busybox_image.removeprefix("sha256:")[:12] in row
    info = json.loads(daemon.cli("image", "inspect", "busybox").stdout)[0]
    assert info["Id"] == busybox_image
    assert info["RepoTags"] == ["busybox:latest"]
    assert info["Config"]["Cmd"] == ["sh"]
    assert any(e.startswith("PATH=") for e in info["Config"]["Env"])
    assert len(info["RootFS"]["Layers"]) == 1
    assert info["Os"] == "linux" and info["Size"] > 1_000_000


def test_history_of_imported_image(daemon: Daemon, busybox_image: str) -> None:
    lines = daemon.cli("history", "busybox").stdout.splitlines()
    assert lines[0].split()[:2] == ["IMAGE", "CREATED"]
    assert busybox_image.removeprefix("sha256:")[:12] in lines[1]
    assert "Imported from -" in lines[1]


def test_import_changes(daemon: Daemon, busybox_tar: Path) -> None:
    res = daemon.cli(
        "import", "-c", "ENTRYPOINT [\"/bin/echo\"]", "-c", "CMD hello", "-c", "ENV A=1 B=two",
        "-c", "WORKDIR /srv", "-c", "USER nobody", "-c", "EXPOSE 80 53/udp", "-c", "LABEL k=v",
        "-c", "STOPSIGNAL SIGINT", "-m", "my message", str(busybox_tar), "changed:1",
    )
    cfg = json.loads(daemon.cli("image", "inspect", res.stdout.strip()).stdout)[0]["Config"]
    assert cfg["Entrypoint"] == ["/bin/echo"]
    assert cfg["Cmd"] == ["/bin/sh", "-c", "hello"]
    assert cfg["Env"] == ["A=1", "B=two"]
    assert cfg["WorkingDir"] == "/srv" and cfg["User"] == "nobody"
    assert cfg["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert cfg["Labels"] == {"k": "v"} and cfg["StopSignal"] == "SIGINT"
    assert "my message" in daemon.cli("history", "changed:1").stdout
    daemon.cli("rmi", "changed:1")


def test_import_from_stdin_gzip(daemon: Daemon, busybox_tar: Path) -> None:
    data = gzip.compress(busybox_tar.read_bytes(), compresslevel=1)
    image_id = daemon.cli("import", "-", "gz:1", input=data).stdout.strip()
    info = json.loads(daemon.cli("image", "inspect", "gz:1").stdout)[0]
    assert info["Id"] == image_id
    # the layer content is the same as the uncompressed import's
    plain = json.loads(daemon.cli("image", "inspect", "busybox").stdout)[0]
    assert info["RootFS"]["Layers"] == plain["RootFS"]["Layers"]
    daemon.cli("rmi", "gz:1")


def test_tag_untag_and_delete(daemon: Daemon, busybox_image: str) -> None:
    daemon.cli("tag", "busybox", "localhost:5000/a/b:t")
    daemon.cli("tag", busybox_image.removeprefix("sha256:")[:12], "other:v2")
    ids = _ids(daemon)
    assert ids["localhost:5000/a/b:t"] == busybox_image and ids["other:v2"] == busybox_image
    # removing by ID while several repositories refer to it needs -f
    res = daemon.cli("rmi", busybox_image.removeprefix("sha256:")[:12], check=False)
    assert res.returncode == 1
    assert "image is referenced in multiple repositories" in res.stderr
    out = daemon.cli("rmi", "localhost:5000/a/b:t").stdout
    assert out == "Untagged: localhost:5000/a/b:t\n"
    assert daemon.cli("rmi", "other:v2").stdout == "Untagged: other:v2\n"
    assert "busybox:latest" in _ids(daemon)


def test_rmi_last_tag_deletes_image_and_layers(daemon: Daemon, busybox_tar: Path) -> None:
    daemon.cli("import", "-c", "LABEL unique=rmi-test", str(busybox_tar), "gone:1")
    image_id = _ids(daemon)["gone:1"]
    out = daemon.cli("rmi", "gone:1").stdout.splitlines()
    assert out[0] == "Untagged: gone:1"
    assert f"Deleted: {image_id}" in out
    assert "gone:1" not in _ids(daemon)
    res = daemon.cli("image", "inspect", image_id, check=False)
    assert res.returncode == 1 and "No such image" in res.stderr


def test_rmi_force_by_id_untags_everything(daemon: Daemon, busybox_tar: Path) -> None:
    image_id = daemon.cli("import", "-c", "LABEL unique=force", str(busybox_tar), "f1:a").stdout.strip()
    daemon.cli("tag", "f1:a", "f2:b")
    out = daemon.cli("rmi", "-f", image_id).stdout.splitlines()
    assert "Untagged: f1:a" in out and "Untagged: f2:b" in out and f"Deleted: {image_id}" in out


def test_images_filters_and_formats(daemon: Daemon, busybox_image: str, busybox_tar: Path) -> None:
    daemon.cli("import", "-c", "LABEL flt=yes", str(busybox_tar), "flt:1")
    dangling_id = daemon.cli("import", "-c", "LABEL flt=dangling", str(busybox_tar)).stdout.strip()
    try:
        dangling = daemon.cli("images", "-q", "--no-trunc", "--filter", "dangling=true").stdout.split()
        assert dangling_id in dangling and busybox_image not in dangling
        ref = daemon.cli("images", "--format", "{{.Repository}}", "--filter", "reference=flt*").stdout.split()
        assert ref == ["flt"]
        assert daemon.cli("images", "-q", "--filter", "label=flt=yes").stdout.split() == [_ids(daemon)["flt:1"][7:19]]
        assert daemon.cli("images", "flt").stdout.count("\n") == 2
        digests = daemon.cli("images", "--digests", "busybox").stdout.splitlines()[0]
        assert "DIGEST" in digests
        js = [json.loads(line) for line in daemon.cli("images", "--format", "{{json .}}", "busybox").stdout.splitlines()]
        assert js[0]["Repository"] == "busybox" and js[0]["Tag"] == "latest"
        bad = daemon.cli("images", "--filter", "nonsense=1", check=False)
        assert bad.returncode == 1 and "invalid filter 'nonsense'" in bad.stderr
    finally:
        daemon.cli("rmi", "flt:1", dangling_id)


def test_save_load_round_trip_keeps_ids(daemon: Daemon, busybox_image: str, fresh_daemon: Daemon, tmp_path: Path) -> None:
    archive = tmp_path / "bb.tar"
    daemon.cli("save", "-o", str(archive), "busybox:latest")
    names = set(tarfile.open(archive).getnames())
    assert {"oci-layout", "index.json", "manifest.json", "repositories"} <= names
    out = fresh_daemon.cli("load", "-i", str(archive)).stdout
    assert "Loaded image: busybox:latest" in out
    assert _ids(fresh_daemon)["busybox:latest"] == busybox_image
    # and through stdout/stdin
    data = daemon.cli("save", "busybox", raw=True).stdout
    assert data[:512] == archive.read_bytes()[:512]
    fresh_daemon.cli("rmi", "busybox")
    assert fresh_daemon.cli("load", input=data).returncode == 0
    assert _ids(fresh_daemon)["busybox:latest"] == busybox_image


def test_save_refuses_terminal_and_missing(daemon: Daemon, busybox_image: str) -> None:
    res = daemon.cli("save", "-o", "/nonexistent-dir/x.tar", "nosuchimage", check=False)
    assert res.returncode == 1 and "No such image: nosuchimage:latest" in res.stderr


@pytest.mark.parametrize("name", ["Busybox", "busybox:", "bad name", "a" * 300])
def test_bad_reference_leaves_state(daemon: Daemon, busybox_image: str, name: str) -> None:
    before = store_state(daemon)
    res = daemon.cli("tag", "busybox", name, check=False)
    assert res.returncode == 1
    assert len(res.stderr.strip().splitlines()) == 1
    assert "invalid reference format" in res.stderr or "repository name must" in res.stderr
    assert store_state(daemon) == before


def test_missing_image_errors(daemon: Daemon, busybox_image: str) -> None:
    for args in (["rmi", "nope"], ["image", "inspect", "nope"], ["history", "nope"], ["tag", "nope", "x"]):
        res = daemon.cli(*args, check=False)
        assert res.returncode == 1, args
        assert "No such image: nope" in res.stderr, (args, res.stderr)


def _truncated(archive: bytes) -> bytes:
    return archive[: len(archive) // 2]


def _corrupted(archive: bytes) -> bytes:
    buf = bytearray(archive)
    tf = tarfile.open(fileobj=io.BytesIO(archive))
    big = max((m for m in tf.getmembers() if m.isfile()), key=lambda m: m.size)
    buf[big.offset_data + 100] ^= 0xFF
    return bytes(buf)


@pytest.mark.parametrize("mangle", [_truncated, _corrupted, lambda a: b"not a tar at all" * 100, lambda a: b""])
def test_bad_archive_leaves_state(daemon: Daemon, busybox_image: str, tmp_path: Path, mangle) -> None:
    archive = tmp_path / "a.tar"
    daemon.cli("save", "-o", str(archive), "busybox")
    daemon.cli("tag", "busybox", "keep:me")
    before = store_state(daemon)
    res = daemon.cli("load", input=mangle(archive.read_bytes()), check=False)
    assert res.returncode == 1
    assert res.stderr.strip() and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert store_state(daemon) == before
    daemon.cli("rmi", "keep:me")


def test_bad_import_leaves_state(daemon: Daemon, busybox_image: str) -> None:
    before = store_state(daemon)
    res = daemon.cli("import", "-", "junk:1", input=b"\x1f\x8b garbage that is not gzip" * 10, check=False)
    assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1
    res = daemon.cli("import", "-c", "ADD . /", "-", "junk:1", input=b"", check=False)
    assert res.returncode == 1 and "ADD is not a valid change command" in res.stderr
    assert store_state(daemon) == before
