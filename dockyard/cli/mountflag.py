"""``--mount type=...,source=...,target=...`` into the API's mount object, with docker's CLI
keys and messages (the daemon validates what the mount means)."""

from __future__ import annotations

from dockyard.cli.context import CLIError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_TRUE = ("", "1", "true")
_FALSE = ("0", "false")


def _fail(value: str, why: str) -> CLIError:
    return CLIError(f'invalid argument "{value}" for "--mount" flag: {why}', 125)


def _bool(value: str, key: str, raw: str) -> bool:
    v = value.lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise _fail(raw, f"invalid value for {key}: {value}")


def parse_mount_flag(raw: str) -> dict[str, Any]:
    from dockyard.cli import units
    from dockyard.errors import InvalidArgument

    mount: dict[str, Any] = {"Type": "volume"}
    bind: dict[str, Any] = {}
    volume: dict[str, Any] = {}
    tmpfs: dict[str, Any] = {}
    for field in raw.split(","):
        key, eq, value = field.partition("=")
        key = key.strip().lower()
        if not eq and key not in ("readonly", "ro", "volume-nocopy"):
            raise _fail(raw, f"invalid field '{field}' must be a key=value pair")
        if key == "type":
            mount["Type"] = value
        elif key in ("source", "src"):
            mount["Source"] = value
        elif key in ("target", "dst", "destination"):
            mount["Target"] = value
        elif key in ("readonly", "ro"):
            mount["ReadOnly"] = _bool(value, key, raw)
        elif key == "bind-propagation":
            bind["Propagation"] = value
        elif key == "volume-nocopy":
            volume["NoCopy"] = _bool(value, key, raw)
        elif key == "volume-label":
            k, _, v = value.partition("=")
            volume.setdefault("Labels", {})[k] = v
        elif key == "volume-driver":
            volume.setdefault("DriverConfig", {})["Name"] = value
        elif key == "volume-opt":
            k, _, v = value.partition("=")
            volume.setdefault("DriverConfig", {}).setdefault("Options", {})[k] = v
        elif key == "tmpfs-size":
            try:
                tmpfs["SizeBytes"] = units.ram_in_bytes(value)
            except InvalidArgument:
                raise _fail(raw, f"invalid value for {key}: {value}") from None
        elif key == "tmpfs-mode":
            try:
                tmpfs["Mode"] = int(value, 8)
            except ValueError:
                raise _fail(raw, f"invalid value for {key}: {value}") from None
        else:
            raise _fail(raw, f"unexpected key '{key}' in '{field}'")
    if mount["Type"] not in ("bind", "volume", "tmpfs"):
        raise _fail(raw, f"invalid type: {mount['Type']}" if mount["Type"] else "type is required")
    if not mount.get("Target"):
        raise _fail(raw, "target is required")
    if bind:
        if mount["Type"] != "bind":
            raise _fail(raw, f"cannot mix 'bind-*' options with mount type '{mount['Type']}'")
        mount["BindOptions"] = bind
    if volume:
        if mount["Type"] != "volume":
            raise _fail(raw, f"cannot mix 'volume-*' options with mount type '{mount['Type']}'")
        mount["VolumeOptions"] = volume
    if tmpfs:
        if mount["Type"] != "tmpfs":
            raise _fail(raw, f"cannot mix 'tmpfs-*' options with mount type '{mount['Type']}'")
        mount["TmpfsOptions"] = tmpfs
    return mount
