"""Container networking end to end (issue 8), through both CLIs against a real dockyardd:
the default bridge (address, route, /etc files, outbound NAT proved by a namespace with no
route back), published TCP and UDP ports reached from the host (127.0.0.1 and the host's
own address) and from other containers, -P and ranges, user networks resolving names and
aliases through the embedded DNS and isolated from each other, connect / disconnect, bad
input, and a daemon restart that keeps running containers reachable. Every link and
nftables table is checked gone at the end (conftest)."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.network.firewall import tables
from tests.conftest import Daemon, _stop_and_check, bridge_name, start_daemon
from tests.fixtures.clients import CLIS, unique

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (netlink, namespaces, nftables)"),
    pytest.mark.skipif(shutil.which("nft") is None, reason="nftables is not installed (apt install nftables)"),
]


def _ip(*args: str) -> str:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=True).stdout


def _links() -> set[str]:
    return {line.split(":")[1].strip().split("@")[0] for line in _ip("-o", "link").splitlines()}


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


def _host_address() -> str:
    """An address of the host that is not loopback (the host's own, as a client elsewhere
    would use it)."""
    for line in _ip("-4", "-o", "addr", "show", "scope", "global").splitlines():
        addr = line.split()[3].split("/")[0]
        dev = line.split()[1]
        if not dev.startswith(("dy", "br-", "veth")):
            return addr
    pytest.skip("the host has no global IPv4 address")


def _listening(host: str, port: int, deadline: float = 10) -> None:
    """Until a server in a container just started accepts connections (no event tells)."""
    import time

    end = time.monotonic() + deadline
    while True:
        try:
            socket.create_connection((host, port), timeout=2).close()
            return
        except ConnectionRefusedError:
            assert time.monotonic() < end, f"nothing listens on {host}:{port}"
            time.sleep(0.02)


def _http_get(host: str, port: int, path: str = "/hostname", timeout: float = 5) -> str:
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    return data.decode(errors="replace")


def _inspect(d: Daemon, name: str) -> dict:
    return json.loads(d.cli("inspect", name).stdout)[0]


@pytest.fixture
def net_cli(cli: Daemon) -> Iterator[Daemon]:
    """The session daemon; the user networks a test makes are removed afterwards."""
    before = set(cli.cli("network", "ls", "-q").stdout.split())
    yield cli
    made = set(cli.cli("network", "ls", "-q").stdout.split()) - before
    if made:
        cli.cli("network", "rm", *made, check=False)
    assert not made, f"networks left behind: {made}"


_UDP_ECHO = r"""
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
int main(int argc, char **argv) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) < 0) return 1;
    for (;;) {
        char buf[2048];
        struct sockaddr_in peer;
        socklen_t len = sizeof peer;
        ssize_t n = recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&peer, &len);
        if (n > 0) sendto(s, buf, n, 0, (struct sockaddr *)&peer, len);
    }
}
"""


@pytest.fixture(scope="module")
def udp_echo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A static UDP echo server to bind into a container (busybox's nc has no UDP here)."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc builds the UDP echo server (apt install gcc libc6-dev)")
    d = tmp_path_factory.mktemp("udpecho")
    (d / "udpecho.c").write_text(_UDP_ECHO)
    subprocess.run(["gcc", "-static", "-O1", "-o", str(d / "udpecho"), str(d / "udpecho.c")], check=True)
    return d / "udpecho"


def _udp_roundtrip(host: str, port: int, payload: bytes) -> bytes:
    """Send a datagram and return the answer; sent again a few times (the server may not
    be bound yet, and UDP has no connection to wait for)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(1)
        for _ in range(10):
            s.sendto(payload, (host, port))
            try:
                return s.recvfrom(2048)[0]
            except TimeoutError:
                continue
    raise AssertionError(f"no answer from {host}:{port}/udp")


