"""The builder (issue 7) through POST /build: the dockyard CLI, the docker CLI's classic
builder (DOCKER_BUILDKIT=0) and docker-py build images from Dockerfiles; the images have the
config and layers the instructions say; failures are docker's messages and exit codes, with
nothing tagged and no container left."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import docker
import pytest

from tests.conftest import Daemon
from tests.fixtures.clients import CLIS, unique

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the daemon needs root")

DOCKERFILE = """\
# a comment
ARG BASE=busybox
FROM ${BASE}
ARG WHO=world
ENV GREETING="hello ${WHO}" \\
    OTHER=2
WORKDIR /app
COPY greeting.txt sub/ ./
COPY --chmod=0750 --chown=1000:1000 script.sh /usr/local/bin/
RUN echo "ran as $WHO with no_proxy=$no_proxy"; echo to-stderr >&2; cat greeting.txt > copied.txt
RUN <<EOF
echo heredoc > /app/heredoc.txt
EOF
LABEL org.example.name="the app" version=1
EXPOSE 8080 53/udp
VOLUME /data
USER 1000
STOPSIGNAL SIGUSR1
HEALTHCHECK --interval=5s --retries=2 CMD true
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /app/greeting.txt /app/a /app/copied.txt /app/heredoc.txt"]
"""


def _context(tmp_path: Path, dockerfile: str = DOCKERFILE) -> Path:
    ctx = tmp_path / "ctx"
    (ctx / "sub").mkdir(parents=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    (ctx / "greeting.txt").write_text("hello\n")
    (ctx / "sub" / "a").write_text("from sub\n")
    (ctx / "script.sh").write_text("#!/bin/sh\necho script\n")
    return ctx


def _left_containers(d: Daemon) -> set[str]:
    return set(d.cli("ps", "-a", "-q", "--no-trunc").stdout.split())


@pytest.mark.parametrize("kind", CLIS)
def test_build_and_run(cli: Daemon, kind: str, tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    name = f"{unique('built')}:v1"
    before = _left_containers(cli)
    res = cli.client(kind)("build", "--no-cache", "-t", name, "--build-arg", "WHO=you", "--build-arg",
                           "no_proxy=example.test", str(ctx))
    out = res.stdout
    assert "Step 1/17 : ARG BASE=busybox" in out and "Step 2/17 : FROM ${BASE}" in out, out
    assert "ran as you with no_proxy=example.test" in out and "\x1b[91mto-stderr\n\x1b[0m" in out
    image_id = json.loads(cli.cli("image", "inspect", name).stdout)[0]["Id"]
    assert f"Successfully built {image_id.removeprefix('sha256:')[:12]}" in out
    assert out.rstrip().endswith(f"Successfully tagged {name}") or f"Successfully tagged {name}" in out
    config = json.loads(cli.cli("image", "inspect", name).stdout)[0]["Config"]
    assert "GREETING=hello you" in config["Env"] and "OTHER=2" in config["Env"]
    assert not any(e.startswith(("WHO=", "no_proxy=")) for e in config["Env"])  # ARGs are not kept
    assert config["WorkingDir"] == "/app" and config["User"] == "1000" and config["StopSignal"] == "SIGUSR1"
    assert config["Labels"] == {"org.example.name": "the app", "version": "1"}
    assert config["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}} and config["Volumes"] == {"/data": {}}
    assert config["Healthcheck"] == {"Test": ["CMD-SHELL", "true"], "Interval": 5_000_000_000, "Retries": 2}
    assert config["Entrypoint"] == ["/bin/sh", "-c"]
    assert config["Cmd"] == ["cat /app/greeting.txt /app/a /app/copied.txt /app/heredoc.txt"]
    run = cli.cli("run", "--rm", "--user", "0", name).stdout
    assert run == "hello\nfrom sub\nhello\nheredoc\n"
    listing = cli.cli("run", "--rm", "--user", "0", "--entrypoint", "ls", name, "-ln", "/usr/local/bin/script.sh").stdout
    assert listing.startswith("-rwxr-x---") and " 1000 " in listing
    history = cli.cli("image", "history", "--no-trunc", name).stdout.splitlines()
    assert "#(nop)  CMD" in history[1] and len(history) > 17
    assert _left_containers(cli) == before  # intermediate containers removed
    cli.cli("rmi", name)


def test_docker_py_build(cli: Daemon, tmp_path: Path) -> None:
    ctx = _context(tmp_path, "FROM busybox\nRUN echo built > /built\nCMD [\"cat\", \"/built\"]\n")
    client = docker.DockerClient(base_url=cli.host)
    try:
        name = f"{unique('py')}:v1"
        image, logs = client.images.build(path=str(ctx), tag=name, rm=True)
        assert any("Successfully built" in chunk.get("stream", "") for chunk in logs)
        assert image.id == client.images.get(name).id
        assert client.containers.run(name, remove=True) == b"built\n"
        with pytest.raises(docker.errors.BuildError) as err:
            client.images.build(fileobj=_fileobj("FROM busybox\nRUN exit 7\n"), tag=f"{unique('py')}:bad", forcerm=True)
        assert "returned a non-zero code: 7" in str(err.value)
        client.images.remove(name)
    finally:
        client.close()


def _fileobj(dockerfile: str):  # noqa: ANN202 - a BytesIO
    import io

    return io.BytesIO(dockerfile.encode())


@pytest.mark.parametrize("kind", CLIS)
def test_failing_run_exit_code(cli: Daemon, kind: str, tmp_path: Path) -> None:
    ctx = _context(tmp_path, "FROM busybox\nRUN echo before\nRUN exit 3\nCMD true\n")
    name = f"{unique('fails')}:v1"
    before = _left_containers(cli)
    res = cli.client(kind)("build", "-t", name, str(ctx), check=False)
    assert res.returncode == 3, (res.stdout, res.stderr)
    assert "The command '/bin/sh -c exit 3' returned a non-zero code: 3" in res.stderr
    assert cli.cli("image", "inspect", name, check=False).returncode == 1  # nothing tagged
    assert _left_containers(cli) == before


@pytest.mark.parametrize(("dockerfile", "message"), [
    ("FROM busybox\nRUN true\nRUNN false\n", "Dockerfile:3: unknown instruction: RUNN"),
    ("FROM busybox\nCOPY nope.txt /\n", "COPY failed: file not found in build context or excluded by "
                                        ".dockerignore: stat nope.txt: file does not exist"),
    ("RUN true\nFROM busybox\n", "Dockerfile:1: RUN is not allowed before FROM (only ARG is)"),
    ("# only a comment\n", "the Dockerfile (Dockerfile) cannot be empty"),
    ("FROM busybox\nHEALTHCHECK --interval=abc CMD true\n", "Dockerfile:2: invalid --interval: time: invalid duration \"abc\""),
])
@pytest.mark.parametrize("kind", CLIS)
def test_build_errors(cli: Daemon, kind: str, tmp_path: Path, dockerfile: str, message: str) -> None:
    ctx = _context(tmp_path, dockerfile)
    before = _left_containers(cli)
    res = cli.client(kind)("build", "-t", f"{unique('err')}:v1", str(ctx), check=False)
    assert res.returncode == 1
    assert message in res.stderr, res.stderr
    assert _left_containers(cli) == before


def test_cache_hits_misses_and_explanations(cli: Daemon, tmp_path: Path) -> None:
    # a step of its own first: the session daemon's cache has nothing on it
    ctx = _context(tmp_path, f"FROM busybox\nLABEL run={unique('r')}\nARG WHO=world\nENV GREETING=\"hi $WHO\"\n"
                             "COPY greeting.txt /g\nRUN echo ran $WHO > /ran\nLABEL x=1\n")
    name = f"{unique('cached')}:v1"
    first = cli.cli("build", "--explain-cache", "-t", name, str(ctx)).stdout
    assert "Using cache" not in first
    assert first.count(" ---> Cache miss: ") == 6  # every step after FROM ran
    image = json.loads(cli.cli("image", "inspect", name).stdout)[0]["Id"]
    again = cli.cli("build", "-t", name, str(ctx)).stdout
    assert again.count(" ---> Using cache") == 6 and "Running in" not in again
    assert json.loads(cli.cli("image", "inspect", name).stdout)[0]["Id"] == image
    # a source file changes: COPY and what follows run again, and --explain-cache says why
    (ctx / "greeting.txt").write_text("changed\n")
    changed = cli.cli("build", "--explain-cache", "-t", name, str(ctx)).stdout
    assert " ---> Cache miss: source files changed: greeting.txt" in changed
    assert changed.count(" ---> Using cache") == 3  # LABEL, ARG and ENV
    assert " ---> Cache miss: it follows a step that ran (Step 5/7)" in changed
    # a build arg changes: the ENV that expands it misses, saying which arg
    arg = cli.cli("build", "--explain-cache", "--build-arg", "WHO=you", "-t", name, str(ctx)).stdout
    assert " ---> Cache miss: build arg WHO changed ('world' -> 'you')" in arg, arg
    # --no-cache: nothing from the cache
    fresh = cli.cli("build", "--no-cache", "--explain-cache", "-t", name, str(ctx)).stdout
    assert "Using cache" not in fresh and fresh.count(" ---> Cache miss: --no-cache") == 6
    # the docker CLI sees the cache too (docker's own "Using cache" lines)
    via_docker = cli.docker("build", "-t", name, str(ctx)).stdout if shutil.which("docker") else " ---> Using cache" * 6
    assert via_docker.count(" ---> Using cache") == 6
    # intermediate images are hidden from `images`, shown with -a
    shown = cli.cli("images", "-q").stdout.split()
    everything = cli.cli("images", "-a", "-q").stdout.split()
    assert set(shown) < set(everything)
    cli.cli("rmi", name)


@pytest.mark.parametrize("kind", CLIS)
def test_multi_stage_target_and_dockerignore(cli: Daemon, kind: str, tmp_path: Path) -> None:
    ctx = _context(tmp_path, (
        "FROM busybox AS build\n"
        "COPY . /src\n"
        "RUN ls -A /src | sort > /listing && echo compiled > /artifact\n"
        "FROM busybox AS unused\n"
        "RUN exit 9\n"
        "FROM scratch AS final\n"
        "COPY --from=build /artifact /listing /out/\n"
        "COPY --from=0 /bin/busybox /bin/busybox\n"
        "CMD [\"/bin/busybox\", \"cat\", \"/out/artifact\", \"/out/listing\"]\n"
    ))
    (ctx / ".dockerignore").write_text("# not sent\nsecret*\nsub\n!sub/keep\n")
    (ctx / "secret.key").write_text("do not send\n")
    (ctx / "sub" / "keep").write_text("kept\n")
    name = f"{unique('stages')}:v1"
    res = cli.client(kind)("build", "--target", "build", "-t", name, str(ctx), check=False)
    assert res.returncode == 0, res.stderr  # --target build: the failing stage is never reached
    cli.cli("rmi", name)
    # the whole file: stage "unused" runs `exit 9` — docker's classic builder builds every stage
    res = cli.client(kind)("build", "-t", name, str(ctx), check=False)
    assert res.returncode == 9, res.stderr
    (ctx / "Dockerfile").write_text((ctx / "Dockerfile").read_text().replace("RUN exit 9\n", ""))
    cli.client(kind)("build", "-t", name, str(ctx))
    out = cli.cli("run", "--rm", name).stdout.split("\n")
    assert out[0] == "compiled"
    listing = out[1:]
    assert "Dockerfile" in listing and "greeting.txt" in listing and ".dockerignore" in listing
    assert "secret.key" not in listing  # excluded by .dockerignore
    assert "sub" in listing  # re-included for sub/keep only
    root = cli.cli("run", "--rm", "--entrypoint", "/bin/busybox", name, "ls", "/").stdout.split()
    assert "out" in root and "src" not in root  # only what the final stage copied
    cli.cli("rmi", name)


def test_add_archives_and_urls(cli: Daemon, tmp_path: Path) -> None:
    """ADD unpacks a local tar (any compression) at the destination; fetches a URL (here a
    server of the test's own on 127.0.0.1), checking --checksum."""
    import functools
    import hashlib
    import http.server
    import tarfile
    import threading

    ctx = _context(tmp_path, "FROM busybox\n")
    payload = tmp_path / "payload"
    (payload / "dir").mkdir(parents=True)
    (payload / "dir" / "inner.txt").write_text("inside the archive\n")
    with tarfile.open(ctx / "bundle.tar.gz", "w:gz") as tf:
        tf.add(payload / "dir", arcname="dir")
    served = tmp_path / "served"
    served.mkdir()
    (served / "remote.txt").write_text("fetched\n")
    digest = "sha256:" + hashlib.sha256(b"fetched\n").hexdigest()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/remote.txt"
    try:
        (ctx / "Dockerfile").write_text(f"FROM busybox\nADD bundle.tar.gz /opt/\nADD --checksum={digest} {url} /srv/\n"
                                        "COPY bundle.tar.gz /kept/\n")
        name = f"{unique('add')}:v1"
        cli.cli("build", "-t", name, str(ctx))
        out = cli.cli("run", "--rm", name, "sh", "-c",
                      "cat /opt/dir/inner.txt /srv/remote.txt; ls /kept").stdout
        assert out == "inside the archive\nfetched\nbundle.tar.gz\n"  # COPY never unpacks
        cli.cli("rmi", name)
        (ctx / "Dockerfile").write_text(f"FROM busybox\nADD --checksum=sha256:{'0' * 64} {url} /srv/\n")
        res = cli.cli("build", "-t", name, str(ctx), check=False)
        assert res.returncode == 1 and f"ADD failed: digest mismatch for {url}" in res.stderr
        (ctx / "Dockerfile").write_text(f"FROM busybox\nCOPY {url} /srv/\n")
        res = cli.cli("build", "-t", name, str(ctx), check=False)
        assert res.returncode == 1 and "source can't be a URL for COPY" in res.stderr
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_ctrl_c_mid_build_leaves_nothing(cli: Daemon, tmp_path: Path) -> None:
    """The client goes away during a quiet RUN: the step's container is killed and removed,
    nothing is tagged, the stores are as before."""
    import signal
    import subprocess
    import sys

    from tests.conftest import store_state

    ctx = _context(tmp_path, f"FROM busybox\nRUN echo started {unique('x')}; sleep 120\nRUN echo never\n")
    name = f"{unique('cancelled')}:v1"
    before = store_state(cli)
    base = [sys.executable, "-m", "dockyard.cli.main", "-H", cli.host]
    events = subprocess.Popen([*base, "events", "--filter", "type=container", "--filter", "event=destroy",
                               "--format", "{{.ID}}"], stdout=subprocess.PIPE, text=True, env=cli.env)
    build = subprocess.Popen([*base, "build", "-t", name, str(ctx)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=cli.env)
    try:
        cid = ""
        assert build.stdout is not None
        for line in build.stdout:  # the step's output says it is running
            if "---> Running in " in line:
                cid = line.split()[-1]
            if line.startswith("started"):
                break
        assert cid, "the RUN step never started"
        build.send_signal(signal.SIGINT)
        assert build.wait(timeout=60) != 0
        assert events.stdout is not None
        for line in events.stdout:  # the container's destroy event: it is gone
            if line.startswith(cid):
                break
    finally:
        for proc in (build, events):
            if proc.poll() is None:
                proc.terminate()
            proc.wait(timeout=30)
    assert cli.cli("image", "inspect", name, check=False).returncode == 1
    assert store_state(cli) == before


def test_copy_heredocs_and_chown_names(cli: Daemon, tmp_path: Path) -> None:
    ctx = _context(tmp_path, (
        "FROM busybox\n"
        "RUN mkdir -p /etc && echo 'app:x:1234:1234::/:/bin/sh' >> /etc/passwd && echo 'grp:x:2345:' >> /etc/group\n"
        "ARG NAME=world\n"
        "COPY <<EOF <<'RAW' /etc/greetings/\n"
        "hello $NAME \"quoted\"\n"
        "EOF\n"
        "literal $NAME\n"
        "RAW\n"
        "COPY --chown=app:grp greeting.txt /owned\n"
        "COPY --chown=app greeting.txt /owned2\n"
        "COPY --chown=1:2 greeting.txt /owned3\n"
    ))
    name = f"{unique('heredoc')}:v1"
    cli.cli("build", "-t", name, str(ctx))
    out = cli.cli("run", "--rm", name, "sh", "-c",
                  "cat /etc/greetings/EOF /etc/greetings/RAW; stat -c '%u:%g' /owned /owned2 /owned3").stdout
    assert out == 'hello world "quoted"\nliteral $NAME\n1234:2345\n1234:1234\n1:2\n'
    cli.cli("rmi", name)
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY --chown=nobody-here greeting.txt /x\n")
    res = cli.cli("build", "-t", name, str(ctx), check=False)
    assert res.returncode == 1
    assert "unable to convert uid/gid chown string to host mapping: can't find uid for nobody-here" in res.stderr


@pytest.mark.parametrize("kind", CLIS)
def test_context_symlinks_never_reach_the_host(cli: Daemon, kind: str, tmp_path: Path) -> None:
    """A context's symlink to a host directory cannot make COPY (nor the Dockerfile) read a
    host file — whether the context is read in place (dockyard's CLI) or sent as a tar."""
    ctx = _context(tmp_path, "FROM busybox\nCOPY hostdir/passwd /stolen\n")
    (ctx / "hostdir").symlink_to("/etc")
    res = cli.client(kind)("build", "-t", f"{unique('escape')}:v1", str(ctx), check=False)
    assert res.returncode == 1 and "outside the build context" in res.stderr, res.stderr
    (ctx / "Dockerfile").unlink()
    (ctx / "Dockerfile").symlink_to("/etc/passwd")
    res = cli.client(kind)("build", "-t", f"{unique('escape')}:v1", str(ctx), check=False)
    assert res.returncode == 1 and "root:" not in res.stderr + res.stdout, res.stderr


@pytest.mark.parametrize("kind", CLIS)
def test_context_files_named_like_whiteouts(cli: Daemon, kind: str, tmp_path: Path) -> None:
    """A context is not an image layer: its ``.wh.*`` files arrive (sent as a tar by docker's
    CLI, read in place by dockyard's; here the Dockerfile is one), but copying one into a
    layer, where it would hide files, is refused with one clear line."""
    ctx = _context(tmp_path, "")
    (ctx / "Dockerfile").unlink()
    (ctx / ".wh.Dockerfile").write_text("FROM busybox\nCOPY . /ctx/\n")
    (ctx / "sub" / ".wh.a").write_text("a whiteout of a\n")
    name = f"{unique('whnames')}:v1"
    before = cli.cli("images", "-a", "-q").stdout
    res = cli.client(kind)("build", "-f", str(ctx / ".wh.Dockerfile"), "-t", name, str(ctx), check=False)
    assert res.returncode == 1, res.stdout
    assert re.search(r"^COPY failed: cannot copy ctx/(sub/)?\.wh\.\S+: names starting with \.wh\. are reserved "
                     r"for layer whiteouts$", res.stderr, re.M), res.stderr
    assert cli.cli("images", "-a", "-q").stdout == before
    (ctx / ".dockerignore").write_text("**/.wh.*\n")  # the Dockerfile is sent all the same
    cli.client(kind)("build", "-q", "-f", str(ctx / ".wh.Dockerfile"), "-t", name, str(ctx))
    try:
        out = cli.cli("run", "--rm", name, "find", "/ctx", "-type", "f").stdout.split()
        assert sorted(out) == ["/ctx/.dockerignore", "/ctx/greeting.txt", "/ctx/script.sh", "/ctx/sub/a"]
    finally:
        cli.cli("rmi", name)


CACHE_FROM_DOCKERFILE = """\
FROM busybox
ARG WHO=world
ENV GREETING=hello
COPY greeting.txt /app/
RUN echo "$GREETING $WHO" > /app/ran.txt && date +%s%N > /app/when.txt
COPY sub/ /app/sub/
RUN cat /app/sub/a > /app/sub-copy.txt
CMD ["cat", "/app/ran.txt"]
"""


@pytest.mark.parametrize("kind", CLIS)
def test_cache_from_an_image_built_elsewhere(cli: Daemon, fresh_daemon: Daemon, kind: str, tmp_path: Path) -> None:
    """--cache-from: an image built by another daemon (saved there, loaded here, as after a
    pull) is this daemon's cache: every step "Using cache", its layers reused as they are.
    A changed COPY source misses from there on; a --cache-from name that does not exist is
    skipped."""
    ctx = _context(tmp_path, CACHE_FROM_DOCKERFILE)
    built = f"{unique('cachefrom')}:v1"
    cli.cli("build", "-q", "-t", built, str(ctx))
    try:
        archive = tmp_path / "images.tar"
        cli.cli("save", "-o", str(archive), built, "busybox:latest")
        layers = json.loads(cli.cli("inspect", built).stdout)[0]["RootFS"]["Layers"]
    finally:
        cli.cli("rmi", built)
    d = fresh_daemon
    d.cli("load", "-i", str(archive))
    out = d.client(kind)("build", "--cache-from", built, "--cache-from", "no-such-image:v9", "-t", "again:v1",
                         str(ctx)).stdout
    assert out.count("Using cache") == 7 and "Running in" not in out, out
    assert json.loads(d.cli("inspect", "again:v1").stdout)[0]["RootFS"]["Layers"] == layers
    assert d.cli("run", "--rm", "again:v1").stdout == "hello world\n"

    (ctx / "sub" / "a").write_text("changed\n")
    out = d.client(kind)("build", "--cache-from", built, "-t", "changed:v1", str(ctx)).stdout
    assert out.count("Using cache") == 4 and out.count("Running in") == 1, out
    assert d.cli("run", "--rm", "changed:v1", "cat", "/app/sub-copy.txt").stdout == "changed\n"
    out = d.client(kind)("build", "--build-arg", "WHO=you", "--cache-from", built, "-t", "arg:v1", str(ctx)).stdout
    assert out.count("Running in") == 2, out  # the first RUN sees another build arg: no match
    assert d.cli("run", "--rm", "arg:v1").stdout == "hello you\n"


def test_in_place_context_remembers_file_digests(cli: Daemon, tmp_path: Path) -> None:
    """The dockyard CLI's context is read in place: an unchanged rebuild takes every COPY
    from the cache, and the daemon keeps each file's digest by its identity, so files are
    not read again; a changed file is."""
    import sqlite3

    ctx = _context(tmp_path, f"FROM busybox\nLABEL run={unique('p')}\nCOPY . /ctx\n")
    name = f"{unique('inplace')}:v1"
    out = cli.cli("build", "-t", name, str(ctx)).stdout
    assert "Sending build context" not in out  # nothing sent: read where it is
    db = sqlite3.connect(cli.root / "data" / "builder" / "cache.db")
    try:
        rows = dict(db.execute("SELECT path, digest FROM files WHERE path LIKE ?", (f"{ctx.resolve()}/%",)).fetchall())
    finally:
        db.close()
    assert str(ctx.resolve() / "sub" / "a") in rows and str(ctx.resolve() / "greeting.txt") in rows
    again = cli.cli("build", "-t", name, str(ctx)).stdout
    assert again.count(" ---> Using cache") == 2
    if shutil.which("docker"):  # the same context sent as a tar hits the same cache entries
        assert cli.docker("build", "-t", name, str(ctx)).stdout.count(" ---> Using cache") == 2
    (ctx / "greeting.txt").write_text("different\n")
    changed = cli.cli("build", "--explain-cache", "-t", name, str(ctx)).stdout
    assert " ---> Cache miss: source files changed: greeting.txt" in changed
    assert cli.cli("run", "--rm", name, "cat", "/ctx/greeting.txt").stdout == "different\n"
    cli.cli("rmi", name)


def test_unknown_stage_or_image_in_copy_from(cli: Daemon, tmp_path: Path) -> None:
    # a registry address nothing listens on: the lookup fails here, on loopback
    ctx = _context(tmp_path, "FROM busybox AS one\nCOPY --from=127.0.0.1:9/nostage /x /y\n")
    before = _left_containers(cli)
    res = cli.cli("build", "-t", f"{unique('from')}:v1", str(ctx), check=False)
    assert res.returncode == 1
    assert "Dockerfile:2: --from=127.0.0.1:9/nostage: no build stage and no image of that name" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    ctx2 = _context(tmp_path / "b", "FROM busybox\nCOPY --from=3 /x /y\n")
    res = cli.cli("build", str(ctx2), check=False)
    assert res.returncode == 1 and "refers to a stage that is not defined before this one" in res.stderr
    assert _left_containers(cli) == before


def _push_two_platforms(host: str, busybox_tar: Path, tmp: Path, repo_tag: str) -> None:
    """An image index with linux/amd64 and linux/arm64/v8 entries (both busybox's root, the
    configs differ in their platform only), pushed with skopeo --all."""
    import hashlib
    import subprocess

    layout = tmp / "layout"
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> dict:
        hexd = hashlib.sha256(data).hexdigest()
        (blobs / hexd).write_bytes(data)
        return {"digest": f"sha256:{hexd}", "size": len(data)}

    layer = busybox_tar.read_bytes()
    layer_desc = put(layer)
    manifests = []
    for plat in ({"architecture": "amd64", "os": "linux"}, {"architecture": "arm64", "os": "linux", "variant": "v8"}):
        config = json.dumps({**plat, "created": "2024-01-01T00:00:00Z", "config": {"Cmd": ["sh"]},
                             "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]}}).encode()
        manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                               "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **put(config)},
                               "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer_desc}]})
        manifests.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", **put(manifest.encode()),
                          "platform": plat})
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": manifests}).encode()
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.index.v1+json", **put(index),
        "annotations": {"org.opencontainers.image.ref.name": "v"}}]}))
    subprocess.run(["skopeo", "copy", "-q", "--all", f"oci:{layout}:v", f"docker://{host}/{repo_tag}",
                    "--dest-tls-verify=false"], check=True)


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")
@pytest.mark.parametrize("kind", CLIS)
def test_platform_of_base_images(cli: Daemon, kind: str, busybox_tar: Path, tmp_path: Path) -> None:
    """FROM --platform and build --platform pick the base image's platform from an index (the
    built image is of that platform); a local image of another platform that no registry has
    gets docker's message; a malformed platform one clear line."""
    from tests.fixtures.registry import REGISTRY_BIN, start_registry

    if REGISTRY_BIN is None:
        pytest.skip("docker-registry is not installed (apt install docker-registry)")
    for reg in start_registry(tmp_path / "reg"):
        base = f"{reg.host}/test/multi:v1"
        _push_two_platforms(reg.host, busybox_tar, tmp_path, "test/multi:v1")
        names = [f"{unique('plat')}:{n}" for n in ("flag", "option", "host")]
        ctx = _context(tmp_path, f"FROM --platform=linux/arm64 {base}\nRUN echo ran > /x\n")
        try:
            cli.client(kind)("build", "-q", "-t", names[0], str(ctx))
            (ctx / "Dockerfile").write_text(f"FROM {base}\nRUN echo ran > /x\n")
            cli.client(kind)("build", "-q", "--platform", "linux/arm64", "-t", names[1], str(ctx))
            # the local image is arm64 now: no --platform takes it as it is (docker 20.10), amd64 pulls
            cli.client(kind)("build", "-q", "-t", names[2], str(ctx))
            assert json.loads(cli.cli("inspect", names[2]).stdout)[0]["Architecture"] == "arm64"
            cli.client(kind)("build", "-q", "--platform", "linux/amd64", "-t", names[2], str(ctx))
            for name, arch in zip(names, ("arm64", "arm64", "amd64"), strict=True):
                info = json.loads(cli.cli("inspect", name).stdout)[0]
                assert info["Architecture"] == arch, (name, info["Architecture"])
                assert cli.cli("run", "--rm", name, "cat", "/x").stdout == "ran\n"

            local = f"{reg.host}/test/local-only:v1"
            cli.cli("tag", "busybox:latest", local)
            (ctx / "Dockerfile").write_text(f"FROM --platform=linux/s390x {local}\nRUN true\n")
            res = cli.client(kind)("build", "-t", names[0], str(ctx), check=False)
            assert res.returncode == 1 and (f"image with reference {local} was found but does not match the "
                                            "specified platform: wanted linux/s390x, actual: linux/amd64") in res.stderr, \
                res.stderr
            (ctx / "Dockerfile").write_text("FROM --platform=linux/arm64/v8/extra busybox\n")
            res = cli.client(kind)("build", str(ctx), check=False)
            assert res.returncode == 1 and "unknown operating system or architecture" in res.stderr, res.stderr
        finally:
            cli.cli("rmi", "-f", *names, base, f"{reg.host}/test/local-only:v1", check=False)


