"""``python -S -m dockyard.supervisor.main --root DIR --runtime-root DIR`` (the daemon
starts it with ``dockyard.supervisor.command``, the same without runpy): run the
supervisor in the foreground; it prints ``ready`` on stderr once it listens on
``<root>/supervisor.sock`` and exits on SIGTERM, leaving its containers running.

The arguments are parsed by hand: argparse (and the gettext/locale it loads) would stay in
the memory of this long-lived process for two flags."""

from __future__ import annotations

import os
import sys

_USAGE = "usage: dockyard-supervisor --root DIR --runtime-root DIR"
_FLAGS = {"--root": "root", "--runtime-root": "runtime_root"}


def _parse(argv: list[str]) -> dict[str, str]:
    args: dict[str, str] = {}
    it = iter(argv)
    for arg in it:
        if arg in ("-h", "--help"):
            print(_USAGE + "\n\n  --root DIR          state directory (socket, container records)\n"
                  "  --runtime-root DIR  dockyard-runtime state root")
            raise SystemExit(0)
        name, eq, value = arg.partition("=")
        if name not in _FLAGS:
            raise SystemExit(f"{_USAGE}\ndockyard-supervisor: error: unrecognized argument: {arg}")
        if not eq:
            value = next(it, "")
            if not value:
                raise SystemExit(f"{_USAGE}\ndockyard-supervisor: error: {name} needs a value")
        args[_FLAGS[name]] = value
    missing = [flag for flag, key in _FLAGS.items() if key not in args]
    if missing:
        raise SystemExit(f"{_USAGE}\ndockyard-supervisor: error: the following arguments are required: "
                         + ", ".join(missing))
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    from dockyard.errors import DockyardError
    from dockyard.supervisor.server import run

    os.makedirs(args["root"], mode=0o700, exist_ok=True)
    try:
        return run(args["root"], args["runtime_root"])
    except DockyardError as e:
        print(f"dockyard-supervisor: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
