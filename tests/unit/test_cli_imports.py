"""The CLI's path to `run` stays light: every module it imports is start-up latency (the
issue's budget for `dockyard run --rm busybox true` is 50 ms in all)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_run_path_imports_no_heavy_modules() -> None:
    code = (
        "import sys\n"
        "import dockyard.cli.main, dockyard.cli.containers, dockyard.cli.attach, dockyard.cli.client\n"
        "import dockyard.streams.stdcopy, dockyard.cli.progress\n"
        "from dockyard.cli.containers import _parse_run_args\n"
        "_parse_run_args('dockyard run', '', ['-it', '--rm', '-e', 'A=1', 'busybox', 'sh'], True)\n"
        "bad = {'typing', 'http', 'email', 'ssl', 'asyncio', 'socket', 'urllib', 'aiohttp', 'argparse',\n"
        "       'shutil', 'gettext', 'locale', 're', 'json', 'enum', 'threading', 'importlib'} & set(sys.modules)\n"
        "print(sorted(bad))\n"
    )
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True,
                         cwd=REPO, env={"PYTHONPATH": str(REPO)}).stdout
    assert out.strip() == "[]"