COPY_RULES = """\
FROM busybox
RUN mkdir -p /existing /real/dir && ln -s /real/dir /linkdir
COPY greeting.txt /existing
COPY greeting.txt /newname
COPY greeting.txt /newdir/
COPY sub /subcontents
COPY sub/ /subcontents2/
COPY greeting.txt script.sh /multi/
COPY *.txt /glob
COPY greeting.txt /linkdir
COPY greeting.txt /linkdir/renamed
WORKDIR /work
COPY greeting.txt .
COPY greeting.txt rel
"""
COPY_EXPECTED = {
    "/existing": "dir", "/existing/greeting.txt": "file", "/newname": "file", "/newdir/greeting.txt": "file",
    "/subcontents/a": "file", "/subcontents/sub": "none", "/subcontents2/a": "file", "/multi/greeting.txt": "file",
    "/multi/script.sh": "file", "/glob": "file", "/linkdir": "link", "/real/dir/greeting.txt": "file",
    "/real/dir/renamed": "file", "/work/greeting.txt": "file", "/work/rel": "file",
}


@pytest.mark.parametrize("kind", CLIS)
def test_copy_destination_rules(cli: Daemon, kind: str, tmp_path: Path) -> None:
    """docker's COPY destinations: a trailing slash or an existing directory takes the file
    inside it, otherwise the file takes the name; a directory source copies its contents;
    several sources need a destination ending in /; symlinks on the way are followed inside
    the image (the link stays a link)."""
    ctx = _context(tmp_path, COPY_RULES)
    name = f"{unique('copyrules')}:v1"
    cli.client(kind)("build", "-q", "-t", name, str(ctx))
    try:
        probe = " ".join(COPY_EXPECTED)
        script = (f'for p in {probe}; do if [ -L $p ]; then echo "$p link"; elif [ -d $p ]; then echo "$p dir"; '
                  f'elif [ -f $p ]; then echo "$p file"; else echo "$p none"; fi; done')
        out = cli.cli("run", "--rm", name, "sh", "-c", script).stdout
        assert dict(line.split() for line in out.splitlines()) == COPY_EXPECTED
        assert cli.cli("run", "--rm", name, "cat", "/newname", "/linkdir/renamed").stdout == "hello\nhello\n"
    finally:
        cli.cli("rmi", name)
    for bad in ("COPY greeting.txt script.sh /nodir", "COPY *.sh *.txt ."):
        (ctx / "Dockerfile").write_text(f"FROM busybox\n{bad}\n")
        res = cli.client(kind)("build", str(ctx), check=False)
        assert res.returncode == 1 and res.stderr.strip().splitlines()[-1].endswith(
            "When using COPY with more than one source file, the destination must be a directory and end with a /"), \
            res.stderr