@pytest.fixture
def outside() -> Iterator[str]:
    """A namespace reached through a veth from the host, with no route back to any bridge
    subnet: only masquerading lets a container's packets get an answer. Yields its address."""
    tag = uuid.uuid4().hex[:6]
    ns, link = f"dyo{tag}", f"dyo{tag}"
    octet = 200 + int(tag[:2], 16) % 50
    _ip("netns", "add", ns)
    try:
        _ip("link", "add", link, "type", "veth", "peer", "name", link + "p")
        _ip("link", "set", link + "p", "netns", ns)
        _ip("addr", "add", f"10.{octet}.77.1/30", "dev", link)
        _ip("link", "set", link, "up")
        _ip("-n", ns, "addr", "add", f"10.{octet}.77.2/30", "dev", link + "p")
        _ip("-n", ns, "link", "set", link + "p", "up")
        yield f"10.{octet}.77.2"
    finally:
        subprocess.run(["ip", "link", "del", link], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


# --------------------------------------------------------------------------- default bridge


@pytest.mark.parametrize("kind", CLIS)
def test_default_bridge(net_cli: Daemon, kind: str, outside: str) -> None:
    run = net_cli.client(kind)
    bridge = json.loads(net_cli.cli("network", "inspect", "bridge").stdout)[0]
    subnet = ipaddress.ip_network(bridge["IPAM"]["Config"][0]["Subnet"])
    gateway = bridge["IPAM"]["Config"][0]["Gateway"]
    assert not subnet.overlaps(ipaddress.ip_network("172.17.0.0/16"))  # never docker0's
    assert bridge["Options"]["com.docker.network.bridge.name"] == bridge_name(net_cli.root)
    name = unique("br")
    out = run("run", "--rm", "--name", name, "--hostname", "box", "--add-host", "gw:host-gateway", "busybox", "sh", "-c",
              f"ip -4 -o addr show eth0; ip route; cat /etc/hosts; ping -c 1 -W 3 {outside} >/dev/null && echo NAT-OK"
              ).stdout
    address = out.split()[3]
    assert ipaddress.ip_interface(address).network == subnet, out
    assert f"default via {gateway} dev eth0" in out, out
    assert f"{address.split('/')[0]}\tbox\n" in out, out  # its own entry in /etc/hosts
    assert f"{gateway}\tgw\n" in out, out  # host-gateway: the default bridge's gateway
    assert "NAT-OK" in out, out  # outbound traffic masqueraded: the outside has no route back

    cid = net_cli.cli("run", "-d", "busybox", "sleep", "60").stdout.strip()
    try:
        info = _inspect(net_cli, cid)
        ns = info["NetworkSettings"]
        assert ns["IPAddress"] and ns["Gateway"] == gateway and ns["Networks"]["bridge"]["IPAddress"] == ns["IPAddress"]
        mac = "02:42:" + ":".join(f"{int(b):02x}" for b in ns["IPAddress"].split("."))
        assert ns["MacAddress"] == mac  # docker's MAC from the address
        members = json.loads(net_cli.cli("network", "inspect", "bridge").stdout)[0]["Containers"]
        assert members[cid]["IPv4Address"] == f"{ns['IPAddress']}/{subnet.prefixlen}"
    finally:
        net_cli.cli("rm", "-f", cid)


# --------------------------------------------------------------------------- published ports


@pytest.mark.parametrize("kind", CLIS)
def test_published_tcp_and_udp_ports(net_cli: Daemon, kind: str, udp_echo: Path) -> None:
    run = net_cli.client(kind)
    tcp, loopback_only, udp = _free_port(), _free_port(), _free_port(socket.SOCK_DGRAM)
    web, echo = unique("web"), unique("udp")
    run("run", "-d", "--name", web, "--hostname", "webhost", "-p", f"{tcp}:80", "-p", f"127.0.0.1:{loopback_only}:80",
        "busybox", "httpd", "-f", "-p", "80", "-h", "/etc")
    run("run", "-d", "--name", echo, "-p", f"{udp}:5000/udp", "-v", f"{udp_echo}:/udpecho:ro", "busybox",
        "/udpecho", "5000")
    try:
        host = _host_address()
        _listening("127.0.0.1", tcp)
        for address, port in (("127.0.0.1", tcp), (host, tcp), ("127.0.0.1", loopback_only)):
            assert _http_get(address, port).endswith("webhost\n"), (address, port)
        with pytest.raises(OSError):  # published on 127.0.0.1 only
            _http_get(host, loopback_only, timeout=2)
        # from another container: through the host's address and through its gateway
        gateway = _inspect(net_cli, web)["NetworkSettings"]["Gateway"]
        out = run("run", "--rm", "busybox", "sh", "-c",
                  f"for h in {host} {gateway}; do printf 'GET /hostname HTTP/1.0\\r\\n\\r\\n' | nc -w 5 $h {tcp}; done"
                  ).stdout
        assert out.count("webhost") == 2, out

        # UDP: a datagram to the published port reaches the container, and its answer comes back
        for address in ("127.0.0.1", host):
            assert _udp_roundtrip(address, udp, b"hello-udp") == b"hello-udp"

        assert sorted(run("port", web).stdout.splitlines()) == sorted(
            [f"80/tcp -> 0.0.0.0:{tcp}", f"80/tcp -> 127.0.0.1:{loopback_only}"])
        assert run("port", echo, "5000/udp").stdout.strip() == f"0.0.0.0:{udp}"
        ps = net_cli.cli("ps", "--filter", f"name={web}", "--format", "{{.Ports}}").stdout.strip()
        assert ps == f"0.0.0.0:{tcp}->80/tcp, 127.0.0.1:{loopback_only}->80/tcp", ps
        ports = _inspect(net_cli, web)["NetworkSettings"]["Ports"]
        assert ports["80/tcp"] == [{"HostIp": "0.0.0.0", "HostPort": str(tcp)},
                                   {"HostIp": "127.0.0.1", "HostPort": str(loopback_only)}]
        # the port is held: nobody else on the host can bind it
        with socket.socket() as s, pytest.raises(OSError):
            s.bind(("0.0.0.0", tcp))
    finally:
        net_cli.cli("rm", "-f", web, echo)
    rules = subprocess.run(["nft", "list", "table", "ip", bridge_name(net_cli.root)], capture_output=True,
                           text=True).stdout
    assert f"dport {tcp} " not in rules and f"dport {udp} " not in rules  # the rules went with them
    with socket.socket() as s:
        s.bind(("0.0.0.0", tcp))  # and the port is free again


@pytest.mark.parametrize("kind", CLIS)
def test_publish_all_and_ranges(net_cli: Daemon, kind: str) -> None:
    run = net_cli.client(kind)
    name = unique("pub")
    first = _free_port()
    while True:  # two consecutive free ports
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("0.0.0.0", first))
                b.bind(("0.0.0.0", first + 1))
            break
        except OSError:
            first = _free_port()
    run("run", "-d", "--name", name, "-P", "--expose", "7000", "-p", f"{first}-{first + 1}:80-81",
        "busybox", "httpd", "-f", "-p", "7000", "-h", "/etc")
    try:
        lines = run("port", name).stdout.splitlines()
        assert f"80/tcp -> 0.0.0.0:{first}" in lines and f"81/tcp -> 0.0.0.0:{first + 1}" in lines, lines
        random_port = int(run("port", name, "7000").stdout.strip().rsplit(":", 1)[1])
        assert random_port not in (first, first + 1)
        _listening("127.0.0.1", random_port)
        assert "HTTP/1." in _http_get("127.0.0.1", random_port, "/")
        ps = net_cli.cli("ps", "--filter", f"name={name}", "--format", "{{.Ports}}").stdout.strip()
        assert f"0.0.0.0:{first}-{first + 1}->80-81/tcp" in ps and "->7000/tcp" in ps, ps
    finally:
        net_cli.cli("rm", "-f", name)


