"""``permission_cleared``: every tab closes its dialog and the waiting
agent, in whatever process, wakes up.  Published from here only.

A decision is recorded whether or not the broker takes its announcement:
the agent re-reads the row on its own.  The tabs learn it from the
announcement, so one the broker refused is published again (``Resender``)
once the broker is back: by this process, or by another one whose broker
refused too, if this one died first.

``announced`` is written true with the decision itself, and false again
when the broker refuses: no query more per decision.  A process killed
between the two leaves a decision the tabs only learn on reconnecting (the
agent still gets it).
"""

from __future__ import annotations

import logging
import threading

from django.db import connections

from sse import BrokerUnavailable, SSEError, database_sync_to_async, notifier

from .models import PermissionRequest, Status

logger = logging.getLogger(__name__)


def announce(request: PermissionRequest) -> bool:
    """Publish the request's decision; False (logged, and retried in the
    background) if the broker refused."""
    try:
        notifier.send(request.session_id, "permission_cleared", request.cleared_message())
    except SSEError as exc:
        _refused(request, exc)
        return False
    return True


async def aannounce(request: PermissionRequest) -> bool:
    """:func:`announce` from async code."""
    try:
        await notifier.asend(request.session_id, "permission_cleared", request.cleared_message())
    except SSEError as exc:
        await database_sync_to_async(_refused)(request, exc)
        return False
    return True


def _refused(request: PermissionRequest, exc: SSEError) -> None:
    logger.warning(
        "Could not publish permission_cleared of %s (published once the broker is back): %s",
        request.request_id,
        exc,
    )
    PermissionRequest.objects.filter(pk=request.pk).update(announced=False)
    request.announced = False
    resender.wake()


class Resender:
    """A daemon thread publishing the decisions not yet announced, started
    by the first refusal in the process.

    It looks every ``RETRY`` seconds while some are left, else every
    ``SWEEP`` seconds.  Each decision is published by one process only: a
    conditional update claims it first, and a refused publish gives it back."""

    RETRY = 1.0
    SWEEP = 60.0
    BATCH = 100

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(
                        target=self._run, name="permissions-resend", daemon=True
                    )
                    self._thread.start()

    def wake(self) -> None:
        self._wake.set()
        self.start()

    def _run(self) -> None:
        while True:
            self._wake.clear()  # a refusal from now on wakes the next round
            try:
                left = self.resend()
            except Exception:  # the database is away: try again later
                logger.exception("Could not publish the decisions not yet announced")
                left = True
            finally:
                connections.close_all()  # this thread's
            self._wake.wait(self.RETRY if left else self.SWEEP)

    def resend(self) -> bool:
        """Publish what is waiting; True if some is left for later."""
        rows = PermissionRequest.objects.filter(announced=False).exclude(status=Status.PENDING)
        waiting = list(rows.order_by("decided_at")[: self.BATCH])
        for request in waiting:
            claimed = PermissionRequest.objects.filter(pk=request.pk, announced=False)
            if not claimed.update(announced=True):
                continue  # another process has it
            try:
                notifier.send(request.session_id, "permission_cleared", request.cleared_message())
            except BrokerUnavailable:
                PermissionRequest.objects.filter(pk=request.pk).update(announced=False)
                return True
            except SSEError:  # not the broker's fault: trying again would not help
                logger.exception("Could not publish permission_cleared of %s", request.request_id)
                continue
            logger.info("Published permission_cleared of %s", request.request_id)
        return len(waiting) == self.BATCH


resender = Resender()
