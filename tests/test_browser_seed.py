"""The product note's own JavaScript works against this server unchanged.

``/demo/seed/`` runs the note's plain EventSource example, its ``SSEClient``
class and its ``checkSSEHealth`` from ``agent_backend/static/agent_backend/seed/``,
which must stay byte for byte the code blocks of the note
(``docs/seed/sse_quickstart_guide.zh.md``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser import ROOT, Pages, log_in

pytest_plugins = ["tests.browser_conftest"]

NOTE = ROOT / "docs" / "seed" / "sse_quickstart_guide.zh.md"
# The note as handed over, when this checkout sits next to it.
ORIGINAL_NOTE = Path("/work/shared/seed/sse_quickstart_guide.zh.md")
SEED = ROOT / "agent_backend" / "static" / "agent_backend" / "seed"
SNIPPETS = {
    "basic-client.js": "const sessionId = 'your-session-id';",
    "sse-client-class.js": "class SSEClient {",
    "check-health.js": "async function checkSSEHealth(sessionId, token) {",
}


def javascript_blocks(note: str) -> list[str]:
    return re.findall(r"^```javascript\n(.*?)^```$", note, re.MULTILINE | re.DOTALL)


def test_the_pasted_code_is_the_notes_byte_for_byte() -> None:
    blocks = javascript_blocks(NOTE.read_text(encoding="utf-8"))
    for name, opening in SNIPPETS.items():
        (block,) = [b for b in blocks if b.startswith(opening)]
        assert (SEED / name).read_text(encoding="utf-8") == block, name


@pytest.mark.skipif(
    not ORIGINAL_NOTE.exists(), reason="the original note is not beside this checkout"
)
def test_the_notes_copy_is_the_original() -> None:
    assert NOTE.read_bytes() == ORIGINAL_NOTE.read_bytes()


def test_the_seed_page_is_for_development_only(server_factory: Any) -> None:
    from tests.browser import BROWSER_ENV, BROWSER_SSE

    env = BROWSER_ENV | {"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "x" * 50}
    server = server_factory(sse=BROWSER_SSE, env=env, name="production")
    assert httpx.get(f"{server.base_url}/demo/seed/").status_code == 404
    assert httpx.get(f"{server.base_url}/").status_code == 200


@pytest.mark.browser
def test_the_notes_code_receives_events_and_answers_a_permission_request(
    live_db: None, make_user: Any, demo_server: Any, pages: Pages
) -> None:
    from permissions.models import PermissionRequest

    user, _ = make_user()
    page = pages.new()
    page.goto(f"{demo_server.base_url}/demo/seed/")
    log_in(page, user.username)
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    console = page.locator("#console")
    expect(console).to_contain_text("SSE连接成功")  # SSEClient.onopen
    expect(console).to_contain_text('SSE健康状态: {"session_id":')  # checkSSEHealth
    assert '"status":"ok"' in console.inner_text()
    session_id = page.locator("#session-id").inner_text()

    page.locator("#run").click()
    expect(console).to_contain_text("收到事件: tool_status")
    expect(console).to_contain_text("工具状态: running")
    expect(console).to_contain_text("SSEClient: tool_status")  # the class receives them too
    dialog = page.locator("#permission-dialog")
    expect(dialog).to_be_visible()
    expect(console).to_contain_text("权限请求: write_file")
    expect(page.locator("#permission-tool")).to_have_text("write_file")

    page.locator("#permission-approve").click()  # the note's approvePermission(true, '用户同意')
    expect(console).to_contain_text('权限响应结果: {"success":true')
    lines = console.locator("div")
    expect(lines.filter(has_text=re.compile(r"^工具结果: true$"))).to_have_count(4)
    expect(lines.filter(has_text=re.compile(r"^工具结果: false$"))).to_have_count(0)
    expect(console).to_contain_text("心跳: ")  # heartbeats every 2 s on this server
    heartbeat = lines.filter(has_text="心跳: ").first.inner_text()
    assert re.fullmatch(r"心跳: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", heartbeat), heartbeat

    (decision,) = PermissionRequest.objects.filter(session_id=session_id)
    assert (decision.status, decision.reason, decision.decided_by) == ("approved", "用户同意", user)
    errors = [line for line in pages.logs[page] if line.startswith(("error", "pageerror"))]
    assert errors == [], errors