@pytest.mark.parametrize("kind", CLIS)
def test_host_port_in_use(net_cli: Daemon, kind: str) -> None:
    """A host port taken by a host process, or by another container: one clear line, exit
    125, and the container is not left half-started (created, no veth, no rule)."""
    run = net_cli.client(kind)
    links_before = _links()
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        name = unique("busy")
        res = run("run", "-d", "--name", name, "-p", f"{port}:80", "busybox", "sleep", "60", check=False)
        assert res.returncode == 125, res
        assert f"failed to bind host port for 0.0.0.0:{port}" in res.stderr and "address already in use" in res.stderr
        try:
            info = _inspect(net_cli, name)
            assert info["State"]["Status"] == "created" and not info["NetworkSettings"]["IPAddress"]
            assert _links() - links_before == set()  # no veth
            rules = subprocess.run(["nft", "list", "table", "ip", bridge_name(net_cli.root)], capture_output=True,
                                   text=True).stdout
            assert f"dport {port} " not in rules
        finally:
            net_cli.cli("rm", "-f", name)
    taken = _free_port()
    first = unique("first")
    run("run", "-d", "--name", first, "-p", f"{taken}:80", "busybox", "sleep", "60")
    try:
        res = run("run", "--rm", "-p", f"{taken}:80", "busybox", "true", check=False)
        assert res.returncode == 125 and f"Bind for 0.0.0.0:{taken} failed: port is already allocated" in res.stderr
    finally:
        net_cli.cli("rm", "-f", first)
    # the --rm container that could not start is removed by the daemon (as docker's), which
    # the cli fixture checks


