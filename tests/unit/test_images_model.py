"""Image model: manifests, indexes, configs, chain IDs, platforms, --change, metadata."""

from __future__ import annotations

import hashlib
import json

import pytest

from dockyard.errors import DataCorruption, InvalidArgument, NotFound
from dockyard.images import mediatypes as mt
from dockyard.images.changes import apply_change
from dockyard.images.metadata import ImageRecord, MetadataStore
from dockyard.images.model import (
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    build_manifest,
    chain_ids,
    new_config,
    parse_manifest_or_index,
    parse_platform,
    platform_matches,
)

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64


def test_chain_ids_follow_the_oci_definition() -> None:
    c = chain_ids([D1, D2, D3])
    assert c[0] == D1
    assert c[1] == "sha256:" + hashlib.sha256(f"{D1} {D2}".encode()).hexdigest()
    assert c[2] == "sha256:" + hashlib.sha256(f"{c[1]} {D3}".encode()).hexdigest()
    assert chain_ids([]) == []


def test_image_id_is_sha256_of_config_bytes() -> None:
    cfg = new_config([D1], created="2024-01-01T00:00:00Z", config={"Cmd": ["sh"]})
    assert cfg.id == "sha256:" + hashlib.sha256(cfg.raw).hexdigest()
    parsed = ImageConfig.parse(cfg.raw)
    assert parsed.id == cfg.id and parsed.diff_ids == [D1] and parsed.config["Cmd"] == ["sh"]


@pytest.mark.parametrize("oci", [False, True])
def test_manifest_round_trip(oci: bool) -> None:
    m = build_manifest(Descriptor(mt.DOCKER_CONFIG, D1, 10), [Descriptor(mt.DOCKER_LAYER_GZIP, D2, 20)], oci=oci)
    parsed = parse_manifest_or_index(m.raw)
    assert isinstance(parsed, Manifest)
    assert parsed.media_type == (mt.OCI_MANIFEST if oci else mt.DOCKER_MANIFEST)
    assert parsed.config.digest == D1 and parsed.layers[0].size == 20
    assert parsed.digest == "sha256:" + hashlib.sha256(m.raw).hexdigest()


def test_index_and_media_type_sniffing() -> None:
    raw = json.dumps({"schemaVersion": 2, "manifests": [{"mediaType": mt.OCI_MANIFEST, "digest": D1, "size": 5,
                                                         "platform": {"os": "linux", "architecture": "amd64"}}]}).encode()
    idx = parse_manifest_or_index(raw)
    assert isinstance(idx, Index) and idx.media_type == mt.OCI_INDEX
    raw_ml = json.dumps({"schemaVersion": 2, "mediaType": mt.DOCKER_MANIFEST_LIST, "manifests": []}).encode()
    assert parse_manifest_or_index(raw_ml).media_type == mt.DOCKER_MANIFEST_LIST


@pytest.mark.parametrize("raw,err", [
    (b"{not json", DataCorruption),
    (b"[]", DataCorruption),
    (json.dumps({"schemaVersion": 1, "fsLayers": []}).encode(), InvalidArgument),
    (json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "config": {"digest": "sha256:zz", "size": 1}, "layers": []}).encode(), InvalidArgument),
    (json.dumps({"schemaVersion": 2, "mediaType": "application/x-unknown"}).encode(), InvalidArgument),
])
def test_bad_manifests(raw: bytes, err: type) -> None:
    with pytest.raises(err):
        parse_manifest_or_index(raw)


def test_schema1_is_refused_clearly() -> None:
    raw = json.dumps({"schemaVersion": 1, "mediaType": mt.DOCKER_MANIFEST_V1_SIGNED}).encode()
    with pytest.raises(InvalidArgument, match="schema 1"):
        parse_manifest_or_index(raw)


def test_config_rootfs_validated() -> None:
    with pytest.raises(DataCorruption):
        ImageConfig.parse(json.dumps({"rootfs": {"type": "other", "diff_ids": []}}).encode())
    with pytest.raises(InvalidArgument):
        ImageConfig.parse(json.dumps({"rootfs": {"type": "layers", "diff_ids": ["nope"]}}).encode())


