"""System endpoints: /_ping, /version, /info."""

from __future__ import annotations

import asyncio
import os
import platform
import socket
import sys

from aiohttp import web

from dockyard import API_VERSION, MIN_API_VERSION, __version__
from dockyard.daemon.api.server import Router, engine_of, qbool, read_json
from dockyard.images.model import host_platform

_PING_HEADERS = {
    "Cache-Control": "no-cache, no-store, must-revalidate",
    "Pragma": "no-cache",
    "Docker-Experimental": "false",
    "Builder-Version": "1",  # the classic builder: there is no BuildKit here
    "Swarm": "inactive",
}


async def ping(request: web.Request) -> web.Response:
    body = None if request.method == "HEAD" else "OK"
    return web.Response(text=body, content_type="text/plain", headers=_PING_HEADERS)


def _kernel() -> str:
    return platform.release()


async def version(request: web.Request) -> web.Response:
    arch = host_platform()["architecture"]
    engine = {
        "Version": __version__,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": f"python{sys.version_info.major}.{sys.version_info.minor}",
        "Os": "linux",
        "Arch": arch,
        "KernelVersion": _kernel(),
        "BuildTime": "",
    }
    return web.json_response({
        "Platform": {"Name": "dockyard"},
        "Components": [{"Name": "Engine", "Version": __version__, "Details": {k: str(v) for k, v in engine.items() if k != "Version"}}],
        **engine,
    })


def _os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


def _cgroup_version() -> str:
    return "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1"


async def info(request: web.Request) -> web.Response:
    engine = engine_of(request)
    images = await _to_thread(engine.images.count)
    counts = await _to_thread(engine.containers.count)
    cfg = engine.config
    return web.json_response({
        "ID": engine.id,
        **counts,
        "Images": images,
        "Driver": engine.snapshotter.name,
        "DriverStatus": [["Backing Filesystem", "extfs"]] if engine.snapshotter.name == "overlay" else [],
        "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "null"], "Authorization": None, "Log": ["json-file"]},
        "MemoryLimit": True,
        "SwapLimit": True,
        "CpuCfsPeriod": True,
        "CpuCfsQuota": True,
        "CPUShares": True,
        "CPUSet": True,
        "PidsLimit": True,
        "IPv4Forwarding": True,
        "Debug": cfg.debug,
        "NFd": len(os.listdir("/proc/self/fd")),
        "NGoroutines": 0,
        "SystemTime": _now(),
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": _cgroup_version(),
        "NEventsListener": 0,
        "KernelVersion": _kernel(),
        "OperatingSystem": _os_name(),
        "OSVersion": "",
        "OSType": "linux",
        "Architecture": platform.machine(),
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": _registry_config(cfg),
        "NCPU": os.cpu_count() or 1,
        "MemTotal": _mem_total(),
        "DockerRootDir": cfg.data_root,
        "Name": socket.gethostname(),
        "Labels": [],
        "ExperimentalBuild": False,
        "ServerVersion": __version__,
        "Runtimes": {"runc": {"path": "dockyard-runtime"}},
        "DefaultRuntime": "runc",
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": False, "Error": "", "RemoteManagers": None},
        "LiveRestoreEnabled": True,
        "Isolation": "",
        "InitBinary": "",
        "SecurityOptions": ["name=seccomp,profile=builtin"],
        "Warnings": None,
    })


def _registry_config(cfg: object) -> dict:
    """dockerd's RegistryConfig: CIDRs and names of insecure registries, docker.io's mirrors."""
    import ipaddress

    cidrs, names = ["127.0.0.0/8", "::1/128"], []
    for entry in cfg.insecure_registries:  # type: ignore[attr-defined]
        try:
            cidrs.append(str(ipaddress.ip_network(entry, strict=False)))
        except ValueError:
            names.append(entry)
    mirrors = [m.rstrip("/") + "/" for m in cfg.registry_mirrors]  # type: ignore[attr-defined]
    indexes = {"docker.io": {"Name": "docker.io", "Mirrors": mirrors, "Secure": True, "Official": True}}
    for name in names:
        indexes[name] = {"Name": name, "Mirrors": [], "Secure": False, "Official": False}
    return {"InsecureRegistryCIDRs": list(dict.fromkeys(cidrs)), "IndexConfigs": indexes, "Mirrors": mirrors}


def _mem_total() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _now() -> str:
    from dockyard.images.timefmt import now_rfc3339

    return now_rfc3339()


async def _to_thread(fn, *args):
    import asyncio

    return await asyncio.to_thread(fn, *args)


async def system_df(request: web.Request) -> web.Response:
    from dockyard.daemon.diskusage import disk_usage

    return web.json_response(await asyncio.to_thread(disk_usage, engine_of(request)))


async def prune_build_cache(request: web.Request) -> web.Response:
    """POST /build/prune: the classic builder's cache entries (their images stay images, for
    ``image prune``): those whose image is gone, or all of them with ``all``."""
    engine = engine_of(request)
    deleted = await asyncio.to_thread(engine.build_cache.prune, engine.images.metadata.exists,
                                      qbool(request, "all"))
    return web.json_response({"CachesDeleted": deleted or None, "SpaceReclaimed": 0})


async def login(request: web.Request) -> web.Response:
    """POST /auth: check credentials against the registry as ``docker login`` does; the
    registry's refresh token, when it gives one, comes back as the IdentityToken."""
    from dockyard.distribution.auth import AuthConfig
    from dockyard.distribution.hosts import normalize_server
    from dockyard.distribution.registry import open_registry

    auth = AuthConfig.from_json(await read_json(request))
    host = normalize_server(auth.server or "https://index.docker.io/v1/")
    registry = open_registry(engine_of(request).registries, host, auth, push=True)
    token = await asyncio.to_thread(registry.login)
    return web.json_response({"Status": "Login Succeeded", "IdentityToken": token})


def register(router: Router) -> None:
    router.add("POST", "/auth", login)
    router.add("GET", "/system/df", system_df)
    router.add("POST", "/build/prune", prune_build_cache)
    router.add("GET", "/_ping", ping)
    router.add("HEAD", "/_ping", ping)
    router.add("GET", "/version", version)
    router.add("GET", "/info", info)