# --------------------------------------------------------------------------- user networks


@pytest.mark.parametrize("kind", CLIS)
def test_user_networks_dns_and_isolation(net_cli: Daemon, kind: str, outside: str) -> None:
    run = net_cli.client(kind)
    n1, n2, internal = unique("n1"), unique("n2"), unique("int")
    ids = [run("network", "create", n1).stdout.strip(),
           run("network", "create", "--subnet", "10.97.0.0/24", "--gateway", "10.97.0.254", "--ip-range",
               "10.97.0.128/25", n2).stdout.strip(),
           run("network", "create", "--internal", internal).stdout.strip()]
    db = unique("db")
    run("run", "-d", "--name", db, "--network", n1, "--network-alias", "database", "busybox", "sleep", "120")
    try:
        db_ip = _inspect(net_cli, db)["NetworkSettings"]["Networks"][n1]["IPAddress"]
        out = run("run", "--rm", "--network", n1, "busybox", "sh", "-c",
                  f"ping -c1 -W3 {db} && ping -c1 -W3 database && nslookup {db} "
                  f"&& ping -c 1 -W 3 {outside} >/dev/null && echo OUT-OK").stdout
        assert out.count(f"({db_ip})") >= 2 and "OUT-OK" in out, out
        # another network: neither the name nor the address
        out = run("run", "--rm", "--network", n2, "busybox", "sh", "-c",
                  f"ip -4 -o addr show eth0; nslookup {db}; ping -c1 -W1 {db_ip} >/dev/null && echo REACHED; true"
                  ).stdout
        assert " 10.97.0.128/24 " in out, out  # the first address of the --ip-range
        assert "REACHED" not in out and db_ip not in out.split("eth0", 1)[1], out
        # an internal network: no way out
        out = run("run", "--rm", "--network", internal, "busybox", "sh", "-c",
                  f"ip route; ping -c1 -W1 {outside} >/dev/null && echo OUT-OK; true").stdout
        assert "OUT-OK" not in out and "default" not in out, out
        # a fixed address and MAC
        fixed = unique("fixed")
        out = run("run", "--rm", "--name", fixed, "--network", n2, "--ip", "10.97.0.5", "--mac-address",
                  "02:11:22:33:44:55", "busybox", "ip", "-o", "link", "show", "eth0").stdout
        assert "02:11:22:33:44:55" in out, out

        # connect a container of n2 to n1: now it finds the database; disconnected: not any more
        other = unique("other")
        run("run", "-d", "--name", other, "--network", n2, "busybox", "sleep", "120")
        try:
            run("network", "connect", "--alias", "late", n1, other)
            out = run("exec", other, "sh", "-c", "ip -4 -o addr; ping -c1 -W3 database").stdout
            assert "eth1" in out and f"({db_ip})" in out, out
            out = run("run", "--rm", "--network", n1, "busybox", "nslookup", "late").stdout
            assert _inspect(net_cli, other)["NetworkSettings"]["Networks"][n1]["IPAddress"] in out, out
            members = json.loads(run("network", "inspect", n1).stdout)[0]["Containers"]
            assert {m["Name"] for m in members.values()} == {db, other}
            run("network", "disconnect", n1, other)
            out = run("exec", other, "sh", "-c", "ip -4 -o addr; nslookup database; true").stdout
            assert "eth1" not in out and db_ip not in out, out
        finally:
            net_cli.cli("rm", "-f", other)

        # removing a network in use: 409 with docker's message
        res = run("network", "rm", n1, check=False)
        assert res.returncode == 1
        assert f"network {n1} has 1 active endpoint ({db})" in res.stderr, res.stderr
    finally:
        net_cli.cli("rm", "-f", db)
    assert run("network", "rm", n1, n2, internal).stdout.split() == [n1, n2, internal]
    assert not {"br-" + i[:12] for i in ids} & _links()  # their bridges went with them


