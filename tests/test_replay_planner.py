"""The replay planner alone: what a client at some position must be sent,
given what the session buffer holds, whether it opens a stream or its
open stream's process lost the broker for a while.  No broker, no Redis."""

from __future__ import annotations

from sse._stream.events import ZERO, Event, EventKey, render
from sse._stream.replay import BufferRead, Gap, plan_catch_up, plan_replay


def _event(ms: int, seq: int = 0) -> Event:
    return render(b"%d-%d" % (ms, seq), b'"type":"t","session_id":"s","data":{}')


def _buffer(
    *keys: tuple[int, ...], trimmed: EventKey | None = None, after: tuple[int, ...] = (0,)
) -> BufferRead:
    """A buffer holding events of ``keys`` (ms, or ms and sequence), read after ``after``."""
    events = [_event(*key) for key in keys]
    start = _event(*after).key
    return BufferRead(True, events[-1].key, trimmed, [e for e in events if e.key > start])


def test_a_fresh_client_starts_at_the_newest_event() -> None:
    replay = plan_replay(_buffer((10,), (20,), after=(20,)), None)
    assert replay.events == []
    assert replay.gap is None
    assert replay.position == (20, 0)


def test_a_fresh_client_of_a_session_without_events_starts_at_zero() -> None:
    assert plan_replay(BufferRead(exists=False), None).position == ZERO


def test_a_client_gets_what_it_missed_in_order_and_no_gap() -> None:
    replay = plan_replay(_buffer((10,), (20,), (30,), after=(10,)), (10, 0))
    assert [event.key for event in replay.events] == [(20, 0), (30, 0)]
    assert replay.gap is None
    assert replay.position == (30, 0)


def test_a_client_that_saw_everything_gets_nothing() -> None:
    replay = plan_replay(_buffer((10,), (20,), after=(20,)), (20, 0))
    assert replay.events == []
    assert replay.gap is None
    assert replay.position == (20, 0)


def test_events_trimmed_past_the_client_give_a_gap_then_the_buffer() -> None:
    read = _buffer((30,), (40,), trimmed=(20, 0), after=(10,))
    replay = plan_replay(read, (10, 0))
    assert replay.gap == Gap("10-0", "30-0")
    assert [event.key for event in replay.events] == [(30, 0), (40, 0)]
    assert replay.position == (40, 0)


def test_a_client_right_at_the_trim_mark_missed_nothing() -> None:
    replay = plan_replay(_buffer((30,), trimmed=(20, 0), after=(20,)), (20, 0))
    assert replay.gap is None


def test_a_position_the_buffer_never_issued_needs_the_whole_buffer() -> None:
    """The buffer was reset (Redis flushed): ids start again below the client's."""
    first = plan_replay(_buffer((5,), (6,), after=(99,)), (99, 0))
    assert first.needs_whole_buffer
    whole = plan_replay(_buffer((5,), (6,)), (99, 0), whole=True)
    assert whole.gap == Gap("99-0", "5-0")
    assert [event.key for event in whole.events] == [(5, 0), (6, 0)]
    assert whole.position == (6, 0)
    assert not whole.needs_whole_buffer


def test_an_expired_buffer_is_a_gap_unless_the_client_had_the_newest_event() -> None:
    expired = BufferRead(exists=False, newest=(50, 0))
    assert plan_replay(expired, (50, 0)).gap is None
    gap = plan_replay(expired, (40, 0)).gap
    assert gap == Gap("40-0", None)


def test_a_session_that_never_had_events_is_no_gap_for_a_client_at_zero() -> None:
    never = BufferRead(exists=False)
    assert plan_replay(never, ZERO).gap is None
    assert plan_replay(never, (1, 0)).gap == Gap("1-0", None)


