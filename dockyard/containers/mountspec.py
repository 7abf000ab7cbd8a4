"""A create request's mounts, as docker reads them: ``HostConfig.Binds`` (``-v src:dst[:opts]``),
``HostConfig.Mounts`` (``--mount``), ``HostConfig.Tmpfs`` (``--tmpfs``) and the anonymous
volumes of ``Config.Volumes`` (the image's VOLUME entries and ``-v /path``), validated with
docker's messages. The result is a list of :class:`MountPoint` in docker's inspect shape plus
what the daemon needs to make each one (volumes to create, bind sources to create, tmpfs
options). Nothing here touches the host: the daemon acts on the result once it is valid.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field
from typing import Any

from dockyard.errors import InvalidArgument
from dockyard.volumes import validate_name

_PROPAGATIONS = ("shared", "slave", "private", "rshared", "rslave", "rprivate")
_BIND_MODES = ("ro", "rw", "z", "Z", "nocopy", *_PROPAGATIONS)


@dataclass
class MountPoint:
    type: str  # bind | volume | tmpfs
    destination: str
    source: str = ""  # a host path (bind), a volume name (volume; "" = anonymous), "" (tmpfs)
    rw: bool = True
    mode: str = ""
    propagation: str = ""
    nocopy: bool = False
    create_source: bool = False  # -v: a missing bind source is created as a directory
    tmpfs_options: list[str] = field(default_factory=list)
    volume_labels: dict[str, str] | None = None
    volume_options: dict[str, str] | None = None
    in_inspect: bool = True  # --tmpfs mounts are not in docker's inspect Mounts


def _bad_spec(spec: str, why: str = "") -> InvalidArgument:
    return InvalidArgument(f"invalid volume specification: '{spec}'" + (f": {why}" if why else ""))


def _check_target(kind: str, target: str) -> str:
    if not target:
        raise InvalidArgument(f'invalid mount config for type "{kind}": field Target must not be empty')
    if not target.startswith("/"):
        raise InvalidArgument(f"invalid mount config for type \"{kind}\": invalid mount path: '{target}' mount path must be absolute")
    clean = posixpath.normpath("/" + target.lstrip("/"))  # normpath would keep a leading "//"
    if clean == "/":
        raise InvalidArgument(f'invalid mount config for type "{kind}": invalid specification: destination can\'t be \'/\'')
    return clean


def _parse_bind(spec: str) -> MountPoint:
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise _bad_spec(spec)
    src, dst = parts[0], parts[1]
    modes = parts[2].split(",") if len(parts) == 3 else []
    for m in modes:
        if m not in _BIND_MODES:
            raise _bad_spec(spec, f"invalid mode: {parts[2]}")
    if "ro" in modes and "rw" in modes:
        raise _bad_spec(spec, f"invalid mode: {parts[2]}")
    kind = "bind" if src.startswith("/") else "volume"
    try:
        dst = _check_target(kind, dst)
    except InvalidArgument as e:
        raise _bad_spec(spec, str(e)) from None
    propagation = next((m for m in modes if m in _PROPAGATIONS), "")
    mode = ",".join(modes)
    if kind == "bind":
        if "nocopy" in modes:
            raise _bad_spec(spec, "invalid mode: nocopy is only for volumes")
        return MountPoint("bind", dst, posixpath.normpath(src), rw="ro" not in modes, mode=mode,
                          propagation=propagation or "rprivate", create_source=True)
    if propagation:
        raise _bad_spec(spec, f"invalid mode: {parts[2]}")
    validate_name(src)
    return MountPoint("volume", dst, src, rw="ro" not in modes, mode=mode or "z", nocopy="nocopy" in modes)


def _string_map(value: Any, what: str) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise InvalidArgument(f"{what} must be an object of strings")
    return dict(value)


def _parse_mount(m: Any) -> MountPoint:
    if not isinstance(m, dict):
        raise InvalidArgument("invalid mount config: a mount must be an object")
    kind = m.get("Type")
    if kind not in ("bind", "volume", "tmpfs"):
        raise InvalidArgument(f"invalid mount config: mount type unknown: {kind!r}" if kind else
                              "invalid mount config: mount type unknown")
    target = _check_target(kind, m.get("Target") or "")
    source = m.get("Source") or ""
    rw = not m.get("ReadOnly")
    if kind == "bind":
        if not source:
            raise InvalidArgument('invalid mount config for type "bind": field Source must not be empty')
        if not source.startswith("/"):
            raise InvalidArgument(f"invalid mount config for type \"bind\": invalid mount path: '{source}' mount path must be absolute")
        if not os.path.exists(source):
            raise InvalidArgument(f'invalid mount config for type "bind": bind source path does not exist: {source}')
        if m.get("VolumeOptions") or m.get("TmpfsOptions"):
            raise InvalidArgument('invalid mount config for type "bind": mount options not allowed for type bind')
        propagation = (m.get("BindOptions") or {}).get("Propagation") or "rprivate"
        if propagation not in _PROPAGATIONS:
            raise InvalidArgument(f"invalid mount config for type \"bind\": invalid propagation mode: {propagation}")
        return MountPoint("bind", target, posixpath.normpath(source), rw=rw, propagation=propagation)
    if kind == "volume":
        if m.get("BindOptions") or m.get("TmpfsOptions"):
            raise InvalidArgument('invalid mount config for type "volume": mount options not allowed for type volume')
        if source:
            validate_name(source)
        opts = m.get("VolumeOptions") or {}
        driver = (opts.get("DriverConfig") or {})
        if driver.get("Name") not in (None, "", "local"):
            raise InvalidArgument(f'invalid mount config for type "volume": volume driver {driver.get("Name")} is not supported')
        return MountPoint("volume", target, source, rw=rw, nocopy=bool(opts.get("NoCopy")),
                          volume_labels=_string_map(opts.get("Labels"), "VolumeOptions.Labels"),
                          volume_options=_string_map(driver.get("Options"), "DriverConfig.Options"))
    # tmpfs
    if source:
        raise InvalidArgument('invalid mount config for type "tmpfs": field Source must be empty')
    if m.get("BindOptions") or m.get("VolumeOptions"):
        raise InvalidArgument('invalid mount config for type "tmpfs": mount options not allowed for type tmpfs')
    topts = m.get("TmpfsOptions") or {}
    options = ["nosuid", "nodev", "noexec"]
    if topts.get("SizeBytes"):
        size = topts["SizeBytes"]
        if not isinstance(size, int) or size < 0:
            raise InvalidArgument('invalid mount config for type "tmpfs": invalid size')
        options.append(f"size={size}")
    if topts.get("Mode"):
        options.append(f"mode={int(topts['Mode']):o}")
    return MountPoint("tmpfs", target, "", rw=rw, tmpfs_options=options)


def _parse_tmpfs(dest: str, opts: str) -> MountPoint:
    target = _check_target("tmpfs", dest)
    options = ["nosuid", "nodev", "noexec"]
    rw = True
    for o in (opts.split(",") if opts else []):
        if o in ("ro", "rw"):
            rw = o == "rw"
        elif o in ("exec", "noexec", "suid", "nosuid", "dev", "nodev"):
            options = [x for x in options if x.removeprefix("no") != o.removeprefix("no")] + [o]
        elif o.startswith(("size=", "mode=", "uid=", "gid=", "nr_inodes=")) or o in ("relatime", "noatime", "strictatime"):
            options.append(o)
        else:
            raise InvalidArgument(f"invalid tmpfs option {o!r}")
    return MountPoint("tmpfs", target, "", rw=rw, tmpfs_options=options, in_inspect=False)


def parse_mounts(config: dict[str, Any], host_config: dict[str, Any]) -> list[MountPoint]:
    """Every mount of a create request, in the order they are made, validated."""
    out: list[MountPoint] = []
    binds = host_config.get("Binds") or []
    if not isinstance(binds, list) or not all(isinstance(b, str) for b in binds):
        raise InvalidArgument("HostConfig.Binds must be a list of strings")
    out += [_parse_bind(b) for b in binds]
    mounts = host_config.get("Mounts") or []
    if not isinstance(mounts, list):
        raise InvalidArgument("HostConfig.Mounts must be a list")
    out += [_parse_mount(m) for m in mounts]
    tmpfs = host_config.get("Tmpfs") or {}
    if not isinstance(tmpfs, dict):
        raise InvalidArgument("HostConfig.Tmpfs must be an object")
    out += [_parse_tmpfs(dest, opts or "") for dest, opts in tmpfs.items()]
    seen: set[str] = set()
    for mp in out:
        if mp.destination in seen:
            raise InvalidArgument(f"Duplicate mount point: {mp.destination}")
        seen.add(mp.destination)
    # the image's and the request's VOLUME entries that nothing else mounts: anonymous volumes
    for dest in sorted(config.get("Volumes") or {}):
        target = _check_target("volume", dest)
        if target not in seen:
            out.append(MountPoint("volume", target, ""))
            seen.add(target)
    return out


def volumes_from(spec: str) -> tuple[str, bool | None]:
    """``container[:ro|:rw]`` -> (container, read-only override or None)."""
    name, _, mode = spec.partition(":")
    if not name or mode not in ("", "ro", "rw"):
        raise InvalidArgument(f"invalid mode: {mode}" if name else f"invalid volumes-from spec: {spec!r}")
    return name, None if not mode else mode == "ro"