@pytest.mark.parametrize("spec,want", [
    ("linux/amd64", {"os": "linux", "architecture": "amd64"}),
    ("amd64", {"os": "linux", "architecture": "amd64"}),
    ("linux/arm64", {"os": "linux", "architecture": "arm64", "variant": "v8"}),
    ("linux/arm/v7", {"os": "linux", "architecture": "arm", "variant": "v7"}),
])
def test_parse_platform(spec: str, want: dict) -> None:
    assert parse_platform(spec) == want


def test_platform_matching() -> None:
    assert platform_matches({"os": "linux", "architecture": "arm64", "variant": "v8"}, {"os": "linux", "architecture": "arm64"})
    assert not platform_matches({"os": "linux", "architecture": "amd64"}, {"os": "windows", "architecture": "amd64"})
    assert not platform_matches({"os": "linux", "architecture": "arm", "variant": "v7"}, {"os": "linux", "architecture": "arm", "variant": "v6"})
    with pytest.raises(InvalidArgument):
        parse_platform("linux//")


@pytest.mark.parametrize("change,key,value", [
    ('CMD ["sh", "-c", "x"]', "Cmd", ["sh", "-c", "x"]),
    ("CMD echo hi", "Cmd", ["/bin/sh", "-c", "echo hi"]),
    ('ENTRYPOINT ["/e"]', "Entrypoint", ["/e"]),
    ("ENV A=1 B=\"two words\"", "Env", ["A=1", "B=two words"]),
    ("ENV A legacy form", "Env", ["A=legacy form"]),
    ("LABEL a=b c=d", "Labels", {"a": "b", "c": "d"}),
    ("EXPOSE 80 443/TCP 53/udp", "ExposedPorts", {"80/tcp": {}, "443/tcp": {}, "53/udp": {}}),
    ("VOLUME /data /logs", "Volumes", {"/data": {}, "/logs": {}}),
    ('VOLUME ["/x"]', "Volumes", {"/x": {}}),
    ("USER 1000:1000", "User", "1000:1000"),
    ("WORKDIR /srv", "WorkingDir", "/srv"),
    ("workdir rel", "WorkingDir", "/rel"),
    ("STOPSIGNAL SIGTERM", "StopSignal", "SIGTERM"),
    ("ONBUILD RUN x", "OnBuild", ["RUN x"]),
])
def test_changes(change: str, key: str, value: object) -> None:
    cfg: dict = {}
    apply_change(cfg, change)
    assert cfg[key] == value


def test_env_change_replaces_existing() -> None:
    cfg = {"Env": ["A=0", "PATH=/bin"]}
    apply_change(cfg, "ENV A=1")
    assert cfg["Env"] == ["PATH=/bin", "A=1"]


@pytest.mark.parametrize("change,msg", [
    ("ADD . /", "ADD is not a valid change command"),
    ("RUN x", "RUN is not a valid change command"),
    ("EXPOSE abc", "invalid containerPort"),
    ("USER", "requires exactly one argument"),
    ("ENV =x", "names can not be blank"),
])
def test_bad_changes(change: str, msg: str) -> None:
    with pytest.raises(InvalidArgument, match=msg):
        apply_change({}, change)


def test_metadata_store_tags_and_records(tmp_path) -> None:
    store = MetadataStore(str(tmp_path / "m.db"))
    rec = ImageRecord(D1, Descriptor(mt.DOCKER_MANIFEST, D2, 100), size=42)
    store.add(rec, tags=["docker.io/library/a:1"], digests=["docker.io/library/a@" + D2])
    assert store.by_tag("docker.io/library/a:1") == D1
    assert store.by_digest("docker.io/library/a@" + D2) == D1
    assert store.ids_with_prefix("111") == [D1] and store.ids_with_prefix("222") == []
    got = store.get(D1)
    assert got.size == 42 and got.tags == ["docker.io/library/a:1"] and got.manifest.digest == D2
    # moving a tag to another image
    store.add(ImageRecord(D3, Descriptor(mt.DOCKER_MANIFEST, D2, 100), size=1))
    assert store.tag("docker.io/library/a:1", D3) == D1
    assert store.get(D1).tags == [] and store.get(D3).tags == ["docker.io/library/a:1"]
    store.delete(D3)
    with pytest.raises(NotFound):
        store.get(D3)
    assert store.by_tag("docker.io/library/a:1") is None
    # a reopened store sees the same state (committed transactions)
    store.close()
    again = MetadataStore(str(tmp_path / "m.db"))
    assert again.exists(D1) and not again.exists(D3) and again.count() == 1
