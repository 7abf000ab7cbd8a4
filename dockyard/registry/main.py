"""``dockyard registry serve`` and ``dockyard registry gc``: the registry server as a
program of its own (it shares code with the engine, not a process)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import ssl
import sys

log = logging.getLogger("dockyard.registry")
DEFAULT_ROOT = "/var/lib/dockyard-registry"


def _split_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    try:
        return host.strip("[]") or "0.0.0.0", int(port)
    except ValueError:
        raise SystemExit(f"dockyard registry: invalid --addr {addr!r} (host:port, e.g. :5000)") from None


def load_config(path: str) -> dict:
    """The subset of the distribution registry's config.yml dockyard reads: http.addr,
    http.tls.certificate/key, storage.filesystem.rootdirectory,
    storage.maintenance.readonly.enabled, auth.htpasswd.path (YAML, or JSON)."""
    with open(path) as f:
        text = f.read()
    try:
        import yaml  # type: ignore[import-untyped]

        doc = yaml.safe_load(text) or {}
    except ImportError:
        import json

        doc = json.loads(text)
    http, storage, auth = doc.get("http") or {}, doc.get("storage") or {}, doc.get("auth") or {}
    out = {}
    if http.get("addr"):
        out["addr"] = http["addr"]
    tls = http.get("tls") or {}
    if tls.get("certificate"):
        out["tls_cert"], out["tls_key"] = tls["certificate"], tls.get("key")
    if (storage.get("filesystem") or {}).get("rootdirectory"):
        out["root"] = storage["filesystem"]["rootdirectory"]
    if ((storage.get("maintenance") or {}).get("readonly") or {}).get("enabled"):
        out["read_only"] = True
    if (auth.get("htpasswd") or {}).get("path"):
        out["htpasswd"] = auth["htpasswd"]["path"]
    token = auth.get("token") or {}
    for key, name in (("realm", "token_realm"), ("service", "token_service"), ("issuer", "token_issuer"),
                      ("rootcertbundle", "token_root_certs")):
        if token.get(key):
            out[name] = token[key]
    return out


def serve(argv: list[str], prog: str = "dockyard registry serve") -> int:
    p = argparse.ArgumentParser(prog=prog, description="Serve an OCI distribution (Docker) registry")
    p.add_argument("--addr", help="host:port to listen on (default :5000)")
    p.add_argument("--root", help=f"storage directory (default {DEFAULT_ROOT})")
    p.add_argument("--tls-cert", help="TLS certificate (PEM)")
    p.add_argument("--tls-key", help="TLS private key (PEM)")
    p.add_argument("--htpasswd", help="htpasswd file of bcrypt entries: Basic authentication")
    p.add_argument("--token-realm", help="bearer token auth: the token server's URL")
    p.add_argument("--token-service", help="bearer token auth: this registry's name in tokens (audience)")
    p.add_argument("--token-issuer", help="bearer token auth: the issuer tokens must name")
    p.add_argument("--token-root-certs", help="bearer token auth: PEM certificates token signers chain to")
    p.add_argument("--read-only", action="store_true", default=None, help="refuse every write")
    p.add_argument("--gc-interval", type=float, default=0,
                   help="hours between online garbage collections (0: none; blobs younger than an hour are kept)")
    p.add_argument("--max-body", type=int, default=0, help="bytes a request body may have (0: no limit)")
    p.add_argument("--config", help="a distribution-registry config.yml (its http, storage, auth keys)")
    o = p.parse_args(argv)
    settings = load_config(o.config) if o.config else {}
    for key in ("addr", "root", "tls_cert", "tls_key", "htpasswd", "read_only", "token_realm", "token_service",
                "token_issuer", "token_root_certs"):
        if getattr(o, key) is not None:
            settings[key] = getattr(o, key)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from aiohttp import web

    from dockyard.registry.server import Options, Registry, load_htpasswd
    from dockyard.registry.storage import RegistryStore

    host, port = _split_addr(settings.get("addr") or ":5000")
    root = settings.get("root") or DEFAULT_ROOT
    options = Options(read_only=bool(settings.get("read_only")), max_body=o.max_body)
    try:
        if settings.get("htpasswd"):
            options.htpasswd = load_htpasswd(settings["htpasswd"])
        token_keys = ("token_realm", "token_service", "token_issuer", "token_root_certs")
        if any(settings.get(k) for k in token_keys):
            if not all(settings.get(k) for k in token_keys):
                raise ValueError("token auth needs --token-realm, --token-service, --token-issuer and "
                                 "--token-root-certs")
            if options.htpasswd:
                raise ValueError("one authentication at a time: htpasswd or token")
            from dockyard.registry.tokens import TokenAuth

            options.token = TokenAuth.from_files(*(settings[k] for k in token_keys))
        context = None
        if settings.get("tls_cert"):
            if not settings.get("tls_key"):
                raise ValueError("--tls-cert needs --tls-key")
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(settings["tls_cert"], settings["tls_key"])
        os.makedirs(root, mode=0o700, exist_ok=True)
        store = RegistryStore(root)
    except (OSError, ValueError, ssl.SSLError) as e:
        print(f"dockyard registry: {e}", file=sys.stderr)
        return 1

    async def run() -> None:
        runner = web.AppRunner(Registry(store, options).app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port, ssl_context=context)
        await site.start()
        bound = site._server.sockets[0].getsockname()[1] if site._server else port  # type: ignore[union-attr]
        print(f"dockyard registry listening on {host}:{bound} ({'https' if context else 'http'}), root {root}",
              file=sys.stderr, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        collector = asyncio.create_task(_collect_every(store, o.gc_interval * 3600, stop)) if o.gc_interval else None
        await stop.wait()
        if collector is not None:
            await collector
        await runner.cleanup()

    try:
        asyncio.run(run())
    except OSError as e:
        print(f"dockyard registry: listen {host}:{port}: {e.strerror or e}", file=sys.stderr)
        return 1
    return 0


async def _collect_every(store: object, seconds: float, stop: asyncio.Event) -> None:
    """Online garbage collection while serving: blobs under an hour old are kept (their
    manifest may still be coming)."""
    while True:
        try:
            await asyncio.wait_for(stop.wait(), seconds)
            return
        except TimeoutError:
            pass
        try:
            deleted = await asyncio.to_thread(store.collect, 24 * 3600, False, 3600)  # type: ignore[attr-defined]
            log.info("garbage collection: %d blob(s) deleted", len(deleted))
        except Exception:
            log.exception("garbage collection failed")


def gc(argv: list[str], prog: str = "dockyard registry gc") -> int:
    p = argparse.ArgumentParser(prog=prog, description="Delete blobs no manifest references, and stale uploads")
    p.add_argument("--root", default=DEFAULT_ROOT, help=f"storage directory (default {DEFAULT_ROOT})")
    p.add_argument("--dry-run", action="store_true", help="only list what would be deleted")
    p.add_argument("--stale-uploads", type=float, default=24.0, help="hours after which an idle upload goes")
    o = p.parse_args(argv)
    if not os.path.isdir(o.root):
        print(f"dockyard registry: {o.root}: no such directory", file=sys.stderr)
        return 1
    from dockyard.registry.storage import RegistryStore

    deleted = RegistryStore(o.root).collect(o.stale_uploads * 3600, dry_run=o.dry_run)
    for digest in deleted:
        print(("would delete " if o.dry_run else "deleted ") + digest)
    print(f"{len(deleted)} blob(s) {'to delete' if o.dry_run else 'deleted'}")
    return 0
