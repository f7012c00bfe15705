"""The demo: its page, the page running the product note's own code, and the
endpoint that starts a simulated agent run."""

from __future__ import annotations

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.templatetags.static import static
from django.urls import NoReverseMatch, reverse
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from sse import SessionIdField, readable_session

from .demo import SCENARIOS, RunInProgress, runner

API_BASE = "/agent_backend/api"
PERMISSION_HISTORY = "/admin/permissions/permissionrequest/"


def _config(request: HttpRequest) -> dict[str, str]:
    try:
        history = reverse("admin:permissions_permissionrequest_changelist")
    except NoReverseMatch:
        history = PERMISSION_HISTORY
    return {
        "apiBase": API_BASE,
        "clientUrl": static("sse/sse-client.mjs"),
        "runUrl": reverse("demo_runs"),
        "permissionHistoryUrl": history,
    }


def demo_page(request: HttpRequest) -> HttpResponse:
    return render(request, "agent_backend/demo.html", {"config": _config(request)})


def seed_page(request: HttpRequest) -> HttpResponse:
    """The product note's JavaScript, pasted unchanged (development only)."""
    if not settings.DEBUG:
        raise Http404("The seed page is served only with DEBUG on.")
    return render(request, "agent_backend/seed.html", {"config": _config(request)})


class RunSerializer(serializers.Serializer):  # type: ignore[type-arg]
    session_id = SessionIdField()
    scenario = serializers.ChoiceField(choices=sorted(SCENARIOS), default="single")


class RunInProgressError(exceptions.APIException):
    status_code = 409
    default_detail = "A demo run is still going in this session."
    default_code = "run_in_progress"


class DemoRunView(APIView):
    """``POST {"session_id", "scenario"?}``: start the simulated agent in one of
    your sessions (scenario ``single``, the default, or ``parallel``)."""

    def post(self, request: Request) -> Response:
        serializer = RunSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        session_id = readable_session(request, serializer.validated_data["session_id"])
        try:
            run_id = runner.start(session_id, scenario=serializer.validated_data["scenario"])
        except RunInProgress as exc:
            raise RunInProgressError() from exc
        return Response(
            {"success": True, "data": {"run_id": run_id, "session_id": session_id}},
            status=status.HTTP_202_ACCEPTED,
        )
