"""The JavaScript client shipped in ``sse/static/sse/``.

``sse-client.js`` (plain script, ``window.AgentSSEClient``) is generated from
``sse-client.mjs`` (the ES module): after editing the module, run
``.venv/bin/python -m tests.test_browser_client`` to rewrite the plain script.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.browser import Pages

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytest_plugins = ["tests.browser_conftest"]

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "sse" / "static" / "sse"
MODULE = STATIC / "sse-client.mjs"
PLAIN = STATIC / "sse-client.js"
HOOK = STATIC / "react" / "useAgentStream.js"
CASES = ROOT / "tests" / "js" / "sse_client_cases.js"
FAKE_REACT = ROOT / "tests" / "js" / "fake_react.mjs"

PLAIN_HEADER = (
    "// Generated from sse-client.mjs by `python -m tests.test_browser_client`:\n"
    "// edit the module, not this file.  Defines window.AgentSSEClient.\n"
    "(function (root) {\n"
    '"use strict";\n'
    "\n"
)
PLAIN_FOOTER = (
    "\n"
    "root.AgentSSEClient = AgentSSEClient;\n"
    '})(typeof window !== "undefined" ? window : globalThis);\n'
)


def plain_script(module_source: str) -> str:
    """The module's code wrapped in a function, its exports replaced by a global."""
    body, export, _ = module_source.partition("\nexport ")
    if not export:
        raise ValueError("sse-client.mjs must end with its export statements")
    return PLAIN_HEADER + body.rstrip("\n") + "\n" + PLAIN_FOOTER


def test_plain_script_is_the_module_wrapped() -> None:
    assert PLAIN.read_text(encoding="utf-8") == plain_script(MODULE.read_text(encoding="utf-8")), (
        "sse-client.js drifted from sse-client.mjs: run `python -m tests.test_browser_client`"
    )


def test_module_imports_nothing_and_exports_only_at_its_end() -> None:
    source = MODULE.read_text(encoding="utf-8")
    body, _, exports = source.partition("\nexport ")
    assert not re.search(r"^\s*(import|export)\b", body, re.MULTILINE)
    assert "AgentSSEClient" in exports


CASE_NAMES = re.findall(r"^ {4}async (\w+)\(\) \{$", CASES.read_text(encoding="utf-8"), re.M)


def test_cases_are_found() -> None:
    assert len(CASE_NAMES) >= 10


@pytest.mark.browser
@pytest.mark.parametrize("case", CASE_NAMES)
def test_client(pages: Pages, case: str) -> None:
    page = pages.new()
    page.set_content("<!doctype html><title>AgentSSEClient cases</title>")
    page.add_script_tag(content=PLAIN.read_text(encoding="utf-8"))
    page.add_script_tag(content=CASES.read_text(encoding="utf-8"))
    page.evaluate("name => window.sseClientCases[name]()", case)


HOOK_PAGE = """<!doctype html>
<title>useAgentStream</title>
<script type="importmap">{"imports": {"react": "/__hook__/react.mjs"}}</script>
<script type="module">
import { render, unmount } from "react";
import { useAgentStream } from "/static/sse/react/useAgentStream.js";

window.hookHarness = {
  start: (sessionId, token) => render(() => useAgentStream(sessionId, { token })),
  unmount,
};
</script>
"""


def _hook_page(pages: Pages, base: str) -> Page:
    """A page of ``base`` that renders the hook with the stand-in for React."""
    page = pages.new()
    page.route(
        f"{base}/__hook__/", lambda route: route.fulfill(body=HOOK_PAGE, content_type="text/html")
    )
    page.route(
        f"{base}/__hook__/react.mjs",
        lambda route: route.fulfill(path=FAKE_REACT, content_type="text/javascript"),
    )
    page.goto(f"{base}/__hook__/")
    page.wait_for_function("window.hookHarness !== undefined")
    return page


