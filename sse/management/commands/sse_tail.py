from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ..._stream.events import EventKey, is_valid_session_id, parse_id, render_unnumbered
from ..._stream.hub import StreamHub, get_hub
from ..._stream.queue import Connection
from ...conf import conf
from ...exceptions import BrokerUnavailable

# Events waiting for the terminal: a tail that falls this far behind (its
# output blocked) starts again from the buffer.
QUEUE_SIZE = 10_000
RETRY_SECONDS = 1.0


class Command(BaseCommand):
    help = (
        "Print a session's events as JSON lines as they arrive, after the buffered ones "
        "past --from; what a browser's stream receives, from any process (needs REDIS_URL). "
        "Ctrl-C stops it (exit status 0)."
    )
    # The newest event printed (or skipped, without --from): where to resume
    # if the subscription ends.
    position: EventKey | None = None

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("session_id")
        parser.add_argument(
            "--from",
            dest="after",
            metavar="ID",
            help="first print the buffered events after this event id (0: the whole buffer)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        session_id = options["session_id"]
        if not is_valid_session_id(session_id):
            raise CommandError(f"invalid session id {session_id!r}: use 1-128 of [A-Za-z0-9_.:-]")
        after = None
        if options["after"] is not None:
            after = parse_id(options["after"])
            if after is None:
                raise CommandError(
                    f"--from {options['after']!r} is not an event id like 1732456789123-0 "
                    "(0: the whole buffer)"
                )
        if conf.REDIS_URL is None:
            raise CommandError(
                "sse_tail needs SSE['REDIS_URL']: the in-process broker delivers events only "
                "inside the process that published them, and this command is a process of "
                "its own."
            )
        try:
            asyncio.run(self._tail(session_id, after))
        except BrokerUnavailable as exc:
            raise CommandError(f"the broker is unavailable: {exc}") from exc
        except BrokenPipeError:
            # The reader went away (``| head``): nothing more to say to it,
            # not even at exit, when Python flushes stdout.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())

    async def _tail(self, session_id: str, after: EventKey | None) -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        for signum in (signal.SIGINT, signal.SIGTERM):
            # An ignored SIGINT (started with ``&`` or nohup) stays ignored.
            if signal.getsignal(signum) is not signal.SIG_IGN:
                loop.add_signal_handler(signum, task.cancel)
        hub = get_hub()
        self.position = after
        started = False
        try:
            while True:
                try:
                    await self._follow(hub, session_id, started)
                except BrokerUnavailable as exc:
                    if not started:
                        raise
                    self.stderr.write(f"sse_tail: {exc}; trying again")
                    await asyncio.sleep(RETRY_SECONDS)
                started = True
        except asyncio.CancelledError:
            pass  # Ctrl-C or SIGTERM: the end of a tail
        finally:
            await hub.broker.aclose()

    async def _follow(self, hub: StreamHub, session_id: str, started: bool) -> None:
        """Print the buffer past ``self.position``, then live events until
        the subscription ends."""
        conn = Connection(session_id, QUEUE_SIZE, asyncio.get_running_loop(), counted=False)
        await hub.attach(conn)  # subscribed first: nothing published from now on is missed
        try:
            _, replay = await hub.replay(session_id, self.position)
            if replay.gap is not None:
                self._print([render_unnumbered("replay_gap", session_id, replay.gap.as_data())])
            self._print([event.frame for event in replay.events])
            self.position = replay.position
            conn.go_live(replay.position)  # live events up to here are duplicates
            if not started:
                self.stderr.write(f"Tailing session {session_id}; Ctrl-C stops.")
            while conn.ended is None:
                batch = await conn.get()
                if batch:
                    self._print([event.frame for event in batch])
                    self.position = batch[-1].key
            # Its queue is dropped: the next subscription reads from the buffer.
            self.stderr.write(f"sse_tail: the subscription ended ({conn.ended}); resuming")
        finally:
            hub.detach(conn)

    def _print(self, frames: list[bytes]) -> None:
        """Each frame's message (its ``data:`` line), one JSON line each."""
        for frame in frames:
            self.stdout.write(frame.partition(b"data: ")[2].rstrip(b"\n").decode())
        self.stdout.flush()
