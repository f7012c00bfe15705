"""What a client must be sent to catch up: one decision, for a stream that
opens with ``Last-Event-ID`` and for open streams whose process lost its
broker connection for a while.  Pure: no I/O, no clock."""

from __future__ import annotations

from dataclasses import dataclass, field

from .events import ZERO, Event, EventKey, format_id


@dataclass(slots=True)
class BufferRead:
    """A session buffer read after some position.

    ``exists`` is False when the buffer expired (or never had an event);
    ``newest`` is the newest key ever stored, still known after the buffer
    expired when the broker remembers it; ``trimmed`` the newest key dropped
    from the buffer to respect ``BUFFER_SIZE``; ``fences`` the keys of the
    events that were the first a new primary stored for the session (after
    a failover, Sentinel or Cluster): events just before each may be gone.
    ``moved``: the session's newest event was stored by a primary that is
    no longer the one answering, and this one has stored none yet: what the
    old one accepted last may be gone, after any position.
    """

    exists: bool
    newest: EventKey | None = None
    trimmed: EventKey | None = None
    events: list[Event] = field(default_factory=list)
    fences: tuple[EventKey, ...] = ()
    moved: bool = False


@dataclass(frozen=True, slots=True)
class Gap:
    """Events the client never saw are gone: ``replay_gap`` tells it."""

    missed_from: str
    resumed_at: str | None

    def as_data(self) -> dict[str, str | None]:
        return {"missed_from": self.missed_from, "resumed_at": self.resumed_at}


@dataclass(frozen=True, slots=True)
class Replay:
    """The events to send, oldest first, after the gap if there is one;
    ``position`` is the client's once they are sent.  ``needs_whole_buffer``:
    the buffer never issued the client's position (it was reset), so the
    plan must be made again on a read of the whole buffer."""

    events: list[Event]
    gap: Gap | None
    position: EventKey
    needs_whole_buffer: bool = False
    # For an open stream (``plan_catch_up``): events it never saw are gone,
    # so the stream ends and its client reconnects to be told of the gap.
    resync: bool = False


def plan_replay(read: BufferRead, position: EventKey | None, *, whole: bool = False) -> Replay:
    """The replay for a client at ``position`` (None: a fresh client, which
    starts at the newest event), given ``read``, the buffer after
    ``position`` or, with ``whole``, after nothing."""
    if position is None:
        return Replay([], None, read.newest or ZERO)
    if read.exists:
        unknown = read.newest is not None and read.newest < position
        missed = read.trimmed is not None and read.trimmed > position
    else:
        # Expired (or never written): only a client that had seen the newest
        # event missed nothing.
        unknown, missed = False, (read.newest or ZERO) != position
    if unknown and not whole:
        return Replay([], None, position, needs_whole_buffer=True)
    after = ZERO if unknown else position
    events = [event for event in read.events if event.key > after]
    # A fence the client has not passed, or a new primary that has stored
    # nothing yet: what the old one accepted last may never have reached
    # this one, and nobody can tell the client what.  A client that has
    # seen no event is owed nothing.
    fenced = (read.moved and position != ZERO) or any(key > position for key in read.fences)
    gap = None
    if unknown or missed or fenced:
        gap = Gap(format_id(position), events[0].id if events else None)
    return Replay(events, gap, events[-1].key if events else after)


def plan_catch_up(read: BufferRead, position: EventKey, *, replicated: bool) -> Replay:
    """The replay for an open stream at ``position`` whose process lost its
    broker connection for a while, given ``read``, the buffer after
    ``position``.  An open stream cannot be sent a ``replay_gap`` in the
    middle of its events: where a new stream would get one (or would need
    the whole buffer to know), this one resyncs.  Except when the broker
    keeps no record of the session at all (a Redis that restarted without
    persistence): nothing to replay, nothing to say anything was missed, and
    the stream carries on.  Not with a ``replicated`` broker (Sentinel,
    Cluster): after a failover the new primary may never have received any
    of it."""
    replay = plan_replay(read, position)
    forgotten = not read.exists and read.newest is None and not replicated
    if (replay.gap is not None or replay.needs_whole_buffer) and not forgotten:
        return Replay(replay.events, replay.gap, position, resync=True)
    return replay