@pytest.mark.browser
def test_react_hook(
    live_db: None, make_user: Any, make_session: Any, demo_server: Any, pages: Pages
) -> None:
    user, token = make_user()
    session_id = make_session(user).session_id
    base = demo_server.base_url
    page = _hook_page(pages, base)
    page.evaluate("([s, t]) => hookHarness.start(s, t)", [session_id, token])
    page.wait_for_function("hookResult.isConnected && hookResult.state === 'open'")

    response = httpx.post(
        f"{base}/agent_backend/api/demo/runs/",
        json={"session_id": session_id},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 202, response.text
    page.wait_for_function("hookResult.permissionRequest?.tool_name === 'write_file'")
    status = page.evaluate("hookResult.toolStatus")
    assert status["tool_name"] == "write_file"
    assert status["status"] == "waiting_permission"

    result = page.evaluate("hookResult.approvePermission(true, 'from the hook')")
    assert result["success"] is True, result
    assert result["data"]["status"] == "approved"
    page.wait_for_function(
        "hookResult.permissionRequest === null && hookResult.lastEvent?.type === 'run_finished'"
    )
    assert page.evaluate("hookResult.lastEvent.data.outcome") == "completed"

    page.evaluate("hookHarness.unmount()")
    assert page.evaluate("hookResult.client.state") == "closed"


@pytest.mark.browser
def test_react_hook_answers_with_edits_abort_and_in_batches(
    live_db: None, make_user: Any, make_session: Any, demo_server: Any, pages: Pages
) -> None:
    from permissions.models import PermissionRequest

    user, token = make_user()
    session_id = make_session(user).session_id
    base = demo_server.base_url
    page = _hook_page(pages, base)
    page.evaluate("([s, t]) => hookHarness.start(s, t)", [session_id, token])
    page.wait_for_function("hookResult.isConnected")

    def start_run(scenario: str) -> None:
        response = httpx.post(
            f"{base}/agent_backend/api/demo/runs/",
            json={"session_id": session_id, "scenario": scenario},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 202, response.text

    # Two requests at once: both listed, answered in one batch.
    start_run("parallel")
    page.wait_for_function("hookResult.permissionRequests.length === 2")
    results = page.evaluate(
        """() => {
          const byTool = Object.fromEntries(
            hookResult.permissionRequests.map((p) => [p.tool_name, p.request_id]));
          return hookResult.respondAll([
            { requestId: byTool.write_file, approved: true, arguments: { path: "src/b.py" } },
            { requestId: byTool.run_tests, approved: false, reason: "not now" },
          ]).then((answer) => answer.data.results);
        }"""
    )
    assert [(r["status"], r["decision"]["status"]) for r in results] == [
        (200, "approved"),
        (200, "denied"),
    ]
    assert results[0]["decision"]["edited"] is True
    assert page.evaluate("hookResult.permissionRequests") == []
    assert page.evaluate("hookResult.permissionRequest") is None
    page.wait_for_function("hookResult.lastEvent?.type === 'run_finished'")
    assert page.evaluate("hookResult.lastEvent.data.outcome") == "completed_without_run_tests"

    # One, denied with abort: the run stops.
    start_run("single")
    page.wait_for_function("hookResult.permissionRequest?.tool_name === 'write_file'")
    result = page.evaluate(
        "hookResult.respond(null, { approved: false, reason: 'stop', abort: true })"
    )
    assert (result["data"]["status"], result["data"]["abort"]) == ("denied", True)
    page.wait_for_function("hookResult.lastEvent?.data.outcome === 'aborted'")
    rows = PermissionRequest.objects.filter(session_id=session_id, tool_name="write_file")
    assert sorted((r.status, r.edited_arguments, r.abort) for r in rows) == [
        ("approved", {"path": "src/b.py"}, False),
        ("denied", None, True),
    ]
    page.evaluate("hookHarness.unmount()")


def _write_plain_script() -> None:
    PLAIN.write_text(plain_script(MODULE.read_text(encoding="utf-8")), encoding="utf-8")
    sys.stdout.write(f"wrote {PLAIN.relative_to(ROOT)}\n")


if __name__ == "__main__":
    _write_plain_script()
