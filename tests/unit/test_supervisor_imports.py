"""The supervisor's import footprint: it is the one host-side process every container costs,
and what it imports it keeps for its whole life (issue 4's memory goal), so heavy stdlib
modules must stay out — also once a container was created (the runtime's create path and
what its forked children need are imported then)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# what the supervisor's modules, and the runtime's create/exec path, must not pull in
FORBIDDEN = ("asyncio", "ssl", "concurrent", "logging", "dataclasses", "calendar", "typing", "socket",
             "threading", "tempfile", "argparse", "runpy", "inspect", "copy", "selectors", "datetime",
             "json", "re", "enum", "signal",
             # contextlib brings collections, functools, operator, reprlib: ~0.5 MB
             "contextlib", "collections", "functools", "operator", "reprlib", "heapq")

_SCRIPT = """
import sys
import dockyard.supervisor.server
import dockyard.supervisor.main
from dockyard.runtime.container import _import_container_side
_import_container_side()
from dockyard.runtime import cgroups, seccomp, spec, prewarm  # the parent's side of a create
print(" ".join(sorted(m.split(".")[0] for m in sys.modules)))
"""


def test_supervisor_and_create_path_keep_heavy_modules_out() -> None:
    out = subprocess.run([sys.executable, "-S", "-c", _SCRIPT], capture_output=True, text=True, check=True,
                         cwd=REPO, env={"PYTHONPATH": str(REPO)}).stdout.split()
    assert sorted(set(FORBIDDEN) & set(out)) == []


def test_logs_package_imports_the_reader_lazily() -> None:
    script = ("import sys, dockyard.logs; assert 'asyncio' not in sys.modules; "
              "from dockyard.logs import read_logs, aread_logs; assert 'asyncio' in sys.modules; "
              "from dockyard.logs.reader import read_logs as r; assert r is read_logs")
    subprocess.run([sys.executable, "-S", "-c", script], check=True, cwd=REPO, env={"PYTHONPATH": str(REPO)})


def test_json_file_options_value_semantics() -> None:
    import pytest

    from dockyard.logs import JSONFileOptions, parse_log_opts

    a = parse_log_opts({"max-size": "1k", "tag": "x"})
    assert a == JSONFileOptions(1000, 3, False, {"tag": "x"}) and a != JSONFileOptions(1000)
    assert hash(a) == hash(JSONFileOptions(1000, 3, False, {"tag": "x"}))
    assert repr(JSONFileOptions()) == (
        "JSONFileOptions(max_size=10485760, max_file=3, compress=False, extra={})")
    with pytest.raises(AttributeError):
        a.max_size = 5  # type: ignore[misc]
