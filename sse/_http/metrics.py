"""``GET …/sse/metrics/``: the Prometheus metrics (``sse.metrics``), for staff
users or ``Authorization: Bearer <SSE["METRICS_TOKEN"]>``."""

from __future__ import annotations

import hmac
from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from .. import metrics
from ..conf import conf
from .api import AppAPIView
from .schema import documented, errors


class MetricsToken:
    """``request.auth`` of a scrape that presented ``SSE["METRICS_TOKEN"]``."""


METRICS_TOKEN = MetricsToken()


class MetricsTokenAuthentication(BaseAuthentication):
    """``Authorization: Bearer <SSE["METRICS_TOKEN"]>``, compared in constant
    time.  Any other Bearer token is left to the apps' authentication (a
    staff user's JWT)."""

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        expected = conf.METRICS_TOKEN
        if expected is None:
            return None
        scheme, _, credentials = get_authorization_header(request).partition(b" ")
        if scheme.lower() != b"bearer":
            return None
        if hmac.compare_digest(credentials.strip(), expected.encode()):
            return AnonymousUser(), METRICS_TOKEN
        return None

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class IsStaffOrMetricsToken(BasePermission):
    message = "The metrics are for staff users, or for the SSE['METRICS_TOKEN'] Bearer token."

    def has_permission(self, request: Request, view: Any) -> bool:
        return request.auth is METRICS_TOKEN or bool(request.user and request.user.is_staff)


class MetricsView(AppAPIView):
    """Prometheus' text format (OpenMetrics if the scraper asks for it)."""

    permission_classes = [IsStaffOrMetricsToken]

    def get_authenticators(self) -> list[BaseAuthentication]:
        return [MetricsTokenAuthentication(), *super().get_authenticators()]

    @documented(
        responses={
            (200, "text/plain"): OpenApiResponse(OpenApiTypes.STR, description="The metrics"),
            **errors(401, 403),
        }
    )
    def get(self, request: Request) -> HttpResponse:
        body, content_type = metrics.exposition(request.headers.get("Accept", ""))
        return HttpResponse(body, content_type=content_type, headers={"Cache-Control": "no-store"})
