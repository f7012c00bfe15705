"""The queue between the broker and one stream: waiting, the alarm, overflow,
and sending events to a waiting stream's client from the broker's callback."""

from __future__ import annotations

import asyncio

from sse.connection import Connection
from sse.events import Event, render


def _event(n: int) -> Event:
    return render(b"%d-0" % (1_700_000_000_000 + n), b'"type":"t","session_id":"s","data":{}')


async def test_an_alarm_that_rings_while_the_stream_is_busy_is_not_lost() -> None:
    """The stream is writing when its heartbeat is due: its next wait must
    return at once, or the heartbeat would wait for the next event."""
    loop = asyncio.get_running_loop()
    conn = Connection("s", 10, loop)
    conn.set_alarm(loop.time())
    await asyncio.sleep(0.01)  # rings while nobody waits
    assert conn.alarm_at is None
    assert conn.wait() is None
    assert conn.take() is None
    waiter = conn.wait()  # rang once: the next wait waits
    assert waiter is not None
    assert not waiter.done()


async def test_an_alarm_wakes_a_waiting_stream_once_and_can_be_cancelled() -> None:
    loop = asyncio.get_running_loop()
    conn = Connection("s", 10, loop)
    conn.set_alarm(loop.time() + 0.02)
    assert await asyncio.wait_for(conn.get(), 1) is None
    conn.set_alarm(loop.time() + 0.02)
    conn.cancel_alarm()
    assert await conn.get(0.1) is None
    assert not conn._rang  # the cancelled alarm never rang


async def test_events_wake_the_stream_and_are_taken_in_one_go() -> None:
    loop = asyncio.get_running_loop()
    conn = Connection("s", 2, loop)
    waiter = conn.wait()
    assert waiter is not None
    for n in range(5):  # a burst to a waiting stream: more than the bound
        conn.offer(_event(n))
    await asyncio.wait_for(waiter, 1)
    batch = conn.take()
    assert batch is not None
    assert [event.key[0] for event in batch] == [1_700_000_000_000 + n for n in range(5)]
    assert conn.ended is None


async def test_a_stream_that_does_not_take_its_events_overflows() -> None:
    loop = asyncio.get_running_loop()
    conn = Connection("s", 2, loop)
    for n in range(3):
        conn.offer(_event(n))
    assert conn.ended == "overflow"
    assert conn.take() is None


async def test_a_cancelled_get_leaves_the_connection_usable() -> None:
    loop = asyncio.get_running_loop()
    conn = Connection("s", 2, loop)
    task = loop.create_task(conn.get())
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    for n in range(3):  # not waiting any more: the bound applies again
        conn.offer(_event(n))
    assert conn.ended == "overflow"


class _Client:
    """The server side of ASGI ``send``, as far as a stream needs it: each
    body message is written at once, unless the client is not reading."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.reading: asyncio.Future[None] | None = None

    async def send(self, message: dict) -> None:
        assert message["type"] == "http.response.body"
        assert message["more_body"]
        if self.reading is not None:
            await self.reading
        self.written.append(message["body"])


def _sent_to_client(maxsize: int, reading: bool = True) -> tuple[Connection, _Client]:
    """A connection whose events go to a client through its ``send``."""
    loop = asyncio.get_running_loop()
    conn = Connection("s", maxsize, loop)
    client = _Client()
    conn.send = client.send
    if not reading:
        client.reading = loop.create_future()
    return conn, client


async def test_events_for_a_waiting_stream_are_sent_without_waking_it() -> None:
    conn, client = _sent_to_client(2)
    waiter = conn.wait()
    assert waiter is not None
    events = [_event(n) for n in range(5)]
    for event in events:  # more than the bound: it only holds what waits
        conn.offer(event)
    assert client.written == [event.frame for event in events]
    assert not waiter.done()
    assert len(conn) == 0
    assert conn.ended is None


async def test_while_a_send_waits_for_the_client_later_events_wait_behind_it() -> None:
    conn, client = _sent_to_client(10, reading=False)
    waiter = conn.wait()
    assert waiter is not None
    events = [_event(n) for n in range(3)]
    for event in events:
        conn.offer(event)
    await asyncio.wait_for(waiter, 1)  # the later events woke the stream
    batch = conn.take()
    assert batch == events[1:]
    assert conn.sending
    flushed = asyncio.create_task(conn.flush())
    await asyncio.sleep(0.01)
    assert not flushed.done()
    assert client.written == []
    client.reading.set_result(None)  # the client reads again
    await asyncio.wait_for(flushed, 1)
    assert client.written == [events[0].frame]
    assert not conn.sending


async def test_a_client_that_stops_reading_overflows_its_stream() -> None:
    conn, client = _sent_to_client(2, reading=False)
    conn.wait()
    conn.offer(_event(0))  # waits for the client
    conn.take()  # the stream woke up and now waits for that send
    for n in range(1, 4):
        conn.offer(_event(n))
    assert conn.ended == "overflow"
    await asyncio.sleep(0.01)
    assert not conn.sending  # the stuck send was cancelled
    assert client.written == []


async def test_a_send_that_fails_ends_the_stream_and_is_logged(caplog) -> None:
    loop = asyncio.get_running_loop()
    conn = Connection("s", 2, loop)

    async def broken(message: dict) -> None:
        raise RuntimeError("the server refused the message")

    conn.send = broken
    conn.wait()
    conn.offer(_event(0))
    assert conn.ended == "error"
    assert "sending an event failed" in caplog.text
    assert "the server refused the message" in caplog.text
