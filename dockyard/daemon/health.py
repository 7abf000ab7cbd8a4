"""Healthchecks, as docker runs them: from a container's start, every Interval its Test runs
as an exec in the container (Timeout kills it); success makes the container healthy,
Retries failures in a row unhealthy — failures during StartPeriod do not count. The state
(Status, FailingStreak, the last five results) is kept in the container's record; a change
of status is a ``health_status: <status>`` event. One thread per container with a check,
ending with its run."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from dockyard.errors import DockyardError
from dockyard.logs import format_time

log = logging.getLogger("dockyard.health")

_NS = 1_000_000_000
DEFAULT_INTERVAL = 30 * _NS
DEFAULT_TIMEOUT = 30 * _NS
DEFAULT_RETRIES = 3
_LOG_KEPT = 5
_OUTPUT_MAX = 4096


def probe_command(healthcheck: dict[str, Any] | None) -> list[str] | None:
    """The command a healthcheck runs, or None (no check, or ``NONE``)."""
    test = (healthcheck or {}).get("Test") or []
    if not test or test[0] == "NONE":
        return None
    if test[0] == "CMD-SHELL":
        return ["/bin/sh", "-c", " ".join(test[1:])]
    if test[0] == "CMD":
        return list(test[1:])
    return None


def _now() -> str:
    return format_time(time.time_ns())


class HealthMonitor:
    def __init__(self, svc: Any, cid: str, run: str, healthcheck: dict[str, Any], command: list[str]) -> None:
        self.svc, self.cid, self.run = svc, cid, run  # run: the StartedAt of the run it checks
        self.interval = (healthcheck.get("Interval") or DEFAULT_INTERVAL) / _NS
        self.timeout = (healthcheck.get("Timeout") or DEFAULT_TIMEOUT) / _NS
        self.start_period = (healthcheck.get("StartPeriod") or 0) / _NS
        retries = healthcheck.get("Retries")
        self.retries = DEFAULT_RETRIES if not retries else int(retries)
        self.command = command
        self.stopped = threading.Event()
        self.started = time.monotonic()

    def start(self) -> None:
        threading.Thread(target=self._loop, name=f"health-{self.cid[:12]}", daemon=True).start()

    def stop(self) -> None:
        self.stopped.set()

    def _loop(self) -> None:
        while not self.stopped.wait(self.interval):
            if not self.svc.health_run_is(self.cid, self.run):
                return
            begun = _now()
            try:
                code, output = self.svc.engine.execs.run_probe(self.cid, self.command, self.timeout)
            except DockyardError as e:
                code, output = -1, str(e)
            except Exception:  # a probe must never kill the monitor silently
                log.exception("health probe of %s failed", self.cid)
                code, output = -1, "health probe failed"
            if self.stopped.is_set():
                return
            self._record(begun, code, output)

    def _record(self, begun: str, code: int, output: str) -> None:
        start_period = time.monotonic() - self.started < self.start_period
        entry = {"Start": begun, "End": _now(), "ExitCode": code, "Output": output[:_OUTPUT_MAX]}

        def update(health: dict[str, Any]) -> str:
            health["Log"] = [*(health.get("Log") or []), entry][-_LOG_KEPT:]
            if code == 0:
                health["Status"], health["FailingStreak"] = "healthy", 0
            elif not start_period:
                health["FailingStreak"] = int(health.get("FailingStreak") or 0) + 1
                if health["FailingStreak"] >= self.retries:
                    health["Status"] = "unhealthy"
            return health["Status"]

        self.svc.update_health(self.cid, self.run, update)
