"""``POST /agent_backend/api/sse/permission-response/{session_id}`` (DRF, sync,
``sse.AppAPIView``): a person answers a permission request."""

from __future__ import annotations

from contextlib import nullcontext
from ipaddress import ip_address
from typing import Any

from django.db import transaction
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from rest_framework.exceptions import APIException
from rest_framework.request import Request
from rest_framework.response import Response

from sse import (
    AppAPIView,
    api_errors,
    api_exception_error,
    documented,
    first_row,
    readable_session,
)

from .announce import announce
from .conf import conf
from .exceptions import NoPendingRequest, NotAnObject, RequestNotFound
from .globs import literal
from .models import Effect, PermissionRequest, PermissionRule, Scope, Status
from .serializers import BatchItemSerializer, BatchSerializer, PermissionResponseSerializer


class PermissionResponseView(AppAPIView):
    @documented(
        request=PermissionResponseSerializer,
        responses={200: OpenApiTypes.OBJECT, **api_errors(400, 401, 404, 409, 410, 413)},
    )
    def post(self, request: Request, session_id: str) -> Response:
        """One answer, or with ``{"decisions": [...]}`` up to 50 of them,
        each decided on its own."""
        # The session first: a bad body must not tell whether a session exists.
        readable_session(request, session_id)
        if not isinstance(request.data, dict):
            raise NotAnObject()
        if "decisions" in request.data:
            return self._batch(request, session_id)
        serializer = PermissionResponseSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        permission, status = _answer(request, session_id, serializer.validated_data)
        if status == 200:
            return Response({"success": True, "data": permission.decision_data()})
        return _refused(status, permission)

    def _batch(self, request: Request, session_id: str) -> Response:
        batch = BatchSerializer(data=request.data)
        batch.is_valid(raise_exception=True)
        results = [
            _batch_item(request, session_id, item) for item in batch.validated_data["decisions"]
        ]
        return Response({"success": True, "data": {"results": results}})


def _batch_item(request: Request, session_id: str, item: Any) -> dict[str, Any]:
    named = item.get("request_id") if isinstance(item, dict) else None
    result: dict[str, Any] = {"request_id": named if isinstance(named, str) else None}
    try:
        if not isinstance(item, dict):
            raise NotAnObject("Each decision must be a JSON object.")
        serializer = BatchItemSerializer(data=item)
        serializer.is_valid(raise_exception=True)
        permission, status = _answer(request, session_id, serializer.validated_data)
    except APIException as exc:
        return result | {"status": exc.status_code, "error": api_exception_error(exc)}
    result["request_id"] = str(permission.request_id)
    if status == 200:
        return result | {"status": 200, "decision": permission.decision_data()}
    return result | {"status": status, "error": _refusal(status, permission)}


def _answer(
    request: Request, session_id: str, body: dict[str, Any]
) -> tuple[PermissionRequest, int]:
    """Decide the request ``body`` answers: (the request, 200) if this answer
    decided it, else (the request as it stands, 409 or 410)."""
    permission = _find(session_id, body["request_id"])
    user: Any = request.user  # authenticated: IsAuthenticated ran
    remember = body["remember"]
    # One UPDATE decides; a transaction only to make a rule along with it.
    with transaction.atomic() if remember else nullcontext():
        won = permission.decide(
            body["approved"],
            reason=body["reason"],
            user=user,
            client_ip=client_ip(request),
            user_agent=request.headers.get("User-Agent", ""),
            arguments=body["arguments"],
            abort=body["abort"],
            remember=remember,
        )
        if won and remember:
            _remember(permission, remember, user)
    if won:
        transaction.on_commit(lambda: announce(permission))
        return permission, 200
    if permission.is_overdue and permission.expire():
        transaction.on_commit(lambda: announce(permission))
    return permission, 410 if permission.status == Status.EXPIRED else 409


def _remember(permission: PermissionRequest, remember: str, user: Any) -> None:
    """Approve the tool's later requests in this session, or in this user's sessions."""
    where: dict[str, Any] = (
        {"scope": Scope.SESSION, "session_id": permission.session_id}
        if remember == "session"
        else {"scope": Scope.USER, "user": user}
    )
    same = PermissionRule.objects.filter(
        **where,
        tool_name=literal(permission.tool_name),
        effect=Effect.ALLOW,
        arguments_match__isnull=True,
        expires_at__isnull=True,
    )
    if not same.exists():
        PermissionRule.objects.create(
            **where,
            tool_name=literal(permission.tool_name),
            effect=Effect.ALLOW,
            reason=f"Remembered: approved by {user.get_username()}.",
            created_by=user,
            request=permission,
        )


def _find(session_id: str, request_id: Any) -> PermissionRequest:
    """The request named, or else the oldest one still waiting for an answer."""
    if request_id is not None:
        found = first_row(PermissionRequest, session_id=session_id, request_id=request_id)
        if found is None:
            raise RequestNotFound()
        return found
    oldest = ("requested_at", "id")
    pending = {"session_id": session_id, "status": Status.PENDING.value}
    found = first_row(PermissionRequest, order_by=oldest, expires_at__gt=timezone.now(), **pending)
    # Only overdue ones left (their agent is gone or about to notice): answer
    # the oldest, which reports it expired.
    found = found or first_row(PermissionRequest, order_by=oldest, **pending)
    if found is None:
        raise NoPendingRequest()
    return found


def _refusal(status: int, permission: PermissionRequest) -> dict[str, Any]:
    """The ``error`` of an answer that came too late (409 or 410)."""
    if status == 410:
        code, message = "expired", "This permission request has expired."
    else:
        code, message = "already_decided", "This permission request was already decided."
    return {"code": code, "message": message, "decision": permission.decision_data()}


def _refused(status: int, permission: PermissionRequest) -> Response:
    return Response({"success": False, "error": _refusal(status, permission)}, status=status)


def client_ip(request: Request) -> str | None:
    """REMOTE_ADDR, or the address ``NUM_PROXIES`` trusted proxies saw."""
    address = request.META.get("REMOTE_ADDR", "")
    proxies = conf.NUM_PROXIES
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if proxies and forwarded:
        hops = [hop.strip() for hop in forwarded.split(",")]
        # Each proxy appends what it saw; anything left of that is client-supplied.
        address = hops[-min(proxies, len(hops))]
    try:
        return str(ip_address(address))
    except ValueError:
        return None