def test_network_bad_input(net_cli: Daemon) -> None:
    n = unique("bad")
    net_cli.cli("network", "create", "--subnet", "10.98.0.0/24", n)
    try:
        for argv, message in [
            (("network", "create", "--subnet", "10.98.0.128/25", unique("x")),
             "Pool overlaps with other one on this address space"),
            (("network", "create", n), f"network with name {n} already exists"),
            (("network", "create", "bridge"), "operation is not permitted on predefined bridge network"),
            (("network", "create", "--subnet", "10.98.1.0/24", "--gateway", "10.99.0.1", unique("x")),
             "no matching subnet for gateway 10.99.0.1"),
            (("network", "rm", "host"), "host is a pre-defined network and cannot be removed"),
            (("network", "inspect", "nosuchnet"), "network nosuchnet not found"),
            (("run", "--rm", "--network", "nosuchnet", "busybox", "true"), "network nosuchnet not found"),
            (("run", "--rm", "--ip", "10.1.2.3", "busybox", "true"),
             "user specified IP address is supported on user defined networks only"),
            (("run", "--rm", "--network", n, "--ip", "10.1.2.3", "busybox", "true"),
             "no configured subnet or ip-range contain the IP address 10.1.2.3"),
        ]:
            for kind in ("dockyard", "docker"):
                if kind == "docker" and shutil.which("docker") is None:
                    continue
                before = net_cli.cli("network", "ls", "-q").stdout
                containers = net_cli.cli("ps", "-aq").stdout
                res = net_cli.client(kind)(*argv, check=False)
                assert res.returncode != 0, (kind, argv)
                lines = [line for line in res.stderr.splitlines() if line.strip()]
                assert message in lines[0], (kind, argv, res.stderr)
                assert net_cli.cli("network", "ls", "-q").stdout == before  # nothing made
                assert net_cli.cli("ps", "-aq").stdout == containers
    finally:
        net_cli.cli("network", "rm", n)


def test_network_ls_filters_and_prune(net_cli: Daemon) -> None:
    keep, drop = unique("keep"), unique("drop")
    net_cli.cli("network", "create", "--label", "purpose=test", keep)
    net_cli.cli("network", "create", drop)
    holder = unique("holder")
    net_cli.cli("run", "-d", "--name", holder, "--network", keep, "busybox", "sleep", "60")
    try:
        names = net_cli.cli("network", "ls", "--format", "{{.Name}}").stdout.split()
        assert {"bridge", "host", "none", keep, drop} <= set(names) and names == sorted(names)
        assert net_cli.cli("network", "ls", "-f", "label=purpose=test", "--format", "{{.Name}}").stdout.split() == [keep]
        custom = net_cli.cli("network", "ls", "-f", "type=custom", "--format", "{{.Name}}").stdout.split()
        assert "bridge" not in custom and keep in custom
        res = net_cli.cli("network", "prune", input=b"n\n")  # docker's prompt, answered no
        assert "Are you sure you want to continue? [y/N]" in res.stdout and drop not in res.stdout
        assert drop in net_cli.cli("network", "ls", "--format", "{{.Name}}").stdout.split()
        out = net_cli.cli("network", "prune", "-f").stdout
        assert drop in out and keep not in out  # in use: kept
        assert drop not in net_cli.cli("network", "ls", "--format", "{{.Name}}").stdout.split()
        res = net_cli.cli("network", "rm", "-f", drop, check=False)  # -f: gone already is fine
        assert (res.returncode, res.stdout, res.stderr) == (0, "", "")
        res = net_cli.cli("network", "rm", drop, check=False)
        assert res.returncode == 1 and res.stderr.strip() == f"Error response from daemon: network {drop} not found"
    finally:
        net_cli.cli("rm", "-f", holder)
        net_cli.cli("network", "rm", keep)


# --------------------------------------------------------------------------- docker-py


