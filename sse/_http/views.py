"""The JSON endpoints (DRF, sync; ``api.AppAPIView``): sessions and health."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from .. import tickets
from .._stream import backlog
from .._stream.hub import get_hub
from ..exceptions import BrokerUnavailable
from ..models import StreamSession
from ..sessions import SessionTaken, get_or_create_session, readable_session
from .api import AppAPIView
from .fields import SessionIdField
from .schema import documented, errors


class SessionTakenError(exceptions.APIException):
    status_code = 409
    default_detail = "This session id belongs to another user."
    default_code = "session_exists"


class SessionSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    session_id = SessionIdField(required=False)
    owner = serializers.CharField(source="owner.get_username", read_only=True)

    class Meta:
        model = StreamSession
        fields = ["session_id", "title", "owner", "created_at"]


def _envelope(name: str, data: Any) -> Any:
    return inline_serializer(name, {"success": serializers.BooleanField(), "data": data})


class SessionsView(AppAPIView):
    @documented(
        responses={200: _envelope("SessionList", SessionSerializer(many=True)), **errors(401)}
    )
    def get(self, request: Request) -> Response:
        sessions = StreamSession.objects.filter(owner_id=request.user.pk)[:100]
        return Response({"success": True, "data": SessionSerializer(sessions, many=True).data})

    @documented(
        request=SessionSerializer,
        responses={
            201: _envelope("SessionCreated", SessionSerializer()),
            200: _envelope("SessionExisting", SessionSerializer()),
            **errors(400, 401, 409, 413),
        },
    )
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


class HealthView(AppAPIView):
    @documented(responses={200: OpenApiTypes.OBJECT, **errors(400, 401, 404)})
    def get(self, request: Request, session_id: str) -> Response:
        readable_session(request, session_id)
        hub = get_hub()
        broker = hub.broker
        connected = broker.is_connected()
        buffered, last_event_id = 0, None
        connections = hub.connection_count(session_id)
        if connected:
            try:
                info = broker.buffer_info(session_id)
                buffered, last_event_id = info.length, info.last_event_id
                connections = hub.session_connections(session_id)
            except BrokerUnavailable:
                connected = False
        data: dict[str, Any] = {
            "session_id": session_id,
            # Degraded: events cannot reach the streams open here right now.
            "status": "ok"
            if connected and (broker.listener_running or not hub.connection_count())
            else "degraded",
            # In every process sharing the broker; this process's when it is away.
            "connections": connections,
            "process_connections": hub.connection_count(),
            "broker": {"backend": broker.backend, "connected": connected},
            "listener_running": broker.listener_running,
            "buffered_events": buffered,
            "last_event_id": last_event_id,
            "pending_permissions": backlog.pending_count(session_id),
            "server_time": timezone.now().isoformat(),
        }
        return Response({"success": True, "data": data})


class TicketSerializer(serializers.Serializer):  # type: ignore[type-arg]
    session_id = SessionIdField()


class TicketsView(AppAPIView):
    """``POST {"session_id"}`` → 201 ``{"ticket", "expires_at"}``: one stream
    open of that session with ``?ticket=``, within ``TICKET_TTL`` seconds."""

    @documented(
        request=TicketSerializer,
        responses={
            201: inline_serializer(
                "Ticket",
                {"ticket": serializers.CharField(), "expires_at": serializers.DateTimeField()},
            ),
            **errors(400, 401, 404, 413),
        },
    )
    def post(self, request: Request) -> Response:
        serializer = TicketSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        session_id = readable_session(request, serializer.validated_data["session_id"])
        token_exp = getattr(request.auth, "get", lambda key: None)("exp")  # a JWT's
        access_expires_at = int(token_exp) if isinstance(token_exp, int | float) else None
        ticket, expires_at = tickets.issue(request.user, session_id, access_expires_at)
        return Response(
            {"ticket": ticket, "expires_at": expires_at.isoformat()},
            status=status.HTTP_201_CREATED,
        )
