"""docker save / docker load archives against a real LocalStore, real tar files and skopeo."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import os
import random
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import zstandard

from dockyard.content.local import LocalStore
from dockyard.errors import DataCorruption, InvalidArgument, NotFound
from dockyard.images import mediatypes as mt
from dockyard.images import model
from dockyard.images.transfer import ExportImage, LoadedImage, familiar, load, save

SKOPEO = shutil.which("skopeo")
needs_skopeo = pytest.mark.skipif(SKOPEO is None, reason="skopeo not installed")


# --------------------------------------------------------------------------- helpers


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mtime = 1700000000
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


@dataclass
class Img:
    desc: model.Descriptor
    manifest: model.Manifest
    config: model.ImageConfig
    layers: list[bytes]  # blobs as stored


def build_image(store: LocalStore, layers: list[bytes], *, gzip_layers: tuple[int, ...] = (),
                oci: bool = False, cmd: str = "sh") -> Img:
    diff_ids = [sha(data) for data in layers]
    blobs = [gz(data) if i in gzip_layers else data for i, data in enumerate(layers)]
    config = model.new_config(diff_ids, created="2024-01-02T03:04:05Z", config={"Cmd": [cmd]})
    cfg_desc = model.Descriptor(mt.OCI_CONFIG if oci else mt.DOCKER_CONFIG, store.put(config.raw), len(config.raw))
    layer_descs = []
    for i, blob in enumerate(blobs):
        kind = "gzip" if i in gzip_layers else None
        layer_descs.append(model.Descriptor(mt.layer_type(kind, oci), store.put(blob), len(blob)))
    manifest = model.build_manifest(cfg_desc, layer_descs, oci=oci)
    desc = model.Descriptor(manifest.media_type, store.put(manifest.raw), len(manifest.raw))
    return Img(desc, manifest, config, blobs)


def save_bytes(store: LocalStore, images: list[tuple[Img, list[str]]]) -> bytes:
    out = io.BytesIO()
    save(store, [ExportImage(img.desc, names) for img, names in images], out)
    return out.getvalue()


def snapshot(store: LocalStore) -> tuple[list, list]:
    return sorted(store.walk(), key=lambda b: b.digest), store.ingests()


def members(archive: bytes) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {}
    with tarfile.open(fileobj=io.BytesIO(archive)) as tf:
        for m in tf:
            f = tf.extractfile(m) if m.isreg() else None
            out[m.name] = f.read() if f else None
    return out


def make_tar(entries: list[tuple[str, bytes | tuple[str, str] | None]], gzipped: bool = False) -> bytes:
    """Entries: name -> bytes (file), ("symlink", target), or None (directory)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gzipped else "w", format=tarfile.PAX_FORMAT) as tf:
        for name, content in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = 0
            if content is None:
                ti.type = tarfile.DIRTYPE
                ti.mode = 0o755
                tf.addfile(ti)
            elif isinstance(content, tuple):
                ti.type = tarfile.SYMTYPE
                ti.linkname = content[1]
                tf.addfile(ti)
            else:
                ti.size = len(content)
                tf.addfile(ti, io.BytesIO(content))
    return buf.getvalue()