def test_docker_py_networks(client: object, daemon: Daemon) -> None:
    docker = pytest.importorskip("docker")
    c = client
    name = unique("py")
    ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet="10.96.0.0/24", gateway="10.96.0.1")])
    net = c.networks.create(name, driver="bridge", ipam=ipam, labels={"a": "b"})  # type: ignore[attr-defined]
    try:
        assert net.attrs["IPAM"]["Config"][0]["Subnet"] == "10.96.0.0/24" and net.attrs["Labels"] == {"a": "b"}
        server = c.containers.run("busybox", ["sleep", "60"], detach=True, network=name)  # type: ignore[attr-defined]
        try:
            probe = c.containers.run("busybox", ["sleep", "60"], detach=True)  # type: ignore[attr-defined]
            try:
                net.connect(probe, aliases=["probe-alias"], ipv4_address="10.96.0.77")
                net.reload()
                assert set(net.attrs["Containers"]) == {server.id, probe.id}
                code, out = server.exec_run(["ping", "-c1", "-W3", "probe-alias"])
                assert code == 0 and b"10.96.0.77" in out, out
                net.disconnect(probe)
                probe.reload()
                assert name not in probe.attrs["NetworkSettings"]["Networks"]
            finally:
                probe.remove(force=True)
        finally:
            server.remove(force=True)
        with pytest.raises(docker.errors.APIError) as err:
            c.api.leave_swarm()  # type: ignore[attr-defined]
        assert err.value.status_code == 503 and "not a swarm manager" in str(err.value)
    finally:
        net.remove()
    with pytest.raises(docker.errors.NotFound):
        c.networks.get(name)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- daemon restart


def test_daemon_restart_keeps_containers_reachable(tmp_path: Path, busybox_tar: Path) -> None:
    root = tmp_path / "d"
    d = start_daemon(root)
    device = bridge_name(root)
    port = _free_port()
    try:
        d.cli("import", "-c", 'CMD ["sh"]', str(busybox_tar), "busybox:latest")
        d.cli("network", "create", "app")
        d.cli("run", "-d", "--name", "web", "--network", "app", "--hostname", "webhost", "-p", f"{port}:80",
              "busybox", "httpd", "-f", "-p", "80", "-h", "/etc")
        _listening("127.0.0.1", port)
        assert _http_get("127.0.0.1", port).endswith("webhost\n")
    except BaseException:
        _stop_and_check_network(d)
        raise
    d.stop()  # live restore: the container runs on, its bridge and rules stay
    assert device in tables() and _http_get("127.0.0.1", port).endswith("webhost\n")
    d = start_daemon(root)
    try:
        assert _http_get("127.0.0.1", port).endswith("webhost\n")
        with socket.socket() as s, pytest.raises(OSError):
            s.bind(("0.0.0.0", port))  # held again by the new daemon
        assert d.cli("port", "web").stdout.strip() == f"80/tcp -> 0.0.0.0:{port}"
        out = d.cli("run", "--rm", "--network", "app", "busybox", "sh", "-c",
                    "printf 'GET /hostname HTTP/1.0\\r\\n\\r\\n' | nc -w 5 web 80").stdout
        assert "webhost" in out, out  # the embedded DNS knows the running container again
        addresses = {d.cli("run", "--rm", "--network", "app", "busybox", "sh", "-c",
                           "ip -4 -o addr show eth0").stdout.split()[3] for _ in range(2)}
        web_ip = _inspect(d, "web")["NetworkSettings"]["Networks"]["app"]["IPAddress"]
        assert all(not a.startswith(web_ip + "/") for a in addresses)  # its address stays taken
    finally:
        _stop_and_check_network(d)


def _stop_and_check_network(d: Daemon) -> None:
    """Remove what the test made, stop the daemon, and check its bridges and table went."""
    with contextlib.suppress(AssertionError):
        d.cli("rm", "-f", "web")
    with contextlib.suppress(AssertionError):
        d.cli("network", "rm", "app")
    _stop_and_check(d)
    assert bridge_name(d.root) not in tables()
    assert bridge_name(d.root) not in _links()


