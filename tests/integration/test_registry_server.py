"""dockyard's registry server (issue 9), over HTTP as the distribution spec v1.1 has it:
uploads (monolithic, chunked, streamed, out of order, cancelled, mounted), blobs (HEAD, GET,
Range, DELETE), manifests (by tag and digest, byte for byte, missing blobs refused), tags
and catalog pagination, referrers, the spec's errors, garbage collection, and basic auth /
read-only mode. Real clients are in test_registry_clients.py."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.dyregistry import DyRegistry, start_dyregistry


@pytest.fixture
def reg(tmp_path: Path) -> Iterator[DyRegistry]:
    yield from start_dyregistry(tmp_path / "reg")


class Client:
    def __init__(self, reg: DyRegistry, auth: tuple[str, str] | None = None) -> None:
        self.host, self.port = reg.host.split(":")
        self.auth = auth

    def __call__(self, method: str, path: str, body: bytes | None = None,
                 headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.host, int(self.port), timeout=30)
        h = dict(headers or {})
        if self.auth:
            h["Authorization"] = "Basic " + base64.b64encode(":".join(self.auth).encode()).decode()
        conn.request(method, path, body=body, headers=h)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _error(body: bytes) -> str:
    return json.loads(body)["errors"][0]["code"]


def _push_blob(c: Client, name: str, data: bytes) -> str:
    digest = _digest(data)
    status, h, _ = c("POST", f"/v2/{name}/blobs/uploads/?digest={digest}", data)
    assert status == 201 and h["docker-content-digest"] == digest
    return digest


def _manifest(c: Client, name: str, layers: list[bytes], media: str = "application/vnd.oci.image.manifest.v1+json",
              **extra: object) -> bytes:
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    cfg = _push_blob(c, name, config)
    doc = {"schemaVersion": 2, "mediaType": media,
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": len(config)},
           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": _push_blob(c, name, lay),
                       "size": len(lay)} for lay in layers], **extra}
    return json.dumps(doc, indent=3).encode()  # indented: bytes a re-serialisation would change


def test_base_and_errors(reg: DyRegistry) -> None:
    c = Client(reg)
    status, h, body = c("GET", "/v2/")
    assert status == 200 and h["docker-distribution-api-version"] == "registry/2.0"
    for path, code, want in [
        ("/v2/UPPER/tags/list", 400, "NAME_INVALID"),
        ("/v2/a//b/tags/list", 400, "NAME_INVALID"),
        ("/v2/nothere/tags/list", 404, "NAME_UNKNOWN"),
        ("/v2/nothere/manifests/latest", 404, "NAME_UNKNOWN"),
        ("/v2/x/blobs/sha256:zz", 400, "DIGEST_INVALID"),
        (f"/v2/x/blobs/{_digest(b'none')}", 404, "BLOB_UNKNOWN"),
        ("/v2/x/blobs/uploads/00000000-0000-0000-0000-000000000000", 404, "BLOB_UPLOAD_UNKNOWN"),
    ]:
        status, h, body = c("GET", path)
        assert (status, _error(body)) == (code, want), (path, body)
        assert h["content-type"] == "application/json"


def test_uploads(reg: DyRegistry) -> None:
    c = Client(reg)
    data = os.urandom(300_000)
    digest = _digest(data)
    # POST, then PATCH chunks with Content-Range, a status check, an out-of-order chunk, PUT
    status, h, _ = c("POST", "/v2/lib/app/blobs/uploads/")
    assert status == 202 and h["range"] == "0-0" and h["docker-upload-uuid"]
    location = h["location"]
    status, h, _ = c("PATCH", location, data[:100_000], {"Content-Range": "0-99999",
                                                         "Content-Type": "application/octet-stream"})
    assert status == 202 and h["range"] == "0-99999"
    status, h, body = c("PATCH", location, data[200_000:], {"Content-Range": "200000-299999"})
    assert status == 416 and _error(body) == "RANGE_INVALID"
    status, h, _ = c("GET", location)
    assert status == 204 and h["range"] == "0-99999"
    status, h, _ = c("PATCH", location, data[100_000:200_000], {"Content-Range": "100000-199999"})
    assert status == 202
    status, h, _ = c("PUT", f"{location}?digest={digest}", data[200_000:], {"Content-Range": "200000-299999"})
    assert status == 201 and h["docker-content-digest"] == digest and h["location"] == f"/v2/lib/app/blobs/{digest}"
    status, h, body = c("HEAD", f"/v2/lib/app/blobs/{digest}")
    assert status == 200 and h["content-length"] == "300000" and h["docker-content-digest"] == digest and not body
    status, h, body = c("GET", f"/v2/lib/app/blobs/{digest}")
    assert status == 200 and body == data
    status, h, body = c("GET", f"/v2/lib/app/blobs/{digest}", headers={"Range": "bytes=10-19"})
    assert status == 206 and body == data[10:20] and h["content-range"] == "bytes 10-19/300000"

    # one streamed PATCH without Content-Range (docker's client), then PUT with no body
    other = os.urandom(50_000)
    status, h, _ = c("POST", "/v2/lib/app/blobs/uploads/")
    status, h, _ = c("PATCH", h["location"], other)
    assert status == 202 and h["range"] == "0-49999"
    status, h, _ = c("PUT", f"{h['location']}?digest={_digest(other)}")
    assert status == 201

    # a truncated upload: the digest does not match, nothing is stored, the upload is gone
    status, h, _ = c("POST", "/v2/lib/app/blobs/uploads/")
    location = h["location"]
    c("PATCH", location, data[:1000])
    status, h, body = c("PUT", f"{location}?digest={_digest(data[:2000])}")
    assert status == 400 and _error(body) == "DIGEST_INVALID"
    assert c("GET", f"/v2/lib/app/blobs/{_digest(data[:2000])}")[0] == 404
    assert c("GET", location)[0] == 404
    # a cancelled upload
    status, h, _ = c("POST", "/v2/lib/app/blobs/uploads/")
    assert c("DELETE", h["location"])[0] == 204
    assert _error(c("GET", h["location"])[2]) == "BLOB_UPLOAD_UNKNOWN"
    # a wrong digest in a monolithic POST
    status, h, body = c("POST", f"/v2/lib/app/blobs/uploads/?digest={_digest(b'x')}", b"y")
    assert status == 400 and _error(body) == "DIGEST_INVALID"

    # cross-repository mount: 201 when the source has it, else a plain upload (202)
    status, h, _ = c("POST", f"/v2/lib/other/blobs/uploads/?mount={digest}&from=lib/app")
    assert status == 201 and h["docker-content-digest"] == digest
    assert c("HEAD", f"/v2/lib/other/blobs/{digest}")[0] == 200
    status, h, _ = c("POST", f"/v2/lib/third/blobs/uploads/?mount={digest}&from=lib/nothere")
    assert status == 202 and "/blobs/uploads/" in h["location"]
    assert c("HEAD", f"/v2/lib/third/blobs/{digest}")[0] == 404  # a repository sees only its own blobs

    # blob DELETE unlinks it from the repository
    assert c("DELETE", f"/v2/lib/other/blobs/{digest}")[0] == 202
    assert c("HEAD", f"/v2/lib/other/blobs/{digest}")[0] == 404
    assert c("HEAD", f"/v2/lib/app/blobs/{digest}")[0] == 200


def test_manifests_tags_catalog(reg: DyRegistry) -> None:
    c = Client(reg)
    body = _manifest(c, "team/app", [b"layer-one", b"layer-two"])
    digest = _digest(body)
    media = "application/vnd.oci.image.manifest.v1+json"
    status, h, _ = c("PUT", "/v2/team/app/manifests/v1", body, {"Content-Type": media})
    assert status == 201 and h["docker-content-digest"] == digest and h["location"] == f"/v2/team/app/manifests/{digest}"
    for ref in ("v1", digest):
        status, h, got = c("GET", f"/v2/team/app/manifests/{ref}")
        assert status == 200 and got == body and h["content-type"] == media and h["docker-content-digest"] == digest
        status, h, got = c("HEAD", f"/v2/team/app/manifests/{ref}")
        assert status == 200 and not got and h["content-length"] == str(len(body))
    # a manifest naming a blob the repository lacks; invalid ones; a mismatched digest
    missing = json.loads(body)
    missing["layers"][0]["digest"] = _digest(b"never pushed")
    status, _, err = c("PUT", "/v2/team/app/manifests/bad", json.dumps(missing).encode(), {"Content-Type": media})
    assert status == 400 and _error(err) == "MANIFEST_BLOB_UNKNOWN"
    assert _error(c("PUT", "/v2/team/app/manifests/bad", b"{not json", {"Content-Type": media})[2]) == "MANIFEST_INVALID"
    assert _error(c("PUT", "/v2/team/app/manifests/bad!tag", body, {"Content-Type": media})[2]) == "TAG_INVALID"
    assert _error(c("PUT", f"/v2/team/app/manifests/{_digest(b'other')}", body,
                    {"Content-Type": media})[2]) == "DIGEST_INVALID"
    assert _error(c("GET", "/v2/team/app/manifests/bad")[2]) == "MANIFEST_UNKNOWN"
    # an index needs its manifests in the repository
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        {"mediaType": media, "digest": digest, "size": len(body), "platform": {"os": "linux", "architecture": "amd64"}}
    ]}).encode()
    assert c("PUT", "/v2/team/other/manifests/idx", index,
             {"Content-Type": "application/vnd.oci.image.index.v1+json"})[0] == 400
    assert c("PUT", "/v2/team/app/manifests/idx", index,
             {"Content-Type": "application/vnd.oci.image.index.v1+json"})[0] == 201

    # tags: pagination with n, last, and the Link header
    for tag in ("v2", "v3", "a"):
        assert c("PUT", f"/v2/team/app/manifests/{tag}", body, {"Content-Type": media})[0] == 201
    status, h, got = c("GET", "/v2/team/app/tags/list")
    assert json.loads(got) == {"name": "team/app", "tags": ["a", "idx", "v1", "v2", "v3"]}
    status, h, got = c("GET", "/v2/team/app/tags/list?n=2")
    assert json.loads(got)["tags"] == ["a", "idx"] and h["link"] == '</v2/team/app/tags/list?n=2&last=idx>; rel="next"'
    status, h, got = c("GET", "/v2/team/app/tags/list?n=2&last=idx")
    assert json.loads(got)["tags"] == ["v1", "v2"]
    status, h, got = c("GET", "/v2/_catalog?n=10")
    assert json.loads(got) == {"repositories": ["team/app"]} and "link" not in h

    # deletes: a tag alone, then the manifest with every tag naming it
    assert c("DELETE", "/v2/team/app/manifests/a")[0] == 202
    assert c("GET", "/v2/team/app/manifests/v1")[0] == 200
    assert c("DELETE", f"/v2/team/app/manifests/{digest}")[0] == 202
    assert json.loads(c("GET", "/v2/team/app/tags/list")[2])["tags"] == ["idx"]
    assert _error(c("GET", f"/v2/team/app/manifests/{digest}")[2]) == "MANIFEST_UNKNOWN"


def test_docker_schema2_and_referrers(reg: DyRegistry) -> None:
    c = Client(reg)
    docker_type = "application/vnd.docker.distribution.manifest.v2+json"
    image = _manifest(c, "r", [b"l"], media=docker_type)
    assert c("PUT", "/v2/r/manifests/latest", image, {"Content-Type": docker_type})[0] == 201
    subject = {"mediaType": docker_type, "digest": _digest(image), "size": len(image)}
    sbom = _manifest(c, "r", [b"sbom"], subject=subject, artifactType="application/spdx+json",
                     annotations={"org.example": "yes"})
    status, h, _ = c("PUT", f"/v2/r/manifests/{_digest(sbom)}", sbom,
                     {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert status == 201 and h["oci-subject"] == _digest(image)
    status, h, got = c("GET", f"/v2/r/referrers/{_digest(image)}")
    doc = json.loads(got)
    assert status == 200 and doc["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert doc["manifests"] == [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": _digest(sbom),
                                 "size": len(sbom), "artifactType": "application/spdx+json",
                                 "annotations": {"org.example": "yes"}}]
    status, h, got = c("GET", f"/v2/r/referrers/{_digest(image)}?artifactType=application/other")
    assert json.loads(got)["manifests"] == [] and h["oci-filters-applied"] == "artifactType"


def test_garbage_collection(reg: DyRegistry) -> None:
    c = Client(reg)
    media = "application/vnd.oci.image.manifest.v1+json"
    keep = _manifest(c, "gc/keep", [b"kept layer"])
    assert c("PUT", "/v2/gc/keep/manifests/v1", keep, {"Content-Type": media})[0] == 201
    drop = _manifest(c, "gc/drop", [b"dropped layer"])
    assert c("PUT", "/v2/gc/drop/manifests/v1", drop, {"Content-Type": media})[0] == 201
    assert c("DELETE", f"/v2/gc/drop/manifests/{_digest(drop)}")[0] == 202
    gc = [sys.executable, "-m", "dockyard.cli.main", "registry", "gc", "--root", str(reg.root / "data")]
    dry = subprocess.run([*gc, "--dry-run"], capture_output=True, text=True, check=True).stdout
    assert _digest(b"dropped layer") in dry and _digest(drop) in dry and _digest(b"kept layer") not in dry
    assert c("GET", f"/v2/gc/drop/blobs/{_digest(b'dropped layer')}")[0] == 200  # a dry run deletes nothing
    out = subprocess.run(gc, capture_output=True, text=True, check=True).stdout
    assert f"deleted {_digest(b'dropped layer')}" in out
    assert c("GET", f"/v2/gc/drop/blobs/{_digest(b'dropped layer')}")[0] == 404
    assert c("GET", "/v2/gc/keep/manifests/v1")[2] == keep
    assert c("GET", f"/v2/gc/keep/blobs/{_digest(b'kept layer')}")[2] == b"kept layer"


@pytest.fixture
def auth_reg(tmp_path: Path) -> Iterator[DyRegistry]:
    from tests.fixtures.registry import write_htpasswd

    (tmp_path / "a").mkdir()
    path = write_htpasswd(tmp_path / "a" / "htpasswd", {"alice": "s3cret"})
    yield from start_dyregistry(tmp_path / "reg", "--htpasswd", str(path))


def test_basic_auth_and_read_only(auth_reg: DyRegistry, tmp_path: Path) -> None:
    status, h, body = Client(auth_reg)("GET", "/v2/")
    assert status == 401 and _error(body) == "UNAUTHORIZED" and h["www-authenticate"].startswith("Basic realm=")
    assert Client(auth_reg, ("alice", "wrong"))("GET", "/v2/")[0] == 401
    c = Client(auth_reg, ("alice", "s3cret"))
    assert c("GET", "/v2/")[0] == 200
    digest = _push_blob(c, "priv/app", b"secret layer")
    assert Client(auth_reg)("GET", f"/v2/priv/app/blobs/{digest}")[0] == 401

    for ro in start_dyregistry(tmp_path / "ro", "--read-only"):
        c = Client(ro)
        status, _, body = c("POST", "/v2/x/blobs/uploads/")
        assert status == 405 and _error(body) == "UNSUPPORTED"
        assert c("GET", "/v2/")[0] == 200


def test_online_collection_keeps_young_blobs(tmp_path: Path) -> None:
    """While serving, a blob pushed a moment ago may still be waiting for its manifest."""
    from dockyard.registry.storage import RegistryStore

    store = RegistryStore(str(tmp_path / "root"))
    up = store.start_upload("a/b")
    up.writer.write(b"orphan")
    store.finish_upload(up, _digest(b"orphan"))
    assert store.collect(min_age=3600) == []  # online: too young to go
    assert store.collect() == [_digest(b"orphan")]  # offline: unreferenced is unreferenced


def test_bad_requests_leave_nothing(tmp_path: Path) -> None:
    """A client gone mid-upload, a manifest over the limit, a body over --max-body: errors
    in the spec's shape, nothing stored, and the server keeps serving."""
    import socket

    for reg in start_dyregistry(tmp_path / "reg", "--max-body", "100000"):
        c = Client(reg)
        status, h, _ = c("POST", "/v2/x/y/blobs/uploads/")
        location = h["location"]
        host, port = reg.host.split(":")
        with socket.create_connection((host, int(port))) as s:  # promises 1 MB, sends 10 kB, goes
            s.sendall(f"PATCH {location} HTTP/1.1\r\nHost: {reg.host}\r\nContent-Length: 1000000\r\n\r\n".encode()
                      + b"x" * 10_000)
        status, h, _ = c("GET", location)  # the upload is still there, with what arrived (or less)
        assert status == 204 and int(h["range"].split("-")[1]) <= 9_999
        assert c("PUT", f"{location}?digest={_digest(b'x' * 1_000_000)}")[0] == 400  # never complete
        assert c("GET", "/v2/")[0] == 200

        big = b"x" * 200_000
        status, _, body = c("POST", f"/v2/x/y/blobs/uploads/?digest={_digest(big)}", big)
        assert status == 413 and _error(body) == "PAYLOAD_TOO_LARGE"
        manifest = json.dumps({"schemaVersion": 2, "pad": "x" * (5 << 20)}).encode()
        status, _, body = c("PUT", "/v2/x/y/manifests/v1", manifest,
                            {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
        assert status == 413 and _error(body) == "PAYLOAD_TOO_LARGE"
        blobs = reg.root / "data" / "content" / "blobs" / "sha256"
        assert list(blobs.iterdir()) == []  # nothing stored by any of it
        assert c("GET", "/v2/_catalog")[2] == b'{"repositories": []}'


def test_stale_uploads_are_collected(tmp_path: Path) -> None:
    from dockyard.registry.storage import RegistryStore

    root = str(tmp_path / "root")
    up = RegistryStore(root).start_upload("a/b")
    up.writer.write(b"partial")
    up.writer.close()  # the server that started it is gone
    later = RegistryStore(root)
    assert later.upload("a/b", up.id).writer.offset == 7  # resumable meanwhile
    later.upload("a/b", up.id).writer.close()
    fresh = RegistryStore(root)
    fresh.collect(stale_upload_age=0)
    with pytest.raises(Exception, match="BLOB_UPLOAD_UNKNOWN"):
        fresh.upload("a/b", up.id)


def test_config_file_and_bad_flags(tmp_path: Path) -> None:
    from tests.fixtures.registry import write_htpasswd

    (tmp_path / "a").mkdir()
    htpasswd = write_htpasswd(tmp_path / "a" / "htpasswd", {"alice": "pw"})
    config = tmp_path / "config.yml"  # JSON is YAML: the distribution registry's keys
    config.write_text(json.dumps({"version": "0.1", "storage": {"maintenance": {"readonly": {"enabled": True}}},
                                  "auth": {"htpasswd": {"realm": "r", "path": str(htpasswd)}}}))
    for reg in start_dyregistry(tmp_path / "reg", "--config", str(config)):
        assert Client(reg)("GET", "/v2/")[0] == 401
        c = Client(reg, ("alice", "pw"))
        assert c("GET", "/v2/")[0] == 200 and c("POST", "/v2/x/blobs/uploads/")[0] == 405

    serve = [sys.executable, "-m", "dockyard.cli.main", "registry", "serve", "--addr", "127.0.0.1:0",
             "--root", str(tmp_path / "bad")]
    for extra, message in [
        (["--tls-cert", str(htpasswd)], "--tls-cert needs --tls-key"),
        (["--htpasswd", str(tmp_path / "missing")], "No such file or directory"),
        (["--token-realm", "http://x/token"], "token auth needs --token-realm, --token-service"),
    ]:
        res = subprocess.run([*serve, *extra], capture_output=True, text=True, timeout=30)
        assert res.returncode == 1 and message in res.stderr and len(res.stderr.strip().splitlines()) == 1, res
    res = subprocess.run([*serve[:-4], "--addr", "nonsense"], capture_output=True, text=True, timeout=30)
    assert res.returncode != 0 and "invalid --addr" in res.stderr


def test_one_writer_per_upload(reg: DyRegistry) -> None:
    """A second request on an upload while one is still sending its body: 416, and the
    first one's bytes are what the upload holds."""
    import socket

    c = Client(reg)
    status, h, _ = c("POST", "/v2/w/x/blobs/uploads/")
    location = h["location"]
    host, port = reg.host.split(":")
    with socket.create_connection((host, int(port))) as slow:
        slow.sendall(f"PATCH {location} HTTP/1.1\r\nHost: {reg.host}\r\nContent-Length: 20\r\n\r\n".encode()
                     + b"0123456789")
        import time

        deadline = time.monotonic() + 10
        while c("GET", location)[1]["range"] != "0-9":  # its first half has reached the upload
            assert time.monotonic() < deadline, "the first request's bytes never arrived"
            time.sleep(0.01)
        status, _, body = c("PATCH", location, b"other", {"Content-Range": "10-14"})
        assert status == 416 and _error(body) == "RANGE_INVALID"
        slow.sendall(b"abcdefghij")
        assert slow.recv(4096).startswith(b"HTTP/1.1 202")
    data = b"0123456789abcdefghij"
    assert c("PUT", f"{location}?digest={_digest(data)}")[0] == 201
    assert c("GET", f"/v2/w/x/blobs/{_digest(data)}")[2] == data
