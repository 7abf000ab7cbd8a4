"""dockyard-supervisor: one single-threaded process per data root that holds every
container (forks them in-process, reaps them as a child subreaper, pumps their output into
json-file logs, keeps their exit codes), spoken to over JSON lines on a unix socket.

Protocol (``<root>/supervisor.sock``): one request per line ``{"op": ..., ...}``, one
response line ``{"ok": true, ...}`` or ``{"ok": false, "error": msg, "kind": name}``
where ``kind`` names a class of ``dockyard.errors``. Requests on one connection are
answered in order; ``wait`` holds its connection until the exit, so concurrent callers use
one connection each (``SupervisorClient`` does).
"""

SOCKET_NAME = "supervisor.sock"