def test_two_networks_at_create(client: object, daemon: Daemon) -> None:
    """API 1.44+: EndpointsConfig may name several networks at create (compose does); the
    NetworkMode one is eth0 with the default route, the others follow."""
    api = client.api  # type: ignore[attr-defined]
    a, b = unique("na"), unique("nb")
    api.create_network(a, ipam={"Driver": "default", "Config": [{"Subnet": "10.95.1.0/24"}]})
    api.create_network(b, ipam={"Driver": "default", "Config": [{"Subnet": "10.95.2.0/24"}]})
    try:
        networking = api.create_networking_config({a: api.create_endpoint_config(aliases=["in-a"]),
                                                   b: api.create_endpoint_config(aliases=["in-b"])})
        ct = api.create_container("busybox", ["sleep", "60"], networking_config=networking,
                                  host_config=api.create_host_config(network_mode=a))
        try:
            api.start(ct)
            info = api.inspect_container(ct)
            nets = info["NetworkSettings"]["Networks"]
            assert nets[a]["IPAddress"].startswith("10.95.1.") and nets[b]["IPAddress"].startswith("10.95.2.")
            out = daemon.cli("exec", ct["Id"], "sh", "-c", "ip -4 -o addr; ip route").stdout
            assert "eth0    inet 10.95.1." in out and "eth1    inet 10.95.2." in out, out
            assert "default via 10.95.1.1 dev eth0" in out and out.count("default") == 1, out
            for net, alias in ((a, "in-a"), (b, "in-b")):
                res = daemon.cli("run", "--rm", "--network", net, "busybox", "nslookup", alias).stdout
                assert nets[net]["IPAddress"] in res, res
        finally:
            api.remove_container(ct, force=True)
    finally:
        api.remove_network(a)
        api.remove_network(b)


def test_bridge_driver_options(net_cli: Daemon, outside: str) -> None:
    """docker's bridge options: the bridge's name, and no masquerading (then the outside,
    which has no route back, never answers)."""
    name, device = unique("opt"), "dyopt" + uuid.uuid4().hex[:6]
    net_cli.cli("network", "create", "--subnet", "10.94.0.0/24", "-o", f"com.docker.network.bridge.name={device}",
                "-o", "com.docker.network.bridge.enable_ip_masquerade=false", name)
    try:
        out = net_cli.cli("run", "--rm", "--network", name, "busybox", "sh", "-c",
                          f"ping -c1 -W2 {outside} >/dev/null && echo OUT-OK; cat /sys/class/net/eth0/address").stdout
        assert "OUT-OK" not in out, out
        rules = subprocess.run(["nft", "list", "table", "ip", bridge_name(net_cli.root)], capture_output=True,
                               text=True).stdout
        assert "10.94.0.0/24" not in rules  # no masquerade rule for it
        assert device in _links()  # made on first use, named as asked
        res = net_cli.cli("network", "create", "-o", f"com.docker.network.bridge.name={device}", unique("dup"),
                          check=False)
        assert res.returncode == 1 and f"bridge name {device} is already used" in res.stderr
    finally:
        net_cli.cli("network", "rm", name)
    assert device not in _links()


def test_embedded_dns_over_tcp_and_reverse(net_cli: Daemon) -> None:
    """A query over TCP to the network's gateway reaches the embedded server too (a client
    asks again over TCP when a UDP answer is truncated); an address resolves back to its
    container."""
    net, holder = unique("tcpdns"), unique("holder")
    net_cli.cli("network", "create", "--subnet", "10.93.0.0/24", net)
    net_cli.cli("run", "-d", "--name", holder, "--network", net, "--network-alias", "db", "busybox", "sleep", "60")
    try:
        address = _inspect(net_cli, holder)["NetworkSettings"]["Networks"][net]["IPAddress"]
        # a 20-byte query for "db", type A, behind its two-byte length, as raw bytes
        query = r"\000\024\022\064\001\000\000\001\000\000\000\000\000\000\002db\000\000\001\000\001"
        out = net_cli.cli("run", "--rm", "--network", net, "busybox", "sh", "-c",
                          f"printf '{query}' | nc -w 3 10.93.0.1 53 | od -An -tu1").stdout
        answer = " ".join(out.split())
        assert " ".join(address.split(".")) in answer, (address, answer)
        # and the reverse lookup, as docker answers it: <container>.<network>
        out = net_cli.cli("run", "--rm", "--network", net, "busybox", "nslookup", address).stdout
        assert f"{holder}.{net}" in out, out
    finally:
        net_cli.cli("rm", "-f", holder)
        net_cli.cli("network", "rm", net)
