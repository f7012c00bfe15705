"""Agent side: ask for a permission and wait for the decision.

``await arequest_permission(...)`` from async code, ``request_permission(...)``
from sync code (views, Celery tasks, management commands).  The decision may
be made in any process: the wait listens to the session through the broker
and reads the row, which is the truth.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, ParamSpec, TypeVar

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone

from sse import (
    StreamSession,
    Subscription,
    database_sync_to_async,
    first_row,
    notifier,
    subscribe,
    update_rows,
)

from . import metrics, policies, rules
from ._loop import run_blocking
from .announce import aannounce
from .conf import conf, is_timeout
from .exceptions import InvalidPermissionRequest
from .models import Effect, PermissionRequest, Status, iso

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

# The row is re-read this often even without a message: a decision whose
# permission_cleared could not be published (broker down) still gets through.
RECHECK_INTERVAL = 10.0
# ...and this often once the subscription has ended (server shutting down).
POLL_INTERVAL = 1.0


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer an agent gets: whether to go ahead, why, and who decided."""

    request_id: str
    # "approved" | "denied" | "expired" | "cancelled"
    status: str
    approved: bool
    reason: str
    # Username of the person who answered; None for rules, expiry, cancellation.
    decided_by: str | None
    decided_at: datetime | None
    # "rule:<id>", "policy:<dotted path>", or "" when a person (or nobody) decided.
    decided_by_rule: str = ""
    # What the tool should run with: the person's edits, or the arguments asked.
    arguments: dict[str, Any] = field(default_factory=dict)
    edited: bool = False
    # A denial that stops the whole run, not just this tool.
    abort: bool = False
    tool_call_id: str | None = None

    @classmethod
    def of(cls, request: PermissionRequest) -> Decision:
        user = request.decided_by
        return cls(
            request_id=str(request.request_id),
            status=str(request.status),
            approved=request.approved,
            reason=request.reason,
            decided_by=user.get_username() if user is not None else None,
            decided_at=request.decided_at,
            decided_by_rule=request.decided_by_rule,
            arguments=request.final_arguments,
            edited=request.edited,
            abort=request.abort,
            tool_call_id=request.tool_call_id or None,
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable: the fields, ``decided_at`` in ISO 8601."""
        return asdict(self) | {"decided_at": iso(self.decided_at) if self.decided_at else None}


def request_permission(
    session_id: str,
    tool_name: str,
    arguments: dict[str, Any] | None = None,
    *,
    timeout: float | None = None,
    description: str = "",
    tool_call_id: str | None = None,
    key: str | None = None,
) -> Decision:
    """Blocking twin of :func:`arequest_permission`; interrupting the caller
    (KeyboardInterrupt, a task time limit) marks the request ``cancelled``
    (unless it has a ``key``)."""
    return run_blocking(
        lambda: arequest_permission(
            session_id,
            tool_name,
            arguments,
            timeout=timeout,
            description=description,
            tool_call_id=tool_call_id,
            key=key,
        )
    )


async def arequest_permission(
    session_id: str,
    tool_name: str,
    arguments: dict[str, Any] | None = None,
    *,
    timeout: float | None = None,
    description: str = "",
    tool_call_id: str | None = None,
    key: str | None = None,
) -> Decision:
    """Ask the people watching ``session_id`` whether ``tool_name`` may run.

    Returns once a person, a rule or the ``POLICY`` decided, or after
    ``timeout`` seconds (default ``PERMISSIONS["TIMEOUT"]``) with status
    ``expired``.  Cancelling the awaiting task marks it ``cancelled``.

    ``tool_call_id`` (the agent framework's) travels to the browser, the
    decision and the audit.  With a ``key``, asking again in the session
    (an agent restarted) returns the same request: waiting while it is
    pending, else its decision; and an interrupted wait leaves it pending
    for the next one.
    """
    arguments = {} if arguments is None else arguments
    seconds = _check(tool_name, arguments, description, timeout, tool_call_id, key)
    asked = _Asked(session_id, tool_name, arguments, description, seconds, tool_call_id, key)
    # Subscribed before the row exists: a decision published at any moment
    # after it is written reaches us.
    async with subscribe(session_id) as subscription:
        opening = asyncio.ensure_future(database_sync_to_async(_open)(asked))
        try:
            request, new = await asyncio.shield(opening)
        except asyncio.CancelledError:
            # The row is written regardless: close it once it exists.
            written, _ = await opening
            await asyncio.shield(_abandon(written, None))
            raise
        if request.status != Status.PENDING:
            if new:
                await aannounce(request)  # decided by a rule: the UI timeline shows it
            return Decision.of(request)
        try:
            return await _wait(subscription, request)
        except BaseException as exc:
            await asyncio.shield(_abandon(request, exc))
            raise


@dataclass(frozen=True, slots=True)
class _Asked:
    session_id: str
    tool_name: str
    arguments: dict[str, Any]
    description: str
    seconds: float
    tool_call_id: str | None
    key: str | None


def _check(
    tool_name: object,
    arguments: object,
    description: object,
    timeout: object,
    tool_call_id: object,
    key: object,
) -> float:
    if not isinstance(tool_name, str) or not 0 < len(tool_name) <= 200:
        raise InvalidPermissionRequest(f"tool_name must be 1-200 characters, not {tool_name!r}")
    if not isinstance(arguments, dict):
        raise InvalidPermissionRequest(f"arguments must be a dict, not {type(arguments).__name__}")
    try:
        json.dumps(arguments, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidPermissionRequest(f"arguments are not JSON-serialisable: {exc}") from exc
    if not isinstance(description, str):
        raise InvalidPermissionRequest("description must be a string")
    for name, value in (("tool_call_id", tool_call_id), ("key", key)):
        if value is not None and (not isinstance(value, str) or not 0 < len(value) <= 200):
            raise InvalidPermissionRequest(f"{name} must be 1-200 characters, not {value!r}")
    seconds = conf.TIMEOUT if timeout is None else timeout
    if not is_timeout(seconds):
        raise InvalidPermissionRequest(f"timeout must be a positive number, not {timeout!r}")
    return float(seconds)


def _open(asked: _Asked) -> tuple[PermissionRequest, bool]:
    """The request, and whether it is new: written, already decided if a rule
    or the policy answers it; or the one asked earlier with the same key."""
    if asked.key is not None:
        earlier = _keyed(asked)
        if earlier is not None:
            return earlier, False
    now = timezone.now()
    session = first_row(StreamSession, session_id=asked.session_id)
    owner_id = session.owner_id if session is not None else None
    request = PermissionRequest(
        session_id=asked.session_id,
        owner_id=owner_id,
        tool_name=asked.tool_name,
        arguments=asked.arguments,
        description=asked.description,
        tool_call_id=asked.tool_call_id or "",
        key=asked.key,
        requested_at=now,
        expires_at=now + timedelta(seconds=asked.seconds),
    )
    verdict = _verdict(asked, owner_id)
    if verdict is not None:
        decision, rule = verdict
        request.status = str(Status.APPROVED if decision.approved else Status.DENIED)
        request.reason = decision.reason
        request.decided_by_rule = rule
        request.decided_at = now
        request.latency_ms = 0
        request.announced = True  # next, by the caller (``announce``)
    if asked.key is None:
        request.save()
    else:
        try:
            with transaction.atomic():  # a savepoint: the caller's transaction survives
                request.save()
        except IntegrityError:
            # Asked with the same key at the same moment: the other one was first.
            earlier = _keyed(asked)
            if earlier is None:
                raise
            return earlier, False
    if verdict is not None:
        metrics.closed(request.status, None)  # nobody was asked
    return request, True


def _keyed(asked: _Asked) -> PermissionRequest | None:
    return (
        PermissionRequest.objects.filter(session_id=asked.session_id, key=asked.key)
        .select_related("decided_by")
        .first()
    )


def _verdict(asked: _Asked, owner_id: Any) -> tuple[policies.PolicyDecision, str] | None:
    """A rule's or the policy's decision, or None to ask a person: deny
    beats ask beats allow, whichever of the two says it."""
    rule = rules.deciding_rule(asked.session_id, asked.tool_name, asked.arguments, owner_id)
    if rule is not None and rule.effect == Effect.DENY:
        reason = rule.reason or f"Denied by {rule.audit_name}."
        return policies.PolicyDecision(False, reason), rule.audit_name
    # The owner is the policy's to look at; no query without one.
    owner = (
        first_row(get_user_model(), pk=owner_id) if owner_id is not None and conf.POLICY else None
    )
    policy = policies.evaluate(
        policies.PolicyRequest(
            asked.session_id, asked.tool_name, asked.arguments, asked.description, owner
        )
    )
    if policy is not None and not policy[0].approved:
        return policy
    if rule is not None and rule.effect == Effect.ASK:
        return None
    if rule is not None:
        reason = rule.reason or f"Approved by {rule.audit_name}."
        return policies.PolicyDecision(True, reason), rule.audit_name
    return policy


async def _wait(subscription: Subscription, request: PermissionRequest) -> Decision:
    if not request.event_id:  # else asked before with this key: the tabs have it
        event_id = await notifier.asend(
            request.session_id, "permission_request", request.request_message()
        )
        await database_sync_to_async(update_rows)(
            PermissionRequest, {"event_id": event_id}, pk=request.pk
        )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + (request.expires_at - timezone.now()).total_seconds()
    next_check = loop.time() + RECHECK_INTERVAL
    listening = True
    request_id = str(request.request_id)
    while (now := loop.time()) < deadline:
        cleared = False
        if listening:
            try:
                messages = await subscription.get(min(deadline, next_check) - now)
            except ConnectionError:
                listening = False  # e.g. the server is shutting down: poll instead
                next_check = loop.time()
                continue
            cleared = any(_clears(message, request_id) for message in messages)
        else:
            await asyncio.sleep(max(0.0, min(deadline, next_check) - now))
        if cleared or loop.time() >= next_check:
            decision = await database_sync_to_async(_decision)(request.pk)
            if decision is not None:
                return decision
            next_check = loop.time() + (RECHECK_INTERVAL if listening else POLL_INTERVAL)
    if await database_sync_to_async(request.expire)():
        await aannounce(request)
        return Decision.of(request)
    # Decided between our last look and the deadline: that decision stands.
    decision = await database_sync_to_async(_decision)(request.pk)
    assert decision is not None
    return decision


def _clears(message: dict[str, Any], request_id: str) -> bool:
    data = message.get("data")
    return (
        message.get("type") == "permission_cleared"
        and isinstance(data, dict)
        and data.get("request_id") == request_id
    )


def _decision(pk: int) -> Decision | None:
    request = first_row(PermissionRequest, pk=pk)
    if request is None:
        raise PermissionRequest.DoesNotExist(f"permission request {pk} was deleted")
    if request.status == Status.PENDING:
        return None
    if request.decided_by_id is not None:
        request.decided_by = first_row(get_user_model(), pk=request.decided_by_id)
    return Decision.of(request)


async def _abandon(request: PermissionRequest, exc: BaseException | None) -> None:
    """The agent stopped waiting (cancelled, or an error): close the request,
    unless it has a key: the agent asks again with it (after a restart, or a
    retry), and the request stays pending until then or until it expires."""
    if request.key is not None:
        return
    if exc is None or isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | SystemExit):
        reason = "The agent stopped waiting."
    else:
        reason = f"The request failed: {type(exc).__name__}: {exc}"[:1000]
    if await database_sync_to_async(request.cancel)(reason):
        await aannounce(request)
