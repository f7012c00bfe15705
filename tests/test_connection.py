"""The queue between the broker and one stream: waiting, the alarm, overflow."""

from __future__ import annotations

import asyncio
import gc
import weakref

from sse._stream.events import Event, render
from sse._stream.queue import GRAIN, Connection


def _event(n: int) -> Event:
    return render(b"%d-0" % (1_700_000_000_000 + n), b'"type":"t","session_id":"s","data":{}')


async def test_an_alarm_that_rings_while_the_stream_is_busy_is_not_lost() -> None:
    """The stream is writing when its heartbeat is due: its next wait must
    return at once, or the heartbeat would wait for the next event."""
    loop = asyncio.get_running_loop()
    conn = Connection("s", 10, loop)
    conn.set_alarm(loop.time())
    await asyncio.sleep(GRAIN + 0.01)  # rings while nobody waits
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


async def test_alarms_ring_in_their_order_and_never_early() -> None:
    """Every stream's heartbeat alarm, whatever the order they were set in."""
    loop = asyncio.get_running_loop()
    conns = [Connection(f"s{n}", 10, loop) for n in range(50)]
    start = loop.time()
    due = {conn: start + 0.002 * ((n * 7) % 50) for n, conn in enumerate(conns)}
    rang: list[tuple[float, Connection]] = []

    async def wait(conn: Connection) -> None:
        conn.set_alarm(due[conn])
        assert await conn.get() is None
        rang.append((loop.time(), conn))

    await asyncio.wait_for(asyncio.gather(*(wait(conn) for conn in conns)), 5)
    assert [conn for _, conn in rang] == sorted(conns, key=due.__getitem__)
    assert all(at >= due[conn] for at, conn in rang)
    # Late by less than the grain, give or take the loop's own scheduling.
    assert all(at - due[conn] < GRAIN + 0.02 for at, conn in rang)


async def test_an_alarm_moved_or_cancelled_rings_no_more_and_holds_no_connection() -> None:
    loop = asyncio.get_running_loop()
    closed = Connection("closed", 10, loop)
    closed.set_alarm(loop.time() + 60)
    closed.close()
    gone = weakref.ref(closed)
    del closed
    gc.collect()
    assert gone() is None, "a cancelled alarm keeps its stream in memory"
    moved = Connection("moved", 10, loop)
    moved.set_alarm(loop.time() + 0.01)
    moved.set_alarm(loop.time() + 0.05)  # a new deadline replaces the first
    await asyncio.sleep(0.03)
    assert not moved._rang
    assert await asyncio.wait_for(moved.get(), 1) is None
