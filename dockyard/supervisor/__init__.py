"""dockyard-supervisor: one single-threaded process per data root that holds every
container (forks them in-process, reaps them as a child subreaper, pumps their output into
json-file logs, keeps their exit codes), spoken to over JSON lines on a unix socket.

Protocol (``<root>/supervisor.sock``): one request per line ``{"op": ..., ...}``, one
response line ``{"ok": true, ...}`` or ``{"ok": false, "error": msg, "kind": name}``
where ``kind`` names a class of ``dockyard.errors``. Requests on one connection are
answered in order; ``wait`` holds its connection until the exit, so concurrent callers use
one connection each (``SupervisorClient`` does). ``attach`` turns its connection into a
stream of the container's output in docker's stdcopy frames after the answer line (see
``server.py``).
"""

SOCKET_NAME = "supervisor.sock"


def command(python: str, root: str, runtime_root: str) -> list[str]:
    """The argv that starts a supervisor: ``-S`` (no site) and ``-c`` rather than ``-m``,
    whose runpy and importlib.util would stay in this long-lived process's memory (~0.7 MB
    of the ~0.4 MB-per-container budget, shared by all). The package must be importable
    (PYTHONPATH)."""
    return [python, "-S", "-c", "import sys; from dockyard.supervisor.main import main; sys.exit(main())",
            "--root", root, "--runtime-root", runtime_root]
