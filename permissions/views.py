"""``POST /agent_backend/api/sse/permission-response/{session_id}`` (DRF, sync,
``sse.AppAPIView``): a person answers a permission request."""

from __future__ import annotations

from ipaddress import ip_address
from typing import Any

from django.db import transaction
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from rest_framework.request import Request
from rest_framework.response import Response

from sse import AppAPIView, api_errors, documented, error_body, readable_session

from .announce import announce
from .conf import conf
from .exceptions import NoPendingRequest, NotAnObject, RequestNotFound
from .models import PermissionRequest, PermissionRule, Status
from .serializers import PermissionResponseSerializer


class PermissionResponseView(AppAPIView):
    @documented(
        request=PermissionResponseSerializer,
        responses={200: OpenApiTypes.OBJECT, **api_errors(400, 401, 404, 409, 410, 413)},
    )
    def post(self, request: Request, session_id: str) -> Response:
        # The session first: a bad body must not tell whether a session exists.
        readable_session(request, session_id)
        if not isinstance(request.data, dict):
            raise NotAnObject()
        serializer = PermissionResponseSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        body: dict[str, Any] = serializer.validated_data
        permission = _find(session_id, body["request_id"])
        user: Any = request.user  # authenticated: IsAuthenticated ran
        with transaction.atomic():
            won = permission.decide(
                body["approved"],
                reason=body["reason"],
                user=user,
                client_ip=client_ip(request),
                user_agent=request.headers.get("User-Agent", ""),
            )
            if won:
                if body["remember"]:
                    PermissionRule.objects.get_or_create(
                        session_id=session_id,
                        tool_name=permission.tool_name,
                        defaults={"created_by": user, "request": permission},
                    )
                transaction.on_commit(lambda: announce(permission))
        if won:
            return Response({"success": True, "data": permission.decision_data()})
        if permission.is_overdue and permission.expire():
            transaction.on_commit(lambda: announce(permission))
        if permission.status == Status.EXPIRED:
            return _refused(410, "expired", "This permission request has expired.", permission)
        return _refused(
            409, "already_decided", "This permission request was already decided.", permission
        )


def _find(session_id: str, request_id: Any) -> PermissionRequest:
    """The request named, or else the oldest one still waiting for an answer."""
    requests = PermissionRequest.objects.filter(session_id=session_id).select_related("decided_by")
    if request_id is not None:
        found = requests.filter(request_id=request_id).first()
        if found is None:
            raise RequestNotFound()
        return found
    pending = requests.filter(status=Status.PENDING).order_by("requested_at", "id")
    found = pending.filter(expires_at__gt=timezone.now()).first()
    # Only overdue ones left (their agent is gone or about to notice): answer
    # the oldest, which reports it expired.
    found = found or pending.first()
    if found is None:
        raise NoPendingRequest()
    return found


def _refused(status: int, code: str, message: str, permission: PermissionRequest) -> Response:
    body = error_body(code, message, decision=permission.decision_data())
    return Response(body, status=status)


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
