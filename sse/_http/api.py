"""What the apps' JSON endpoints bring with them, whatever the host's
``REST_FRAMEWORK`` says: their own authentication
(``SSE["AUTHENTICATION_CLASSES"]``), ``IsAuthenticated``, JSON in and out,
and the apps' error shape.  The host's own API keeps its defaults."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from django.utils.module_loading import import_string
from drf_spectacular.openapi import AutoSchema
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import ParseError
from rest_framework.negotiation import BaseContentNegotiation, DefaultContentNegotiation
from rest_framework.parsers import BaseParser, JSONParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.schemas.inspectors import ViewInspector
from rest_framework.views import APIView
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

from ..conf import conf
from ..errors import exception_handler


class AlwaysJSON(DefaultContentNegotiation):
    """JSON whatever the request's ``Accept`` says (a browser asks for HTML):
    the apps have nothing else to answer with."""

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))
        return renderer, renderer.media_type


class NestingSafeJSONParser(JSONParser):
    """DRF's JSON parser; JSON nested deeper than Python recurses is a parse
    error (400) too, not a ``RecursionError`` (500)."""

    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply.") from None


class AppDefaults:
    """JSON in and out, errors in the apps' shape (a mixin for DRF views)."""

    renderer_classes: Sequence[type[BaseRenderer]] = [JSONRenderer]
    parser_classes: Sequence[type[BaseParser]] = [NestingSafeJSONParser]
    content_negotiation_class: type[BaseContentNegotiation] = AlwaysJSON
    # drf-spectacular's, whatever DEFAULT_SCHEMA_CLASS says.
    schema: ViewInspector | None = AutoSchema()

    def get_exception_handler(self) -> Callable[..., Any]:
        return exception_handler


class AppAPIView(AppDefaults, APIView):
    """A view of the apps: authenticated by ``SSE["AUTHENTICATION_CLASSES"]``
    (default: a simplejwt Bearer token, then the Django session), for
    authenticated users only.  With a Bearer token first, a bad or expired
    token is a 401 with ``WWW-Authenticate: Bearer``, which the JS client
    answers by refreshing it, even from a browser that also holds a session
    cookie."""

    permission_classes = [IsAuthenticated]

    def get_authenticators(self) -> list[BaseAuthentication]:
        return [authentication() for authentication in authentication_classes()]


def authentication_classes() -> list[type[BaseAuthentication]]:
    return [import_string(path) for path in conf.AUTHENTICATION_CLASSES]


class TokenObtainAppView(AppDefaults, TokenObtainPairView):
    pass


class TokenRefreshAppView(AppDefaults, TokenRefreshView):
    pass
