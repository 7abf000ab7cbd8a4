"""dockyardd: serve the Docker Engine API on unix sockets and TCP (dockerd's flag names)."""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import logging
import os
import resource
import signal
import sys
from urllib.parse import urlparse

from dockyard import __version__
from dockyard.daemon import config as cfgmod
from dockyard.errors import DockyardError, InvalidArgument

log = logging.getLogger("dockyard")


def parse_args(argv: list[str]) -> tuple[dict, str | None]:
    p = argparse.ArgumentParser(prog="dockyardd", description="A Docker-compatible container engine daemon")
    p.add_argument("-H", "--host", action="append", dest="hosts", help="Daemon socket(s) to connect to")
    p.add_argument("--data-root", help="Root directory of persistent state (default /var/lib/dockyard)")
    p.add_argument("--exec-root", help="Root directory for execution state files (default /run/dockyard)")
    p.add_argument("-p", "--pidfile", help="Path to use for daemon PID file")
    p.add_argument("--config-file", help="Daemon configuration file (daemon.json format)")
    p.add_argument("-D", "--debug", action="store_true", default=None, help="Enable debug mode")
    p.add_argument("-s", "--storage-driver", help="Storage driver to use: overlay or native")
    p.add_argument("--insecure-registry", action="append", dest="insecure_registries")
    p.add_argument("--registry-mirror", action="append", dest="registry_mirrors")
    p.add_argument("--registry-certs-dir", dest="registry_certs_dir",
                   help="Per-registry TLS directories <dir>/<host[:port]>/ (default /etc/docker/certs.d)")
    p.add_argument("-b", "--bridge", help="The default bridge network's device (default dockyard0)")
    p.add_argument("--bip", help="The default bridge's address and subnet, e.g. 172.18.0.1/16")
    p.add_argument("-v", "--version", action="version", version=f"dockyardd version {__version__}")
    ns = vars(p.parse_args(argv))
    config_file = ns.pop("config_file")
    return {k: v for k, v in ns.items() if v is not None}, config_file


def _lock_pidfile(path: str) -> int:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise InvalidArgument(f"pid file found, ensure dockyardd is not running or delete {path}") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


async def _serve(engine, hosts: list[str]) -> None:
    from aiohttp import web

    from dockyard.daemon.api.server import create_app

    runner = web.AppRunner(create_app(engine), access_log=None, handle_signals=False)
    await runner.setup()
    sockets: list[str] = []
    for host in hosts:
        url = urlparse(host if "://" in host else f"unix://{host}")
        if url.scheme == "unix":
            path = url.path
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if os.path.exists(path):
                os.unlink(path)  # we hold the pid file, so a socket left here is stale
            site = web.UnixSite(runner, path)
            await site.start()
            os.chmod(path, 0o660)
            sockets.append(path)
        elif url.scheme in ("tcp", "http"):
            site = web.TCPSite(runner, url.hostname or "127.0.0.1", url.port or 2375)
            await site.start()
        else:
            raise InvalidArgument(f"invalid host: {host}")
        log.info("API listen on %s", host)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"dockyardd {__version__} ready", file=sys.stderr, flush=True)
    await stop.wait()
    log.info("shutting down")
    engine.containers.end_waits()  # a wait blocks a thread until its container exits
    await runner.cleanup()
    for path in sockets:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def _raise_fd_limit() -> None:
    """Soft RLIMIT_NOFILE up to the hard limit, as dockerd (Go) does: a pull keeps a
    thousand directory fds per layer it unpacks. Containers get their own limits."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: list[str] | None = None) -> int:
    flags, config_file = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        file_values = cfgmod.load_file(config_file) if config_file else {}
        config = cfgmod.merge(flags, file_values)
    except DockyardError as e:
        print(f"dockyardd: {e}", file=sys.stderr)
        return 1
    logging.basicConfig(
        level=logging.DEBUG if config.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if os.geteuid() != 0:
        print("dockyardd: must be run as root", file=sys.stderr)
        return 1
    _raise_fd_limit()
    try:
        pid_fd = _lock_pidfile(config.pidfile)
    except DockyardError as e:
        print(f"dockyardd: {e}", file=sys.stderr)
        return 1
    try:
        from dockyard.daemon.engine import Engine

        engine = Engine(config)
        try:
            asyncio.run(_serve(engine, config.hosts))
        finally:
            engine.close()
    except DockyardError as e:
        print(f"dockyardd: {e}", file=sys.stderr)
        return 1
    finally:
        os.close(pid_fd)
        try:
            os.unlink(config.pidfile)
        except FileNotFoundError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
