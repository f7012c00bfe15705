"""The JSON endpoints (DRF, sync, JWT Bearer): sessions and health."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from . import backlog
from .brokers import get_broker
from .events import SESSION_ID_RE, is_valid_session_id
from .exceptions import BrokerUnavailable
from .models import StreamSession
from .sessions import SessionTaken, can_read, get_or_create_session


class InvalidSessionId(exceptions.APIException):
    status_code = 400
    default_detail = "A session id is 1-128 characters of [A-Za-z0-9_.:-]."
    default_code = "invalid_session_id"


class SessionNotFound(exceptions.NotFound):
    default_detail = "No such session."
    default_code = "session_not_found"


class SessionTakenError(exceptions.APIException):
    status_code = 409
    default_detail = "This session id belongs to another user."
    default_code = "session_exists"


class SessionSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    session_id = serializers.RegexField(
        rf"^{SESSION_ID_RE.pattern}\Z", max_length=128, required=False
    )
    owner = serializers.CharField(source="owner.get_username", read_only=True)

    class Meta:
        model = StreamSession
        fields = ["session_id", "title", "owner", "created_at"]


def readable_session(request: Request, session_id: str) -> str:
    """``session_id`` if the caller may read it; 400 or 404 otherwise."""
    if not is_valid_session_id(session_id):
        raise InvalidSessionId()
    if not can_read(request.user, session_id):
        raise SessionNotFound()
    return session_id


class SessionsView(APIView):
    def get(self, request: Request) -> Response:
        sessions = StreamSession.objects.filter(owner_id=request.user.pk)[:100]
        return Response({"success": True, "data": SessionSerializer(sessions, many=True).data})

    def post(self, request: Request) -> Response:
        serializer = SessionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            session, created = get_or_create_session(
                request.user,
                serializer.validated_data.get("session_id"),
                serializer.validated_data.get("title", ""),
            )
        except SessionTaken as exc:
            raise SessionTakenError() from exc
        return Response(
            {"success": True, "data": SessionSerializer(session).data},
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class HealthView(APIView):
    def get(self, request: Request, session_id: str) -> Response:
        readable_session(request, session_id)
        broker = get_broker()
        connected = broker.is_connected()
        buffered, last_event_id = 0, None
        if connected:
            try:
                info = broker.buffer_info(session_id)
                buffered, last_event_id = info.length, info.last_event_id
            except BrokerUnavailable:
                connected = False
        pending = sum(1 for m in backlog.collect(session_id) if m.type == "permission_request")
        data: dict[str, Any] = {
            "session_id": session_id,
            # Degraded: events cannot reach the streams open here right now.
            "status": "ok"
            if connected and (broker.listener_running or not broker.connection_count())
            else "degraded",
            "connections": broker.connection_count(session_id),
            "process_connections": broker.connection_count(),
            "broker": {"backend": broker.backend, "connected": connected},
            "listener_running": broker.listener_running,
            "buffered_events": buffered,
            "last_event_id": last_event_id,
            "pending_permissions": pending,
            "server_time": timezone.now().isoformat(),
        }
        return Response({"success": True, "data": data})