def oci_layout_tar(blobs: list[bytes], index_manifests: list[dict], extra: list | None = None) -> bytes:
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": index_manifests}
    entries: list = [("blobs/", None), ("blobs/sha256/", None)]
    for blob in dict.fromkeys(blobs):
        entries.append((f"blobs/sha256/{sha(blob)[7:]}", blob))
    entries += [("index.json", json.dumps(index).encode()), ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')]
    return make_tar(entries + (extra or []))


def skopeo(*args: str) -> str:
    proc = subprocess.run([SKOPEO or "skopeo", *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"skopeo {' '.join(args)} failed: {proc.stderr}"
    return proc.stdout


@pytest.fixture
def src(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "src")


@pytest.fixture
def dst(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "dst")


@pytest.fixture
def busybox(src: LocalStore) -> Img:
    base = layer_tar({"bin/sh": b"#!shell\n", "etc/passwd": b"root:x:0:0::/root:/bin/sh\n"})
    top = layer_tar({"hello.txt": b"hello world\n"})
    return build_image(src, [base, top], gzip_layers=(1,))


def loaded_blobs_ok(store: LocalStore, image: LoadedImage) -> None:
    assert store.exists(image.manifest.digest)
    assert store.exists(image.config.id)
    with store.open(image.manifest.digest) as f:
        assert f.read() == image.manifest.raw
    for layer in image.manifest.layers:
        assert store.info(layer.digest).size == layer.size


# --------------------------------------------------------------------------- save


def test_round_trip_keeps_digests_and_names(src: LocalStore, dst: LocalStore, busybox: Img) -> None:
    names = ["docker.io/library/busybox:latest", "localhost:5000/a/b:t"]
    archive = save_bytes(src, [(busybox, names)])

    loaded = load(dst, io.BytesIO(archive))

    assert len(loaded) == 1
    (img,) = loaded
    assert img.manifest.digest == busybox.desc.digest
    assert img.manifest.raw == busybox.manifest.raw
    assert img.config.id == busybox.config.id
    assert img.config.raw == busybox.config.raw
    assert img.names == names
    loaded_blobs_ok(dst, img)
    # exactly the image's blobs: no index.json / manifest.json / oci-layout leftovers
    expected = {busybox.desc.digest, busybox.config.id, *(sha(b) for b in busybox.layers)}
    assert {b.digest for b in dst.walk()} == expected
    assert dst.ingests() == []


def test_save_layout_matches_docker(src: LocalStore, busybox: Img) -> None:
    names = ["docker.io/library/busybox:latest", "localhost:5000/a/b:t"]
    archive = save_bytes(src, [(busybox, names)])

    with tarfile.open(fileobj=io.BytesIO(archive)) as tf:
        infos = tf.getmembers()
    blob_names = sorted(f"blobs/sha256/{d[7:]}" for d in
                        [busybox.desc.digest, busybox.config.id, *(sha(b) for b in busybox.layers)])
    assert [i.name for i in infos] == [
        "blobs", "blobs/sha256", *blob_names, "index.json", "manifest.json", "oci-layout", "repositories",
    ]
    assert [i.isdir() for i in infos[:2]] == [True, True]
    assert all(i.uid == 0 and i.gid == 0 and i.mtime == 0 for i in infos)
    assert archive[:512].split(b"\0", 1)[0] == b"blobs/"  # docker's trailing slash on directories

    files = members(archive)
    for name in blob_names:  # every blob is content addressed
        assert sha(files[name]) == "sha256:" + name.rsplit("/", 1)[1]
    assert files["oci-layout"] == b'{"imageLayoutVersion":"1.0.0"}'

    index = json.loads(files["index.json"])
    assert index["schemaVersion"] == 2 and index["mediaType"] == mt.OCI_INDEX
    assert [m["annotations"] for m in index["manifests"]] == [
        {"io.containerd.image.name": "docker.io/library/busybox:latest", "org.opencontainers.image.ref.name": "latest"},
        {"io.containerd.image.name": "localhost:5000/a/b:t", "org.opencontainers.image.ref.name": "t"},
    ]
    for entry in index["manifests"]:
        assert (entry["mediaType"], entry["digest"], entry["size"]) == (
            mt.DOCKER_MANIFEST, busybox.desc.digest, busybox.desc.size)

    layer_paths = [f"blobs/sha256/{sha(b)[7:]}" for b in busybox.layers]
    assert json.loads(files["manifest.json"]) == [{
        "Config": f"blobs/sha256/{busybox.config.id[7:]}",
        "RepoTags": ["busybox:latest", "localhost:5000/a/b:t"],
        "Layers": layer_paths,
    }]
    top = sha(busybox.layers[-1])[7:]
    assert json.loads(files["repositories"]) == {"busybox": {"latest": top}, "localhost:5000/a/b": {"t": top}}

    # deterministic: the same images give the same bytes
    assert save_bytes(src, [(busybox, names)]) == archive


def test_familiar_names() -> None:
    assert familiar("docker.io/library/busybox:latest") == "busybox:latest"
    assert familiar("docker.io/foo/bar:1") == "foo/bar:1"
    assert familiar("docker.io/library/a/b:1") == "library/a/b:1"
    assert familiar("localhost:5000/a/b:t") == "localhost:5000/a/b:t"
    assert familiar("quay.io/library/x:1") == "quay.io/library/x:1"


def test_untagged_image(src: LocalStore, dst: LocalStore, busybox: Img) -> None:
    archive = save_bytes(src, [(busybox, [])])
    files = members(archive)

    index = json.loads(files["index.json"])
    assert len(index["manifests"]) == 1
    assert "annotations" not in index["manifests"][0]
    assert index["manifests"][0]["digest"] == busybox.desc.digest
    (item,) = json.loads(files["manifest.json"])
    assert item["RepoTags"] is None  # docker marshals its nil slice as null
    assert "repositories" not in files

    (img,) = load(dst, io.BytesIO(archive))
    assert img.names == []
    assert img.config.id == busybox.config.id


def test_shared_layer_is_stored_once(src: LocalStore, dst: LocalStore) -> None:
    base = layer_tar({"etc/os-release": b"ID=test\n"})
    a = build_image(src, [base, layer_tar({"a": b"a"})], cmd="a")
    b = build_image(src, [base, layer_tar({"b": b"b"})], cmd="b")
    archive = save_bytes(src, [(a, ["docker.io/library/a:1"]), (b, ["docker.io/library/b:1"])])

    with tarfile.open(fileobj=io.BytesIO(archive)) as tf:
        names = tf.getnames()
    assert names.count(f"blobs/sha256/{sha(base)[7:]}") == 1
    assert len(names) == len(set(names))
    assert len([n for n in names if n.startswith("blobs/sha256/")]) == 2 * 2 + 3  # 2 manifests, 2 configs, 3 layers
    items = json.loads(members(archive)["manifest.json"])
    assert [i["RepoTags"] for i in items] == [["a:1"], ["b:1"]]

    loaded = load(dst, io.BytesIO(archive))
    assert [(i.config.id, i.names) for i in loaded] == [
        (a.config.id, ["docker.io/library/a:1"]), (b.config.id, ["docker.io/library/b:1"]),
    ]
    for image in loaded:
        loaded_blobs_ok(dst, image)


def test_save_same_image_twice_merges_names(src: LocalStore, dst: LocalStore, busybox: Img) -> None:
    archive = save_bytes(src, [(busybox, ["docker.io/library/x:1"]), (busybox, ["docker.io/library/x:2"])])
    assert json.loads(members(archive)["manifest.json"])[0]["RepoTags"] == ["x:1", "x:2"]
    (img,) = load(dst, io.BytesIO(archive))
    assert img.names == ["docker.io/library/x:1", "docker.io/library/x:2"]


# --------------------------------------------------------------------------- skopeo reads ours


@needs_skopeo
def test_skopeo_reads_our_docker_archive(src: LocalStore, busybox: Img, tmp_path: Path) -> None:
    other = build_image(src, [layer_tar({"x": b"x"})], cmd="other")
    path = tmp_path / "ours.tar"
    path.write_bytes(save_bytes(src, [(busybox, ["docker.io/library/busybox:latest"]),
                                      (other, ["localhost:5000/a/b:t"])]))

    for img, name in ((busybox, "busybox:latest"), (other, "localhost:5000/a/b:t")):
        raw = json.loads(skopeo("inspect", "--raw", f"docker-archive:{path}:{name}"))
        # skopeo recomputes a schema2 manifest from the config and the uncompressed layers
        assert raw["config"]["digest"] == img.config.id
        assert [layer["digest"] for layer in raw["layers"]] == img.config.diff_ids
        config = skopeo("inspect", "--config", "--raw", f"docker-archive:{path}:{name}")
        assert sha(config.encode()) == img.config.id


@needs_skopeo
def test_skopeo_reads_our_oci_archive(src: LocalStore, busybox: Img, tmp_path: Path) -> None:
    single = tmp_path / "single.tar"
    single.write_bytes(save_bytes(src, [(busybox, ["docker.io/library/busybox:latest"])]))
    raw = skopeo("inspect", "--raw", f"oci-archive:{single}")
    assert sha(raw.encode()) == busybox.desc.digest
    config = skopeo("inspect", "--config", "--raw", f"oci-archive:{single}")
    assert sha(config.encode()) == busybox.config.id

    # several images: skopeo picks one by its ref name (skopeo 1.9 only matches OCI manifests)
    a = build_image(src, [layer_tar({"a": b"a"})], oci=True, cmd="a")
    b = build_image(src, [layer_tar({"b": b"b"})], gzip_layers=(0,), oci=True, cmd="b")
    multi = tmp_path / "multi.tar"
    multi.write_bytes(save_bytes(src, [(a, ["docker.io/library/a:one"]), (b, ["docker.io/library/b:two"])]))
    for img, tag in ((a, "one"), (b, "two")):
        raw = skopeo("inspect", "--raw", f"oci-archive:{multi}:{tag}")
        assert sha(raw.encode()) == img.desc.digest


# --------------------------------------------------------------------------- skopeo writes, we read


@pytest.fixture
def ours_oci(src: LocalStore, tmp_path: Path) -> tuple[Img, Path]:
    """An OCI image (skopeo keeps OCI configs byte for byte; docker ones it converts)."""
    img = build_image(src, [layer_tar({"bin/sh": b"sh"}), layer_tar({"data": b"1" * 5000})],
                      gzip_layers=(0,), oci=True)
    path = tmp_path / "ours.tar"
    path.write_bytes(save_bytes(src, [(img, ["docker.io/library/orig:1"])]))
    return img, path


@needs_skopeo
def test_load_skopeo_docker_archive(dst: LocalStore, ours_oci: tuple[Img, Path], tmp_path: Path) -> None:
    img, ours = ours_oci
    out = tmp_path / "skopeo.tar"
    skopeo("copy", "-q", f"oci-archive:{ours}", f"docker-archive:{out}:foo:bar")
    with tarfile.open(out) as tf:
        assert any(n.endswith("/layer.tar") for n in tf.getnames())  # symlinked legacy dirs

    with open(out, "rb") as f:
        (loaded,) = load(dst, f)
    assert loaded.config.id == img.config.id
    assert loaded.names == ["docker.io/library/foo:bar"]
    assert loaded.manifest.media_type == mt.DOCKER_MANIFEST
    assert len(loaded.manifest.layers) == 2
    loaded_blobs_ok(dst, loaded)


@needs_skopeo
def test_load_skopeo_oci_archive(dst: LocalStore, ours_oci: tuple[Img, Path], tmp_path: Path) -> None:
    img, ours = ours_oci
    out = tmp_path / "skopeo-oci.tar"
    skopeo("copy", "-q", f"oci-archive:{ours}", f"oci-archive:{out}:foo:bar")

    with open(out, "rb") as f:
        (loaded,) = load(dst, f)
    assert loaded.config.id == img.config.id
    assert loaded.names == ["docker.io/library/foo:bar"]
    assert sha(skopeo("inspect", "--raw", f"oci-archive:{out}").encode()) == loaded.manifest.digest
    loaded_blobs_ok(dst, loaded)


@needs_skopeo
def test_load_tarred_skopeo_oci_dir(dst: LocalStore, ours_oci: tuple[Img, Path], tmp_path: Path) -> None:
    img, ours = ours_oci
    layout = tmp_path / "layout"
    skopeo("copy", "-q", f"oci-archive:{ours}", f"oci:{layout}:foo:bar")
    tarred = tmp_path / "layout.tar"
    with tarfile.open(tarred, "w") as tf:
        tf.add(layout, arcname=".")  # "./index.json", as `tar -C layout .` writes

    with open(tarred, "rb") as f:
        (loaded,) = load(dst, f)
    assert loaded.config.id == img.config.id
    assert loaded.names == ["docker.io/library/foo:bar"]
    loaded_blobs_ok(dst, loaded)


# --------------------------------------------------------------------------- other inputs


def legacy_archive(tmp: LocalStore) -> tuple[bytes, list[Img]]:
    """What docker <= 24 writes: <id>/{VERSION,json,layer.tar}, <hex>.json configs, a
    symlinked duplicate layer, and (as docker accepts) one gzip-compressed layer.tar."""
    base = layer_tar({"etc/issue": b"legacy\n"})
    top = layer_tar({"app": b"app"})
    a = build_image(tmp, [base], cmd="a")
    b = build_image(tmp, [base, top], gzip_layers=(1,), cmd="b")
    ids = {"a0": "1" * 64, "b0": "2" * 64, "b1": "3" * 64}
    v1 = json.dumps({"id": "x", "created": "1970-01-01T00:00:00Z"}).encode()
    entries: list = []
    for key in ("a0", "b0", "b1"):
        entries += [(f"{ids[key]}/", None), (f"{ids[key]}/VERSION", b"1.0"), (f"{ids[key]}/json", v1)]
    entries += [
        (f"{ids['a0']}/layer.tar", base),
        (f"{ids['b0']}/layer.tar", ("symlink", f"../{ids['a0']}/layer.tar")),
        (f"{ids['b1']}/layer.tar", b.layers[1]),
        (f"{a.config.id[7:]}.json", a.config.raw),
        (f"{b.config.id[7:]}.json", b.config.raw),
        ("manifest.json", json.dumps([
            {"Config": f"{a.config.id[7:]}.json", "RepoTags": ["legacy-a:1"], "Layers": [f"{ids['a0']}/layer.tar"]},
            {"Config": f"{b.config.id[7:]}.json", "RepoTags": ["example.com/legacy/b:2", "b:latest"],
             "Layers": [f"{ids['b0']}/layer.tar", f"{ids['b1']}/layer.tar"], "Parent": a.config.id},
        ]).encode()),
        ("repositories", json.dumps({"legacy-a": {"1": ids["a0"]}}).encode()),
    ]
    return make_tar(entries), [a, b]


def test_load_legacy_docker_archive(tmp_path: Path, dst: LocalStore) -> None:
    archive, (a, b) = legacy_archive(LocalStore(tmp_path / "scratch"))
    loaded = load(dst, io.BytesIO(archive))

    assert [(i.config.id, i.names) for i in loaded] == [
        (a.config.id, ["docker.io/library/legacy-a:1"]),
        (b.config.id, ["example.com/legacy/b:2", "docker.io/library/b:latest"]),
    ]
    la, lb = loaded
    assert la.manifest.media_type == mt.DOCKER_MANIFEST
    assert [(d.media_type, d.digest) for d in lb.manifest.layers] == [
        (mt.DOCKER_LAYER, sha(b.layers[0])), (mt.DOCKER_LAYER_GZIP, sha(b.layers[1])),
    ]
    assert lb.manifest.layers[0].digest == la.manifest.layers[0].digest  # via the symlink
    assert lb.manifest.config == model.Descriptor(mt.DOCKER_CONFIG, b.config.id, len(b.config.raw))
    # the built manifest is canonical and was stored
    assert lb.manifest.raw == model.build_manifest(lb.manifest.config, lb.manifest.layers).raw
    for image in loaded:
        loaded_blobs_ok(dst, image)
    # <id>/json and <id>/VERSION are not kept
    assert len(list(dst.walk())) == 2 + 2 + 2  # manifests, configs, layers (base shared)


@pytest.mark.parametrize("compress", [
    pytest.param(lambda d: gzip.compress(d, mtime=0), id="gzip"),
    pytest.param(lambda d: zstandard.ZstdCompressor().compress(d), id="zstd"),
    pytest.param(bz2.compress, id="bzip2"),
    pytest.param(lzma.compress, id="xz"),
])
def test_load_compressed_archive_from_pipe(src: LocalStore, dst: LocalStore, busybox: Img, tmp_path: Path, compress) -> None:
    archive = save_bytes(src, [(busybox, ["docker.io/library/busybox:latest"])])
    path = tmp_path / "archive.tar.z"
    path.write_bytes(compress(archive))
    proc = subprocess.Popen(["cat", str(path)], stdout=subprocess.PIPE)  # a real, unseekable pipe
    try:
        (img,) = load(dst, proc.stdout)
    finally:
        proc.stdout.close()
        proc.wait()
    assert img.manifest.digest == busybox.desc.digest
    assert img.names == ["docker.io/library/busybox:latest"]


def test_load_into_store_that_has_some_blobs(src: LocalStore, busybox: Img) -> None:
    archive = save_bytes(src, [(busybox, ["docker.io/library/busybox:latest"])])
    before = snapshot(src)
    (img,) = load(src, io.BytesIO(archive))  # everything already there
    assert img.manifest.digest == busybox.desc.digest
    assert snapshot(src) == before


def test_nested_index_picks_host_platform(tmp_path: Path, dst: LocalStore) -> None:
    scratch = LocalStore(tmp_path / "scratch")
    host = build_image(scratch, [layer_tar({"host": b"h"})], oci=True, cmd="host")
    other_cfg = model.ImageConfig.parse(json.dumps({
        "architecture": "s390x" if model.host_platform()["architecture"] != "s390x" else "riscv64",
        "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode())
    other = model.build_manifest(model.Descriptor(mt.OCI_CONFIG, sha(other_cfg.raw), len(other_cfg.raw)), [], oci=True)
    idx = model.build_index([
        model.Descriptor(mt.OCI_MANIFEST, sha(other.raw), len(other.raw),
                         platform={"os": "linux", "architecture": other_cfg.architecture}),
        model.Descriptor(mt.OCI_MANIFEST, host.desc.digest, host.desc.size, platform=model.host_platform()),
    ])
    archive = oci_layout_tar(
        [idx.raw, other.raw, other_cfg.raw, host.manifest.raw, host.config.raw, *host.layers],
        [{"mediaType": mt.OCI_INDEX, "digest": sha(idx.raw), "size": len(idx.raw),
          "annotations": {mt.ANNOTATION_IMAGE_NAME: "docker.io/library/multi:1",
                          mt.ANNOTATION_REF_NAME: "1"}}],
    )
    (img,) = load(dst, io.BytesIO(archive))
    assert img.manifest.digest == host.desc.digest
    assert img.names == ["docker.io/library/multi:1"]
    # the index and the other platform's blobs are not left behind
    assert {b.digest for b in dst.walk()} == {host.desc.digest, host.config.id, sha(host.layers[0])}


def test_names_from_ref_name_and_manifest_json(tmp_path: Path, dst: LocalStore) -> None:
    scratch = LocalStore(tmp_path / "scratch")
    a = build_image(scratch, [layer_tar({"a": b"a"})], oci=True, cmd="a")
    b = build_image(scratch, [layer_tar({"b": b"b"})], oci=True, cmd="b")

    def entry(img: Img, ref_name: str) -> dict:
        return {"mediaType": mt.OCI_MANIFEST, "digest": img.desc.digest, "size": img.desc.size,
                "annotations": {mt.ANNOTATION_REF_NAME: ref_name}}

    blobs = [a.manifest.raw, a.config.raw, *a.layers, b.manifest.raw, b.config.raw, *b.layers]
    archive = oci_layout_tar(blobs, [entry(a, "latest"), entry(b, "quay.io/x/b:v2")])
    la, lb = load(dst, io.BytesIO(archive))
    assert la.names == []  # a bare tag names nothing
    assert lb.names == ["quay.io/x/b:v2"]

    # manifest.json RepoTags win over the index annotations
    manifest_json = json.dumps([{"Config": f"blobs/sha256/{b.config.id[7:]}", "RepoTags": ["b:from-manifest-json"],
                                 "Layers": [f"blobs/sha256/{sha(b.layers[0])[7:]}"]}]).encode()
    archive = oci_layout_tar(blobs, [entry(a, "latest"), entry(b, "quay.io/x/b:v2")],
                             [("manifest.json", manifest_json)])
    la, lb = load(LocalStore(tmp_path / "dst2"), io.BytesIO(archive))
    assert lb.names == ["docker.io/library/b:from-manifest-json"]


# --------------------------------------------------------------------------- failures


@pytest.fixture
def busy_dst(dst: LocalStore, busybox: Img) -> LocalStore:
    """A target store with an unrelated blob, a blob the archive also carries (the config)
    and an unrelated paused ingest: a failed load must leave all of them alone."""
    dst.put(b"unrelated blob")
    dst.put(busybox.config.raw)
    w = dst.writer("someone-elses-upload")
    w.write(b"partial")
    w.close()
    return dst


def assert_fails_cleanly(store: LocalStore, data: bytes, match: str) -> DataCorruption:
    before = snapshot(store)
    with pytest.raises(DataCorruption, match=match) as exc:
        load(store, io.BytesIO(data))
    assert "\n" not in str(exc.value)
    assert snapshot(store) == before
    return exc.value


def tar_offsets(archive: bytes) -> tuple[list[tuple[str, int, int]], int]:
    """(name, header offset, data offset) of each member, and where the end marker starts."""
    out = []
    with tarfile.open(fileobj=io.BytesIO(archive)) as tf:
        for m in tf:
            out.append((m.name, m.offset, m.offset_data))
            end = m.offset_data + (m.size + 511) // 512 * 512
    return out, end


def test_truncated_archive(src: LocalStore, busy_dst: LocalStore, busybox: Img) -> None:
    archive = save_bytes(src, [(busybox, ["docker.io/library/busybox:latest"])])
    entries, end = tar_offsets(archive)
    cuts = {1, 100, 511, 512, 513, end, end + 100}
    for _name, header, data in entries:
        cuts |= {header, header + 200, data + 1, data + 3000}
    cuts = sorted(c for c in cuts if 0 < c < end + 512)
    assert len(cuts) > 20
    for cut in cuts:
        assert_fails_cleanly(busy_dst, archive[:cut], "invalid (tar )?archive")
    # the untruncated archive still loads into the same store
    (img,) = load(busy_dst, io.BytesIO(archive))
    assert img.config.id == busybox.config.id


def test_truncated_compressed_archive(src: LocalStore, busy_dst: LocalStore, busybox: Img) -> None:
    archive = gzip.compress(save_bytes(src, [(busybox, ["docker.io/library/busybox:latest"])]), mtime=0)
    for cut in (5, 30, len(archive) // 2, len(archive) - 400):
        assert_fails_cleanly(busy_dst, archive[:cut], "invalid (tar )?archive")


def test_corrupted_blob_byte(src: LocalStore, busy_dst: LocalStore, busybox: Img) -> None:
    archive = save_bytes(src, [(busybox, ["docker.io/library/busybox:latest"])])
    entries, _ = tar_offsets(archive)
    for blob in (sha(busybox.layers[0]), sha(busybox.layers[1]), busybox.config.id, busybox.desc.digest):
        (data_at,) = [d for name, _h, d in entries if name == f"blobs/sha256/{blob[7:]}"]
        bad = bytearray(archive)
        bad[data_at + 7] ^= 0x01
        err = assert_fails_cleanly(busy_dst, bytes(bad), "digest mismatch")
        assert blob[7:] in str(err)


def test_manifest_references_missing_blob(tmp_path: Path, busy_dst: LocalStore) -> None:
    scratch = LocalStore(tmp_path / "scratch")
    img = build_image(scratch, [layer_tar({"1": b"1"}), layer_tar({"2": b"2"})], oci=True)
    entry = {"mediaType": mt.OCI_MANIFEST, "digest": img.desc.digest, "size": img.desc.size}
    archive = oci_layout_tar([img.manifest.raw, img.config.raw, img.layers[0]], [entry])
    err = assert_fails_cleanly(busy_dst, archive, "missing")
    assert sha(img.layers[1]) in str(err)

    archive = oci_layout_tar([img.manifest.raw, *img.layers], [entry])  # no config
    err = assert_fails_cleanly(busy_dst, archive, "missing")
    assert img.config.id in str(err)

    archive = oci_layout_tar([img.config.raw, *img.layers], [entry])  # no manifest
    err = assert_fails_cleanly(busy_dst, archive, "missing")
    assert img.desc.digest in str(err)


def test_legacy_archive_missing_layer(tmp_path: Path, busy_dst: LocalStore) -> None:
    archive, _ = legacy_archive(LocalStore(tmp_path / "scratch"))
    files = [(m, c) for m, c in _entries(archive) if not m.startswith("1111")]  # drops the base layer
    err = assert_fails_cleanly(busy_dst, make_tar(files), "missing")
    assert "layer.tar" in str(err)


def _entries(archive: bytes) -> list:
    out: list = []
    with tarfile.open(fileobj=io.BytesIO(archive)) as tf:
        for m in tf:
            if m.isdir():
                out.append((m.name + "/", None))
            elif m.issym():
                out.append((m.name, ("symlink", m.linkname)))
            else:
                out.append((m.name, tf.extractfile(m).read()))
    return out


def test_random_bytes_and_empty_input(busy_dst: LocalStore) -> None:
    assert_fails_cleanly(busy_dst, random.Random(1).randbytes(64 * 1024), "invalid tar archive")
    assert_fails_cleanly(busy_dst, b"", "invalid tar archive")
    assert_fails_cleanly(busy_dst, b"\x1f\x8b" + os.urandom(100), "invalid tar archive")
    # a well-formed tar without either index.json or manifest.json
    assert_fails_cleanly(busy_dst, make_tar([("hello.txt", b"hi")]), "no index.json or manifest.json")


def test_diff_ids_count_mismatch(tmp_path: Path, busy_dst: LocalStore) -> None:
    scratch = LocalStore(tmp_path / "scratch")
    layer = layer_tar({"only": b"one"})
    config = model.new_config([sha(layer), sha(layer_tar({"two": b"2"}))], created="2024-01-01T00:00:00Z")
    manifest = model.build_manifest(model.Descriptor(mt.OCI_CONFIG, scratch.put(config.raw), len(config.raw)),
                                    [model.Descriptor(mt.OCI_LAYER, scratch.put(layer), len(layer))], oci=True)
    entry = {"mediaType": mt.OCI_MANIFEST, "digest": sha(manifest.raw), "size": len(manifest.raw)}
    archive = oci_layout_tar([manifest.raw, config.raw, layer], [entry])
    assert_fails_cleanly(busy_dst, archive, "2 diff_ids .* but 1 layers")

    legacy = make_tar([
        (f"{config.id[7:]}.json", config.raw),
        ("l/layer.tar", layer),
        ("manifest.json", json.dumps([{"Config": f"{config.id[7:]}.json", "RepoTags": ["x:1"],
                                       "Layers": ["l/layer.tar"]}]).encode()),
    ])
    assert_fails_cleanly(busy_dst, legacy, "2 diff_ids .* but 1 layers")


def test_bad_blob_name_in_legacy_config(tmp_path: Path, busy_dst: LocalStore) -> None:
    archive, _ = legacy_archive(LocalStore(tmp_path / "scratch"))
    tampered = [(m, (c[:-1] + b" }") if m.endswith(".json") and len(m) == 69 else c)
                for m, c in _entries(archive)]
    assert_fails_cleanly(busy_dst, make_tar(tampered), "digest mismatch")



def test_legacy_xz_layer_is_stored_uncompressed(tmp_path: Path, dst: LocalStore) -> None:
    layer = layer_tar({"xz": b"compressed with xz"})
    config = model.new_config([sha(layer)], created="2024-01-01T00:00:00Z")
    archive = make_tar([
        (f"{config.id[7:]}.json", config.raw),
        ("l/layer.tar", lzma.compress(layer)),
        ("manifest.json", json.dumps([{"Config": f"{config.id[7:]}.json", "RepoTags": ["xz:1"],
                                       "Layers": ["l/layer.tar"]}]).encode()),
    ])
    (img,) = load(dst, io.BytesIO(archive))
    assert [(d.media_type, d.digest, d.size) for d in img.manifest.layers] == [(mt.DOCKER_LAYER, sha(layer), len(layer))]
    # no schema2 media type for xz: the compressed copy is not kept
    assert {b.digest for b in dst.walk()} == {img.manifest.digest, config.id, sha(layer)}


def test_oci_manifest_without_layers_falls_back_to_manifest_json(tmp_path: Path, dst: LocalStore) -> None:
    """docker 25.0's graphdriver save wrote OCI manifests that lacked the image's layers."""
    scratch = LocalStore(tmp_path / "scratch")
    img = build_image(scratch, [layer_tar({"a": b"a"})], oci=True)
    broken = model.build_manifest(img.manifest.config, [], oci=True)
    entry = {"mediaType": mt.OCI_MANIFEST, "digest": sha(broken.raw), "size": len(broken.raw),
             "annotations": {mt.ANNOTATION_IMAGE_NAME: "docker.io/library/old:25", mt.ANNOTATION_REF_NAME: "25"}}
    manifest_json = json.dumps([{"Config": f"blobs/sha256/{img.config.id[7:]}", "RepoTags": ["old:25"],
                                 "Layers": [f"blobs/sha256/{sha(img.layers[0])[7:]}"]}]).encode()
    archive = oci_layout_tar([broken.raw, img.config.raw, *img.layers], [entry], [("manifest.json", manifest_json)])
    (loaded,) = load(dst, io.BytesIO(archive))
    assert loaded.config.id == img.config.id
    assert [d.digest for d in loaded.manifest.layers] == [sha(img.layers[0])]
    assert loaded.names == ["docker.io/library/old:25"]
    loaded_blobs_ok(dst, loaded)


def test_oversized_metadata_is_rejected(busy_dst: LocalStore) -> None:
    huge = b"[" + b" " * (16 << 20) + b"]"
    assert_fails_cleanly(busy_dst, make_tar([("manifest.json", huge)]), "too large")


def test_save_checks_everything_before_writing(src: LocalStore, busybox: Img) -> None:
    src.delete(sha(busybox.layers[1]))
    out = io.BytesIO()
    with pytest.raises(NotFound):
        save(src, [ExportImage(busybox.desc, ["docker.io/library/busybox:latest"])], out)
    assert out.getvalue() == b""

    index = model.build_index([busybox.desc])
    desc = model.Descriptor(mt.OCI_INDEX, src.put(index.raw), len(index.raw))
    with pytest.raises(InvalidArgument, match="index"):
        save(src, [ExportImage(desc, [])], out)
    assert out.getvalue() == b""
