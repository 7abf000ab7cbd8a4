"""Daemon configuration: dockerd's flag names, and a daemon.json-style file."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any

from dockyard.errors import InvalidArgument

DEFAULT_SOCKET = "unix:///run/dockyard/dockyard.sock"

# daemon.json key -> attribute
_FILE_KEYS = {
    "hosts": "hosts",
    "data-root": "data_root",
    "exec-root": "exec_root",
    "pidfile": "pidfile",
    "debug": "debug",
    "storage-driver": "storage_driver",
    "insecure-registries": "insecure_registries",
    "registry-mirrors": "registry_mirrors",
    "registry-certs-dir": "registry_certs_dir",  # dockyard's: dockerd has the path built in
    "log-opts": "log_opts",
    "init": "init",
    "bridge": "bridge",
    "bip": "bip",
}


@dataclass
class DaemonConfig:
    hosts: list[str] = field(default_factory=list)
    data_root: str = "/var/lib/dockyard"
    exec_root: str = "/run/dockyard"
    pidfile: str = ""
    debug: bool = False
    storage_driver: str = ""  # "" = detect
    insecure_registries: list[str] = field(default_factory=list)
    registry_mirrors: list[str] = field(default_factory=list)
    registry_certs_dir: str = "/etc/docker/certs.d"
    log_opts: dict[str, str] = field(default_factory=dict)
    # dockerd's "init": run every container with --init unless its HostConfig.Init says otherwise
    init: bool = False
    bridge: str = ""  # the default bridge network's device ("" = dockyard0)
    bip: str = ""  # its gateway address and subnet, "172.18.0.1/16" ("" = a free subnet)

    def __post_init__(self) -> None:
        if not isinstance(self.init, bool):
            raise InvalidArgument(f"invalid value for init: {self.init!r} (a boolean is expected)")
        if self.bip:
            from ipaddress import IPv4Interface

            try:
                gateway = IPv4Interface(self.bip)
            except ValueError:
                raise InvalidArgument(f"invalid bip: {self.bip}") from None
            if gateway.ip in (gateway.network.network_address, gateway.network.broadcast_address) or \
                    gateway.network.prefixlen > 30:
                raise InvalidArgument(f"invalid bip {self.bip}: the address must be a host address of its subnet")
        if self.bridge and (len(self.bridge) > 15 or "/" in self.bridge or " " in self.bridge):
            raise InvalidArgument(f"invalid bridge name {self.bridge!r}: at most 15 characters, no '/' or spaces")
        if not self.hosts:
            self.hosts = [f"unix://{self.exec_root}/dockyard.sock"]
        if not self.pidfile:
            self.pidfile = f"{self.exec_root}/dockyardd.pid"


def load_file(path: str) -> dict[str, Any]:
    """Read a daemon.json; unknown keys are an error, as dockerd makes them."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except FileNotFoundError:
        raise InvalidArgument(f"unable to configure the Docker daemon with file {path}: open {path}: no such file or directory") from None
    except ValueError as e:
        raise InvalidArgument(f"unable to configure the Docker daemon with file {path}: {e}") from None
    if not isinstance(doc, dict):
        raise InvalidArgument(f"unable to configure the Docker daemon with file {path}: not a JSON object")
    unknown = sorted(set(doc) - set(_FILE_KEYS))
    if unknown:
        raise InvalidArgument(f"the following directives don't match any configuration option: {', '.join(unknown)}")
    return {_FILE_KEYS[k]: v for k, v in doc.items()}


def merge(flags: dict[str, Any], file_values: dict[str, Any]) -> DaemonConfig:
    """Flags and file together; a setting given in both is an error, as in dockerd."""
    both = sorted(k for k in flags if k in file_values)
    if both:
        names = {v: k for k, v in _FILE_KEYS.items()}
        detail = ", ".join(f"{names[k]}: (from flag: {flags[k]}, from file: {file_values[k]})" for k in both)
        raise InvalidArgument(f"the following directives are specified both as a flag and in the configuration file: {detail}")
    values = {**file_values, **flags}
    known = {f.name for f in fields(DaemonConfig)}
    return DaemonConfig(**{k: v for k, v in values.items() if k in known})
