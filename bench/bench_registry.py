"""Registry server benchmark (issue 9): dockyard's registry against the CNCF distribution
registry (Debian's docker-registry), side by side in one run, both on 127.0.0.1 with a
fresh root on the same disk:

1. push: ``skopeo copy`` of an OCI layout (one big layer of --mib MiB plus a config) into
   the registry;
2. pull: the same image's blobs fetched back by ``skopeo copy`` into a dir: layout;
3. 50 concurrent pulls of one image (manifest, config, a --concurrent-mib layer), each by a
   client thread reading and discarding the bytes: aggregate throughput;
4. memory: the server's peak RSS (VmHWM) over the whole run — bounded while it serves
   multi-GB of blobs.

    sudo python bench/bench_registry.py [--mib 1024] [--concurrent-mib 64] [--clients 50]
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.fixtures.dyregistry import start_dyregistry  # noqa: E402
from tests.fixtures.registry import REGISTRY_BIN, start_registry  # noqa: E402


def make_layout(path: Path, layer_mib: int) -> tuple[str, int]:
    """An OCI layout with one image: a layer of random bytes (declared gzip, so skopeo sends
    it as it is rather than compressing it on the way) and a config. Returns the layer's
    digest and size."""
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    h = hashlib.sha256()
    tmp = blobs / "layer.tmp"
    with open(tmp, "wb") as f:
        for _ in range(layer_mib):
            block = os.urandom(1 << 20)
            f.write(block)
            h.update(block)
    layer = "sha256:" + h.hexdigest()
    tmp.rename(blobs / layer.split(":")[1])

    def put(doc: dict) -> tuple[str, int]:
        data = json.dumps(doc).encode()
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        (blobs / digest.split(":")[1]).write_bytes(data)
        return digest, len(data)

    config = put({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [layer]}})
    manifest = put({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config[0],
                               "size": config[1]},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer,
                                "size": layer_mib << 20}]})
    (path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest[0], "size": manifest[1],
         "annotations": {"org.opencontainers.image.ref.name": "v1"}}]}))
    return layer, layer_mib << 20


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def concurrent_pulls(host: str, name: str, clients: int) -> float:
    """Seconds for ``clients`` threads to each fetch the manifest, the config and the layer."""
    addr, port = host.split(":")

    def get(conn: http.client.HTTPConnection, path: str, accept: str = "*/*", size: int | None = None) -> bytes:
        conn.request("GET", path, headers={"Accept": accept})
        resp = conn.getresponse()
        assert resp.status == 200, (path, resp.status)
        data, n = b"", 0
        while chunk := resp.read(1 << 20):
            n += len(chunk)
            if len(data) < (1 << 20):
                data += chunk
        assert size is None or n == size, (path, n, size)
        return data

    errors: list[BaseException] = []

    def pull() -> None:
        try:
            conn = http.client.HTTPConnection(addr, int(port), timeout=120)
            manifest = json.loads(get(conn, f"/v2/{name}/manifests/v1", "application/vnd.oci.image.manifest.v1+json"))
            get(conn, f"/v2/{name}/blobs/{manifest['config']['digest']}")
            for layer in manifest["layers"]:
                get(conn, f"/v2/{name}/blobs/{layer['digest']}", size=layer["size"])
            conn.close()
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=pull) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    assert not errors, errors[:3]
    return elapsed


def raw_push(host: str, name: str, blob: Path) -> float:
    """Seconds to upload ``blob`` in one streamed PATCH and a closing PUT (docker's way)."""
    import hashlib as _h

    digest = "sha256:" + _h.sha256(blob.read_bytes()).hexdigest()
    addr, port = host.split(":")
    conn = http.client.HTTPConnection(addr, int(port), timeout=300)
    start = time.perf_counter()
    conn.request("POST", f"/v2/{name}/blobs/uploads/")
    resp = conn.getresponse()
    resp.read()
    location = resp.headers["Location"]
    with open(blob, "rb") as f:
        conn.request("PATCH", location, body=f, headers={"Content-Length": str(blob.stat().st_size),
                                                         "Content-Type": "application/octet-stream"})
        resp = conn.getresponse()
        resp.read()
    assert resp.status == 202, resp.status
    location = resp.headers["Location"]
    conn.request("PUT", f"{location}{'&' if '?' in location else '?'}digest={digest}", body=b"")
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 201, resp.status
    return time.perf_counter() - start


def raw_pull(host: str, name: str, digest: str, size: int) -> float:
    addr, port = host.split(":")
    conn = http.client.HTTPConnection(addr, int(port), timeout=300)
    start = time.perf_counter()
    conn.request("GET", f"/v2/{name}/blobs/{digest}")
    resp = conn.getresponse()
    n = 0
    while chunk := resp.read(1 << 20):
        n += len(chunk)
    assert n == size, (n, size)
    return time.perf_counter() - start


def measure(kind: str, servers: Iterator, work: Path, big: Path, small: Path, mib: int, small_mib: int,
            clients: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for reg in servers:
        host = reg.host
        flags = ["--dest-tls-verify=false"]
        start = time.perf_counter()
        subprocess.run(["skopeo", "copy", "-q", *flags, f"oci:{big}:v1", f"docker://{host}/bench/big:v1"], check=True)
        out["push"] = mib / (time.perf_counter() - start)
        dest = work / f"pulled-{kind}"
        start = time.perf_counter()
        subprocess.run(["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{host}/bench/big:v1",
                        f"dir:{dest}"], check=True)
        out["pull"] = mib / (time.perf_counter() - start)
        assert sum(f.stat().st_size for f in dest.iterdir()) >= mib << 20, "the pull did not fetch the layer"
        shutil.rmtree(dest)
        subprocess.run(["skopeo", "copy", "-q", *flags, f"oci:{small}:v1", f"docker://{host}/bench/small:v1"],
                       check=True)
        elapsed = concurrent_pulls(host, "bench/small", clients)
        out["concurrent"] = clients * small_mib / elapsed
        out["concurrent_s"] = elapsed
        blob = next(p for p in (big / "blobs" / "sha256").iterdir() if p.stat().st_size == mib << 20)
        out["raw_push"] = mib / raw_push(host, "bench/raw", blob)
        out["raw_pull"] = mib / raw_pull(host, "bench/raw", "sha256:" + blob.name, mib << 20)
        out["rss"] = peak_rss_mb(reg.proc.pid)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=1024, help="the big image's layer, MiB")
    ap.add_argument("--concurrent-mib", type=int, default=64, help="the concurrently pulled image's layer, MiB")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--workdir", default="/var/tmp")
    args = ap.parse_args()
    if shutil.which("skopeo") is None:
        sys.exit("bench_registry: skopeo is needed (apt install skopeo)")
    work = Path(tempfile.mkdtemp(prefix="dockyard-bench-registry-", dir=args.workdir))
    try:
        make_layout(work / "big", args.mib)
        make_layout(work / "small", args.concurrent_mib)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        results = {"dockyard": measure("dockyard", start_dyregistry(work / "dyreg", env=env), work, work / "big",
                                       work / "small", args.mib, args.concurrent_mib, args.clients)}
        if REGISTRY_BIN:
            results["docker-registry"] = measure("distribution", start_registry(work / "distribution"), work,
                                                 work / "big", work / "small", args.mib, args.concurrent_mib,
                                                 args.clients)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    names = list(results)
    print("| measurement | " + " | ".join(names) + (" | dockyard / docker-registry |" if len(names) > 1 else " |"))
    print("| --- |" + " --- |" * (len(names) + (1 if len(names) > 1 else 0)))
    rows = [("push", f"push {args.mib} MiB (skopeo copy oci: -> registry), MiB/s"),
            ("pull", f"pull {args.mib} MiB (skopeo copy registry -> dir:), MiB/s"),
            ("raw_push", f"push {args.mib} MiB, one streamed PATCH + PUT (Python client), MiB/s"),
            ("raw_pull", f"pull {args.mib} MiB, one GET (Python client), MiB/s"),
            ("concurrent", f"{args.clients} concurrent pulls of a {args.concurrent_mib} MiB image, aggregate MiB/s"),
            ("rss", "server peak RSS over the run, MB")]
    for key, label in rows:
        values = [results[n][key] for n in names]
        ratio = f" | {values[0] / values[1]:.2f}x" if len(values) > 1 and values[1] else ""
        print(f"| {label} | " + " | ".join(f"{v:.0f}" for v in values) + ratio + " |")


if __name__ == "__main__":
    main()
