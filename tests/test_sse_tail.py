"""``manage.py sse_tail``: a process of its own, a real Redis, Ctrl-C."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from sse._stream.events import prepare
from sse._transport import Broker
from tests.servers import ROOT, RedisServer, free_port

pytestmark = pytest.mark.redis

START_TIMEOUT = 60.0  # a Django start on a busy machine


class Tail:
    """``manage.py sse_tail`` running, its output read as it comes."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "sse_tail", *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # Ctrl-C must reach it, even from a shell that started this test
            # in the background (SIGINT ignored, and inherited so).
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr = ""
        self._live = threading.Event()
        self._stdout_reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._stdout_reader.start()
        self._stderr_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._stderr_reader.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr += line
            if line.startswith("Tailing session"):
                self._live.set()

    def wait_live(self) -> None:
        """Until it says it is subscribed: whatever is published next, it prints."""
        assert self._live.wait(START_TIMEOUT), self.stderr

    def messages(self, count: int, timeout: float = START_TIMEOUT) -> list[dict[str, Any]]:
        found = []
        deadline = time.monotonic() + timeout
        while len(found) < count:
            line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            assert line is not None, f"ended after {found}: {self.stderr}"
            assert line.endswith("\n")
            found.append(json.loads(line))
        return found

    def stop(self, signum: int = signal.SIGINT) -> int:
        self.proc.send_signal(signum)
        code = self.proc.wait(30)
        self._stderr_reader.join(10)
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for reader in (self._stdout_reader, self._stderr_reader):
            reader.join(10)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()

    def rest(self) -> list[str]:
        """What it printed after the lines read so far (once it has ended)."""
        lines = []
        while (line := self.lines.get(timeout=10)) is not None:
            lines.append(line)
        return lines


@pytest.fixture
def tail(redis_server: RedisServer) -> Iterator[Any]:
    started: list[Tail] = []

    def start(*args: str, sse: dict[str, Any] | None = None, redis: bool | str = True) -> Tail:
        """``redis``: the suite's server, no REDIS_URL (False), or this URL."""
        env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "SSE_OVERRIDES"}}
        env |= {"DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONUNBUFFERED": "1"}
        env["SSE_OVERRIDES"] = json.dumps(sse or {})
        if redis:
            env["REDIS_URL"] = redis if isinstance(redis, str) else redis_server.url
        started.append(Tail(list(args), env))
        return started[-1]

    yield start
    for running in started:
        running.close()


def _publish(broker: Broker, session_id: str, n: int) -> str:
    return broker.publish(session_id, prepare(session_id, "tool_status", {"n": n}))


def test_buffered_events_past_from_then_live_ones_until_ctrl_c(
    tail: Any, redis_publisher: Broker
) -> None:
    sid = f"s-{uuid.uuid4().hex}"
    ids = [_publish(redis_publisher, sid, n) for n in range(3)]
    running = tail(sid, "--from", ids[0])
    assert running.messages(2) == [
        {
            "id": ids[n],
            "type": "tool_status",
            "session_id": sid,
            "data": {"n": n},
            "timestamp": int(ids[n].split("-")[0]),
        }
        for n in (1, 2)
    ]
    running.wait_live()
    live = _publish(redis_publisher, sid, 3)
    assert [message["id"] for message in running.messages(1)] == [live]
    assert running.stop(signal.SIGINT) == 0
    assert running.rest() == []
    assert "Traceback" not in running.stderr, running.stderr


def test_without_from_only_new_events_and_sigterm_ends_it(
    tail: Any, redis_publisher: Broker
) -> None:
    sid = f"s-{uuid.uuid4().hex}"
    _publish(redis_publisher, sid, 0)
    running = tail(sid)
    running.wait_live()
    live = [_publish(redis_publisher, sid, n) for n in (1, 2)]
    assert [message["id"] for message in running.messages(2)] == live
    assert running.stop(signal.SIGTERM) == 0
    assert "Traceback" not in running.stderr, running.stderr


def test_events_trimmed_from_the_buffer_are_a_replay_gap(
    tail: Any, redis_publisher: Broker, settings: Any
) -> None:
    settings.SSE = {**settings.SSE, "BUFFER_SIZE": 2}  # the publisher trims the buffer
    sid = f"s-{uuid.uuid4().hex}"
    ids = [_publish(redis_publisher, sid, n) for n in range(5)]
    running = tail(sid, "--from", ids[0], sse={"BUFFER_SIZE": 2})
    gap, *replayed = running.messages(3)
    assert gap["type"] == "replay_gap"
    assert gap["data"] == {"missed_from": ids[0], "resumed_at": ids[3]}
    assert [message["id"] for message in replayed] == ids[3:]
    assert running.stop() == 0


def test_a_redis_restart_does_not_stop_the_tail(
    tail: Any, redis_publisher: Broker, redis_server: RedisServer
) -> None:
    sid = f"s-{uuid.uuid4().hex}"
    running = tail(sid, "--from", "0")
    running.wait_live()
    before = _publish(redis_publisher, sid, 0)
    assert [message["id"] for message in running.messages(1)] == [before]
    redis_server.stop()
    redis_server.start()
    after = _publish(redis_publisher, sid, 1)
    assert [message["id"] for message in running.messages(1, timeout=30)] == [after]
    assert running.stop() == 0


@pytest.mark.parametrize(
    ("args", "redis", "says"),
    [
        (["s1"], False, "sse_tail needs SSE['REDIS_URL']"),
        (["s1", "--from", "yesterday"], True, "is not an event id"),
        (["bad/id"], True, "invalid session id"),
        (["s1"], f"redis://127.0.0.1:{free_port()}/0", "the broker is unavailable"),
    ],
    ids=["memory broker", "bad --from", "bad session id", "nobody at REDIS_URL"],
)
def test_refusals_are_one_clear_line(
    tail: Any, args: list[str], redis: bool | str, says: str
) -> None:
    running = tail(*args, redis=redis)
    assert running.proc.wait(START_TIMEOUT) == 1
    running._stderr_reader.join(10)
    assert says in running.stderr
    assert "Traceback" not in running.stderr
    assert running.rest() == []
