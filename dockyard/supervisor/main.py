"""``python -S -m dockyard.supervisor.main --root DIR --runtime-root DIR``: run the
supervisor in the foreground; it prints ``ready`` on stderr once it listens on
``<root>/supervisor.sock`` and exits on SIGTERM, leaving its containers running."""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="dockyard-supervisor")
    p.add_argument("--root", required=True, help="state directory (socket, container records)")
    p.add_argument("--runtime-root", required=True, help="dockyard-runtime state root")
    args = p.parse_args(argv)
    from dockyard.errors import DockyardError
    from dockyard.supervisor.server import run

    os.makedirs(args.root, mode=0o700, exist_ok=True)
    try:
        return run(args.root, args.runtime_root)
    except DockyardError as e:
        print(f"dockyard-supervisor: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
