"""The CLI's path to `run` stays light: every module it imports is start-up latency (the
issue's budget for `dockyard run --rm busybox true` is 50 ms in all)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

_HEAVY = ["typing", "http", "email", "ssl", "asyncio", "urllib", "aiohttp", "argparse", "shutil", "gettext",
          "locale", "re", "json", "enum", "threading", "importlib"]


def _imported(code: str, modules: list[str]) -> list[str]:
    code += f"\nprint(sorted(set({modules!r}) & set(sys.modules)))\n"
    return subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True,
                          cwd=REPO, env={"PYTHONPATH": str(REPO)}).stdout.split("\n")[-2:-1]


def test_path_to_create_imports_no_heavy_modules() -> None:
    """Until the create request is sent, nothing overlaps the imports."""
    code = (
        "import sys\n"
        "import dockyard.cli.main, dockyard.cli.containers, dockyard.cli.client, dockyard.cli.progress\n"
        "import dockyard.jsonc\n"
        "from dockyard.cli.containers import _parse_run_args\n"
        "_parse_run_args('dockyard run', '', ['-it', '--rm', '-e', 'A=1', 'busybox', 'sh'], True)\n"
    )
    assert _imported(code, [*_HEAVY, "socket", "collections", "types", "contextlib"]) == ["[]"]


def test_attach_path_imports_no_heavy_modules() -> None:
    """What attaching adds (imported while the daemon creates the container; socket.py
    brings enum, which nothing else needs)."""
    code = (
        "import sys\n"
        "from dockyard.cli.containers import _import_attach\n"
        "_import_attach()\n"
    )
    assert _imported(code, [m for m in _HEAVY if m != "enum"]) == ["[]"]
