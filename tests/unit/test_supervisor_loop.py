"""The supervisor's own event loop (dockyard/supervisor/loop.py), on real fds and signals."""

from __future__ import annotations

import os
import signal
import socket

import pytest

from dockyard.supervisor.loop import Loop


@pytest.fixture
def loop():
    lp = Loop()
    yield lp
    lp.close()


def test_task_awaits_future_and_returns(loop: Loop) -> None:
    fut = loop.create_future()

    async def coro() -> int:
        return await fut + 1

    task = loop.create_task(coro())
    loop.call_later(0.01, fut.set_result, 41)
    assert loop.run_until_complete(task) == 42


def test_task_exception_propagates_to_awaiter(loop: Loop) -> None:
    fut = loop.create_future()

    async def inner() -> None:
        await fut

    async def outer() -> str:
        try:
            await loop.create_task(inner())
        except KeyError as e:
            return f"caught {e.args[0]}"
        return "not raised"

    task = loop.create_task(outer())
    loop.call_soon(fut.set_exception, KeyError("x"))
    assert loop.run_until_complete(task) == "caught x"


def test_callbacks_run_after_set_result_not_inside(loop: Loop) -> None:
    order: list[str] = []
    fut = loop.create_future()
    fut.add_done_callback(lambda f: order.append("callback"))
    fut.set_result(None)
    order.append("after set_result")
    done = loop.create_future()
    loop.call_soon(done.set_result, None)
    loop.run_until_complete(done)
    assert order == ["after set_result", "callback"]


def test_reader_and_writer_fire_and_removal_cancels(loop: Loop) -> None:
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        got = loop.create_future()
        loop.add_reader(a.fileno(), lambda: got.set_result(a.recv(10)))
        b.send(b"ping")
        assert loop.run_until_complete(got) == b"ping"
        loop.remove_reader(a.fileno())
        writable = loop.create_future()

        def on_writable() -> None:
            loop.remove_writer(b.fileno())
            writable.set_result(True)

        loop.add_writer(b.fileno(), on_writable)
        assert loop.run_until_complete(writable) is True
        # a reader removed (and its fd closed) by a callback earlier in the same turn must
        # not run: recv on the closed socket would raise out of the loop
        c, d = socket.socketpair()
        with d:
            def close_c() -> None:
                loop.remove_reader(c.fileno())
                c.close()

            loop.add_reader(a.fileno(), close_c)
            loop.add_reader(c.fileno(), lambda: c.recv(10))
            d.send(b"x")
            b.send(b"y")
            stop = loop.create_future()
            loop.call_later(0.05, stop.set_result, None)
            loop.run_until_complete(stop)
            assert c.fileno() == -1
            loop.remove_reader(a.fileno())


def test_timers_in_order_and_cancel(loop: Loop) -> None:
    seen: list[int] = []
    loop.call_later(0.03, seen.append, 3)
    loop.call_later(0.01, seen.append, 1)
    h = loop.call_later(0.02, seen.append, 2)
    h.cancel()
    done = loop.create_future()
    loop.call_later(0.04, done.set_result, None)
    loop.run_until_complete(done)
    assert seen == [1, 3]


def test_signal_handler_runs_as_callback(loop: Loop) -> None:
    got = loop.create_future()
    old = signal.getsignal(signal.SIGUSR1)
    try:
        loop.add_signal_handler(signal.SIGUSR1, lambda: got.set_result("usr1"))
        os.kill(os.getpid(), signal.SIGUSR1)
        assert loop.run_until_complete(got) == "usr1"
    finally:
        signal.signal(signal.SIGUSR1, old)


def test_a_failing_callback_is_reported_and_the_loop_goes_on(loop: Loop, capsys: pytest.CaptureFixture[str]) -> None:
    def boom() -> None:
        raise ValueError("boom")

    loop.call_soon(boom)
    done = loop.create_future()
    loop.call_later(0.01, done.set_result, "still running")
    assert loop.run_until_complete(done) == "still running"
    err = capsys.readouterr().err
    assert "exception in callback" in err and "ValueError: boom" in err