def test_a_reader_at_a_later_position_than_the_read_gets_only_its_own_tail() -> None:
    """The listener reads once from the lowest position of a session's
    streams; each stream gets what lies after its own."""
    read = _buffer((10,), (20,), (30,), after=(10,))
    assert [e.key for e in plan_replay(read, (20, 0)).events] == [(30, 0)]


def _fenced(*keys: int, fence: int, after: int) -> BufferRead:
    """A buffer whose event at ``fence`` is the first a new primary stored."""
    read = _buffer(*((key,) for key in keys), after=(after,))
    read.fences = tuple(e.key for e in read.events if e.key == (fence, 0))
    return read


def test_a_client_that_had_not_passed_a_fence_gets_a_gap_and_everything_after() -> None:
    # 10 and 20 survived the failover, what the old primary took after 20
    # may be gone, 40 is the new primary's first.
    replay = plan_replay(_fenced(10, 20, 40, 50, fence=40, after=20), (20, 0))
    assert replay.gap == Gap("20-0", "40-0")
    assert [event.key for event in replay.events] == [(40, 0), (50, 0)]
    replay = plan_replay(_fenced(10, 20, 40, 50, fence=40, after=10), (10, 0))
    assert replay.gap == Gap("10-0", "20-0")
    assert [event.key for event in replay.events] == [(20, 0), (40, 0), (50, 0)]


def test_a_client_past_the_fence_gets_no_gap() -> None:
    replay = plan_replay(_fenced(10, 20, 40, 50, fence=40, after=40), (40, 0))
    assert replay.gap is None
    assert [event.key for event in replay.events] == [(50, 0)]


def test_a_client_whose_position_the_new_primary_never_had_gets_a_gap() -> None:
    # The client saw 30, which died with the old primary.
    replay = plan_replay(_fenced(10, 20, 40, fence=40, after=30), (30, 0))
    assert replay.gap == Gap("30-0", "40-0")
    assert [event.key for event in replay.events] == [(40, 0)]


def test_before_a_new_primary_stored_any_event_every_client_gets_a_gap() -> None:
    read = _buffer((10,), (20,), after=(20,))
    read.moved = True
    assert plan_replay(read, (20, 0)).gap == Gap("20-0", None)
    assert plan_replay(read, None).gap is None  # a fresh client is owed nothing


# -- open streams catching up after the broker connection came back ---------------


def test_an_open_stream_gets_what_was_published_meanwhile() -> None:
    replay = plan_catch_up(_buffer((10,), (20,), (30,), after=(10,)), (10, 0), replicated=False)
    assert not replay.resync
    assert [event.key for event in replay.events] == [(20, 0), (30, 0)]
    assert replay.position == (30, 0)


def test_an_open_stream_whose_events_were_trimmed_resyncs() -> None:
    read = _buffer((30,), (40,), trimmed=(20, 0), after=(10,))
    replay = plan_catch_up(read, (10, 0), replicated=False)
    assert replay.resync
    assert replay.gap == Gap("10-0", "30-0")


def test_an_open_stream_ahead_of_a_reset_buffer_resyncs_without_a_second_read() -> None:
    replay = plan_catch_up(_buffer((5,), after=(50,)), (50, 0), replicated=False)
    assert replay.resync
    assert not replay.needs_whole_buffer


def test_an_open_stream_of_a_session_redis_forgot_carries_on() -> None:
    # A Redis restarted without persistence: no buffer, no newest id.
    replay = plan_catch_up(BufferRead(exists=False), (10, 0), replicated=False)
    assert not replay.resync
    assert replay.events == []


def test_after_a_failover_a_forgotten_session_is_a_resync() -> None:
    # The new primary may never have received what the old one accepted.
    replay = plan_catch_up(BufferRead(exists=False), (10, 0), replicated=True)
    assert replay.resync


def test_an_open_stream_with_the_newest_event_of_an_expired_buffer_carries_on() -> None:
    replay = plan_catch_up(BufferRead(exists=False, newest=(10, 0)), (10, 0), replicated=True)
    assert not replay.resync
