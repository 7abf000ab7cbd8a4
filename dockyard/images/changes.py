"""``--change`` for import and commit: a Dockerfile instruction applied to an image config.

Only the instructions docker allows there are accepted. The builder's full Dockerfile
parser (a later issue) should take over the parsing; the config mutations stay here.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from dockyard.errors import InvalidArgument

ALLOWED = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR")


def _exec_or_shell(arg: str) -> list[str]:
    """JSON array form as is; anything else is the shell form, run through /bin/sh -c."""
    stripped = arg.strip()
    if stripped.startswith("["):
        try:
            value = json.loads(stripped)
        except ValueError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    return ["/bin/sh", "-c", stripped]


def _pairs(instruction: str, arg: str) -> list[tuple[str, str]]:
    """``k=v k2="v 2"`` or the legacy ``k v`` form of ENV / LABEL."""
    try:
        words = shlex.split(arg)
    except ValueError as e:
        raise InvalidArgument(f"{instruction} {arg}: {e}") from None
    if not words:
        raise InvalidArgument(f"{instruction} requires at least one argument")
    if "=" not in words[0]:
        if len(words) < 2:
            raise InvalidArgument(f"{instruction} must have two arguments")
        return [(words[0], arg.split(None, 1)[1].strip())]
    pairs = []
    for w in words:
        if "=" not in w:
            raise InvalidArgument(f"{instruction} names can not be blank" if w.startswith("=") else f"Syntax error - can't find = in \"{w}\". Must be of the form: name=value")
        k, v = w.split("=", 1)
        if not k:
            raise InvalidArgument(f"{instruction} names can not be blank")
        pairs.append((k, v))
    return pairs


def apply_change(config: dict[str, Any], change: str) -> None:
    """Apply one instruction (e.g. ``ENV A=b``) to an image's ``config`` section in place."""
    parts = change.strip().split(None, 1)
    if not parts:
        return
    instruction = parts[0].upper()
    arg = parts[1] if len(parts) > 1 else ""
    if instruction not in ALLOWED:
        raise InvalidArgument(f"{parts[0]} is not a valid change command")
    if instruction in ("CMD", "ENTRYPOINT"):
        config["Cmd" if instruction == "CMD" else "Entrypoint"] = _exec_or_shell(arg)
    elif instruction == "ENV":
        env = list(config.get("Env") or [])
        for k, v in _pairs("ENV", arg):
            env = [e for e in env if e.split("=", 1)[0] != k] + [f"{k}={v}"]
        config["Env"] = env
    elif instruction == "LABEL":
        labels = dict(config.get("Labels") or {})
        labels.update(_pairs("LABEL", arg))
        config["Labels"] = labels
    elif instruction == "EXPOSE":
        ports = dict(config.get("ExposedPorts") or {})
        for p in arg.split():
            port, _, proto = p.partition("/")
            if not port or not all(x.isdigit() for x in port.split("-")):
                raise InvalidArgument(f"invalid containerPort: {port}")
            ports[f"{port}/{(proto or 'tcp').lower()}"] = {}
        config["ExposedPorts"] = ports
    elif instruction == "VOLUME":
        vols = dict(config.get("Volumes") or {})
        paths = json.loads(arg) if arg.strip().startswith("[") else arg.split()
        for v in paths:
            if not v:
                raise InvalidArgument("VOLUME specified can not be an empty string")
            vols[v] = {}
        config["Volumes"] = vols
    elif instruction == "ONBUILD":
        config["OnBuild"] = list(config.get("OnBuild") or []) + [arg.strip()]
    else:  # single-value instructions
        if not arg.strip():
            raise InvalidArgument(f"{instruction} requires exactly one argument")
        key = {"STOPSIGNAL": "StopSignal", "USER": "User", "WORKDIR": "WorkingDir"}[instruction]
        value = arg.strip()
        if key == "WorkingDir" and not value.startswith("/"):
            value = (config.get("WorkingDir") or "/").rstrip("/") + "/" + value
        config[key] = value
