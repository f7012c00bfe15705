"""The apps' OpenAPI schema (``…/sse/schema/``, drf-spectacular), and
schemathesis fuzzing every REST operation in it against a live server: no
5xx, and every error in the apps' JSON shape."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.conftest import MakeSession, MakeUser
from tests.streaming import MakeStack

API = "/agent_backend/api"


@pytest.fixture
def live(make_stack: MakeStack, make_user: MakeUser, make_session: MakeSession) -> dict[str, Any]:
    base_url = make_stack("memory").base_url
    user, token = make_user()
    make_session(user, "s-fuzz")
    return {"base_url": base_url, "token": token}


@pytest.fixture
def api_schema(live: dict[str, Any]) -> Any:
    return schemathesis.openapi.from_url(f"{live['base_url']}{API}/sse/schema/")


def test_the_schema_documents_every_endpoint(live: dict[str, Any]) -> None:
    schema = httpx.get(f"{live['base_url']}{API}/sse/schema/").json()
    assert schema["servers"] == [{"url": API}]
    assert set(schema["paths"]) == {
        "/auth/token/",
        "/auth/token/refresh/",
        "/sse/sessions/",
        "/sse/tickets/",
        "/sse/health/{session_id}",
        "/sse/metrics/",
        "/sse/events/{session_id}",
        "/sse/permission-response/{session_id}",
    }
    events = schema["paths"]["/sse/events/{session_id}"]["get"]
    assert "text/event-stream" in events["responses"]["200"]["content"]


@schemathesis.check
def errors_in_the_apps_shape(ctx: Any, response: Any, case: Any) -> bool | None:
    if response.status_code >= 400:
        assert response.headers.get("content-type") == ["application/json"], response.headers
        body = response.json()
        assert body["success"] is False, body
        assert isinstance(body["error"]["code"], str), body
        assert isinstance(body["error"]["message"], str), body
    return None


def test_fuzzed_requests_get_no_5xx_and_json_errors(api_schema: Any, live: dict[str, Any]) -> None:
    # Each operation's cases from its own strategy (schemathesis' pytest
    # plugin does not run under this pytest); the stream is not fuzzed: a
    # valid request to it never ends.
    headers = {"Authorization": f"Bearer {live['token']}"}
    fuzzed = []
    for found in api_schema.get_all_operations():
        operation = found.ok()
        if operation.path == "/sse/events/{session_id}":
            continue
        fuzzed.append(f"{operation.method.upper()} {operation.path}")

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case: Any) -> None:
            case.call_and_validate(
                headers=headers, checks=[not_a_server_error, errors_in_the_apps_shape]
            )

        fuzz()
    assert len(fuzzed) == 8, fuzzed
