"""The OpenAPI schema of the apps' endpoints (drf-spectacular):
``GET {prefix}sse/schema/``, public, JSON.  The event stream, a plain Django
view, is described by hand (``add_event_stream``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.renderers import OpenApiJsonRenderer
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from drf_spectacular.views import SpectacularAPIView
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

F = TypeVar("F", bound=Callable[..., Any])

ERROR = inline_serializer(
    "Error",
    {
        "success": serializers.BooleanField(default=False),
        "error": inline_serializer(
            "ErrorDetail",
            {"code": serializers.CharField(), "message": serializers.CharField()},
        ),
    },
)


def documented(**kwargs: Any) -> Callable[[F], F]:
    """``extend_schema`` on drf-spectacular's ``AutoSchema``, whatever the
    host's ``DEFAULT_SCHEMA_CLASS`` (on a method, ``extend_schema`` starts
    from the setting unless the method names its schema)."""

    def decorate(method: F) -> F:
        method.schema = AutoSchema  # type: ignore[attr-defined]
        decorated: F = extend_schema(**kwargs)(method)
        return decorated

    return decorate


def errors(*statuses: int) -> dict[int, OpenApiResponse]:
    """The apps' JSON error shape under each status."""
    return {status: OpenApiResponse(ERROR) for status in statuses}


def _error_schema(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def add_event_stream(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: the event stream's path."""
    text = {"schema": {"type": "string"}}
    parameter = {"in": "query", "required": False, **text}
    result["paths"]["/sse/events/{session_id}"] = {
        "get": {
            "operationId": "sse_events",
            "summary": "The session's Server-Sent Events stream",
            "description": "Authenticated by ?ticket=, ?token=, Authorization: Bearer or the "
            "session cookie. Sends retry:, then a connected message, the replay after "
            "Last-Event-ID, then live events and heartbeats.",
            "parameters": [
                {
                    "in": "path",
                    "name": "session_id",
                    "required": True,
                    "schema": {"type": "string"},
                },
                {**parameter, "name": "token"},
                {**parameter, "name": "ticket"},
                {**parameter, "name": "last_event_id"},
                {
                    "in": "header",
                    "name": "Last-Event-ID",
                    "required": False,
                    "schema": {"type": "string"},
                },
            ],
            "responses": {
                "200": {
                    "description": "The stream",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
                "400": _error_schema("Malformed session id or Last-Event-ID"),
                "401": _error_schema("No, bad, expired or spent credentials"),
                "404": _error_schema("Unknown session, or another user's"),
                "429": _error_schema("Too many streams of this session"),
                "503": _error_schema("Server busy, or the broker unavailable"),
            },
        }
    }
    return result


class BearerScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """``sse.authentication.JWTAuthentication``: a simplejwt Bearer token."""

    target_class = "sse.authentication.JWTAuthentication"
    name = "bearer"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}


class _NotInTheSchema(AutoSchema):
    def is_excluded(self) -> bool:
        return True


class SchemaView(SpectacularAPIView):
    """The apps' endpoints only, at the prefix the project mounted them at."""

    schema = _NotInTheSchema()
    urlconf = ["sse.urls", "permissions.urls"]  # type: ignore[assignment]  # a list works
    renderer_classes = [OpenApiJsonRenderer]
    permission_classes = [AllowAny]
    authentication_classes: list[Any] = []

    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        from django.apps import apps

        if not apps.is_installed("permissions"):
            self.urlconf = ["sse.urls"]
        from ..urls import api_base

        prefix = api_base()
        self.custom_settings = {
            "TITLE": "Agent SSE and permissions",
            "DESCRIPTION": "Streams of agent events, and the person's answers to its "
            "permission requests. Errors: {success: false, error: {code, message}}.",
            "VERSION": "1",
            "SERVERS": [{"url": prefix}],
            "SCHEMA_PATH_PREFIX": "",
            "POSTPROCESSING_HOOKS": [
                "drf_spectacular.hooks.postprocess_schema_enums",
                "sse._http.schema.add_event_stream",
            ],
            "COMPONENT_SPLIT_REQUEST": True,
        }
        response: Response = super().get(request, *args, **kwargs)  # type: ignore[no-untyped-call]
        return response