@pytest.mark.parametrize("kind", CLIS)
def test_builder_prune(cli: Daemon, kind: str, tmp_path: Path) -> None:
    """`builder prune` forgets the cache entries whose images are gone; `-a` every entry (the
    images stay images). A build after `-a` runs its steps again."""
    ctx = _context(tmp_path, "FROM busybox\nRUN echo one > /one\nCOPY greeting.txt /\n")
    name = f"{unique('prune')}:v1"
    cli.cli("build", "-q", "-t", name, str(ctx))
    cli.cli("rmi", name)  # the images of the steps go with it: their entries are dead
    out = cli.client(kind)("builder", "prune", "-f").stdout
    assert out.startswith("Deleted build cache objects:\n") and out.endswith("Total reclaimed space: 0B\n"), out
    assert len(out.splitlines()) >= 4  # the header, two entries at least, the blank line, the total
    cli.cli("build", "-q", "-t", name, str(ctx))
    assert "Using cache" in cli.cli("build", "-t", name, str(ctx)).stdout
    out = cli.client(kind)("builder", "prune", "-a", "-f").stdout
    assert "Deleted build cache objects:" in out and out.endswith("Total reclaimed space: 0B\n"), out
    again = cli.cli("build", "-t", name, str(ctx)).stdout
    assert "Using cache" not in again and "Running in" in again, again
    assert cli.client(kind)("builder", "prune", "-f").stdout == "Total reclaimed space: 0B\n"
    cli.cli("rmi", name)
