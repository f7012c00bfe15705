"""The demo page in Chromium against a real server: a run end to end, two
tabs, and a server restart in the middle of a run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings
from playwright.sync_api import Page, expect

from sse import notifier
from tests.browser import OUTPUT_DIR, ROOT, Pages, log_in, save_compact_screenshot

pytest_plugins = ["tests.browser_conftest"]
pytestmark = pytest.mark.browser

DOCS_SCREENSHOT = ROOT / "docs" / "demo.png"
TIME = re.compile(r"^\d\d:\d\d:\d\d\.\d{3}$")


def open_demo(page: Page, base_url: str, username: str, query: str = "") -> str:
    """Log in on the demo page; the session id once the stream is open."""
    page.goto(f"{base_url}/{query}")
    log_in(page, username)
    expect(page.locator("#status")).to_have_attribute("data-state", "open")
    expect(page.locator("#run")).to_be_enabled()
    return page.locator("#session-id").inner_text()


def numbered_ids(page: Page) -> list[str]:
    """Ids of the published events in the timeline, oldest first."""
    ids = page.locator("#timeline li[data-id]").evaluate_all(
        "items => items.map(li => li.dataset.id)"
    )
    return list(reversed(ids))


def tool(page: Page, name: str) -> Any:
    return page.locator(f'#tools li[data-tool="{name}"]')


def test_demo_run_approved_then_denied(
    live_db: None, make_user: Any, demo_server: Any, pages: Pages
) -> None:
    from permissions.models import PermissionRequest

    user, _ = make_user("demo")  # the name shown in docs/demo.png
    page = pages.new()
    session_id = open_demo(page, demo_server.base_url, user.username)
    assert page.evaluate("sessionStorage.getItem('agentDemo.access')")
    assert f"session={session_id}" in page.url
    expect(page.locator("#history-link")).to_have_attribute(
        "href", "/admin/permissions/permissionrequest/"
    )

    page.locator("#run").click()
    dialog = page.locator("#permission-dialog")
    expect(dialog).to_be_visible()
    expect(page.locator("#permission-tool")).to_have_text("write_file")
    expect(page.locator("#permission-arguments")).to_contain_text('"path": "src/app.py"')
    countdown = page.locator("#permission-countdown").inner_text()
    assert re.fullmatch(r"\d+ s", countdown), countdown
    assert 50 <= int(countdown.split()[0]) <= 60, countdown
    # Progress before the question: the first tools ran and reported.
    expect(tool(page, "search_code")).to_have_attribute("data-result", "success")
    expect(tool(page, "read_file")).to_have_attribute("data-result", "success")
    expect(tool(page, "write_file")).to_have_attribute("data-status", "waiting_permission")
    progress = page.locator('#timeline li[data-type="tool_status"] .text').all_inner_texts()
    assert any(re.search(r"search_code: running \d+% — Scanning", t) for t in progress), progress
    expect(page.locator("#run")).to_be_disabled()

    page.locator("#permission-reason").fill("Looks right")
    page.locator("#permission-approve").click()
    expect(dialog).to_be_hidden()
    expect(tool(page, "write_file")).to_have_attribute("data-result", "success")
    expect(tool(page, "write_file")).to_contain_text("bytes_written")
    cleared = page.locator('#timeline li[data-type="permission_cleared"]')
    expect(cleared).to_contain_text("approved — Looks right")
    expect(page.locator('#timeline li[data-type="run_finished"]')).to_contain_text("completed")
    expect(page.locator("#run")).to_be_enabled()
    _save_screenshot(page)

    page.locator("#run").click()
    expect(dialog).to_be_visible()
    page.locator("#permission-deny").click()
    expect(dialog).to_be_hidden()
    expect(tool(page, "write_file")).to_have_attribute("data-result", "failure")
    expect(tool(page, "write_file")).to_contain_text("Denied in the demo")
    expect(page.locator('#timeline li[data-type="tool_result"]').first).to_contain_text(
        "summarize: success"
    )
    expect(page.locator('#timeline li[data-type="run_finished"]')).to_have_count(2)

    # Every event of the timeline has its time; none is there twice.
    times = page.locator("#timeline li.event time").all_inner_texts()
    assert times
    assert all(TIME.match(t) for t in times), times
    ids = numbered_ids(page)
    assert len(ids) == len(set(ids)) > 20
    decisions = PermissionRequest.objects.filter(session_id=session_id).order_by("requested_at")
    assert [(r.status, r.reason, r.decided_by) for r in decisions] == [
        ("approved", "Looks right", user),
        ("denied", "Denied in the demo", user),
    ]


def _save_screenshot(page: Page) -> None:
    """test-output/demo.png always; docs/demo.png with UPDATE_DOCS_SCREENSHOT=1."""
    OUTPUT_DIR.mkdir(exist_ok=True)
    page.screenshot(path=str(OUTPUT_DIR / "demo.png"))
    if os.environ.get("UPDATE_DOCS_SCREENSHOT") == "1":
        save_compact_screenshot(page, DOCS_SCREENSHOT)
        assert DOCS_SCREENSHOT.stat().st_size < 150_000


def test_answering_in_one_tab_clears_the_dialog_in_the_other(
    live_db: None, make_user: Any, demo_server: Any, pages: Pages
) -> None:
    user, _ = make_user()
    first = pages.new()
    session_id = open_demo(first, demo_server.base_url, user.username)
    with pages.context.expect_page() as opened:
        first.locator("#share-link").click()  # the new tab keeps the login
    second = pages.adopt(opened.value)
    expect(second.locator("#status")).to_have_attribute("data-state", "open")
    assert second.locator("#session-id").inner_text() == session_id

    first.locator("#run").click()
    for page in (first, second):
        expect(page.locator("#permission-dialog")).to_be_visible()
        expect(page.locator("#permission-tool")).to_have_text("write_file")
    request_id = first.locator("#permission-dialog").get_attribute("data-request-id")
    assert request_id
    assert second.locator("#permission-dialog").get_attribute("data-request-id") == request_id

    second.locator("#permission-approve").click()
    for page in (second, first):
        expect(page.locator("#permission-dialog")).to_be_hidden()
        expect(tool(page, "write_file")).to_have_attribute("data-result", "success")
        expect(page.locator('#timeline li[data-type="permission_cleared"]')).to_contain_text(
            "approved"
        )
    # The run was started in the first tab; the second one follows it too.
    expect(second.locator("#run")).to_be_enabled()


# --- a restart in the middle of a run (Redis keeps the events published meanwhile) --------


@contextmanager
def redis_notifier(redis_url: str) -> Iterator[None]:
    """``sse.notifier`` of this process publishing through ``redis_url``."""
    with override_settings(SSE={**settings.SSE, "REDIS_URL": redis_url}):
        yield


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.redis
def test_client_resumes_without_loss_after_a_server_restart(
    live_db: None, make_user: Any, server_factory: Any, redis_server: Any, pages: Pages
) -> None:
    from tests.browser import BROWSER_ENV, BROWSER_SSE

    server = server_factory("redis", sse=BROWSER_SSE, env=BROWSER_ENV, name="restarted")
    user, _ = make_user()
    page = pages.new()
    session_id = open_demo(page, server.base_url, user.username)
    with redis_notifier(redis_server.url):

        def publish(step: int) -> str:
            return notifier.tool_status(
                session_id, "long_task", "running", progress=step / 30, message=f"step {step}"
            )

        published = [publish(step) for step in range(5)]
        wait_until(lambda: numbered_ids(page) == published, "the first events")

        server.stop()
        expect(page.locator("#status")).to_have_attribute("data-state", "reconnecting")
        published += [publish(step) for step in range(5, 20)]  # while the server is down
        server.start()
        expect(page.locator("#status")).to_have_attribute("data-state", "open")
        published += [publish(step) for step in range(20, 30)]

    wait_until(lambda: len(numbered_ids(page)) >= len(published), "every event", timeout=30)
    time.sleep(0.5)  # and nothing more arrives
    assert numbered_ids(page) == published
    resumed = page.locator('#timeline li[data-type="connected"]').first
    expect(resumed).to_contain_text(f"resuming after {published[4]}")
    expect(page.locator('#timeline li[data-type="replay_gap"]')).to_have_count(0)


@pytest.mark.redis
def test_agent_run_from_a_shell_survives_a_server_restart(
    live_db: None, make_user: Any, server_factory: Any, redis_server: Any, pages: Pages
) -> None:
    """``manage.py run_demo_agent`` in its own process, publishing through
    Redis; the server restarts mid-run; the browser still sees every event
    once and its answer reaches the agent."""
    from tests.browser import BROWSER_ENV, BROWSER_SSE

    server = server_factory("redis", sse=BROWSER_SSE, env=BROWSER_ENV, name="restarted")
    user, _ = make_user()
    page = pages.new()
    session_id = open_demo(page, server.base_url, user.username)
    agent = subprocess.Popen(
        [sys.executable, "manage.py", "run_demo_agent", session_id, "--step-delay", "0.3"],
        cwd=ROOT,
        env=server.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until(lambda: len(numbered_ids(page)) >= 3, "the agent's first events")
        server.stop()
        time.sleep(1.0)  # the agent goes on publishing meanwhile
        server.start()
        dialog = page.locator("#permission-dialog")
        expect(dialog).to_be_visible(timeout=30_000)
        page.locator("#permission-approve").click()
        expect(page.locator('#timeline li[data-type="run_finished"]')).to_contain_text(
            "completed", timeout=30_000
        )
        output, _ = agent.communicate(timeout=30)
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
    assert agent.returncode == 0, output
    assert "finished: permission approved" in output, output
    expect(tool(page, "write_file")).to_have_attribute("data-result", "success")
    with redis_server.client() as client:
        buffered = [entry_id.decode() for entry_id, _ in client.xrange(f"sse_buffer:{session_id}")]
    # The page was open before the agent started: it saw every event, once, in order.
    assert numbered_ids(page) == buffered
    assert len(buffered) >= 20
    expect(page.locator('#timeline li[data-type="connected"]').first).to_contain_text(
        "resuming after"
    )


# --- tokens ---------------------------------------------------------------------------------


def test_expired_and_invalid_tokens_are_replaced_without_losing_the_stream(
    live_db: None, make_user: Any, server_factory: Any, pages: Pages
) -> None:
    from tests.browser import BROWSER_ENV, BROWSER_SSE

    # Access tokens live 3 s: the server ends the stream with token_expired,
    # and the page gets a new token with its refresh token.
    server = server_factory(
        sse=BROWSER_SSE, env=BROWSER_ENV | {"JWT_ACCESS_SECONDS": "3"}, name="short-tokens"
    )
    user, _ = make_user()
    page = pages.new()
    open_demo(page, server.base_url, user.username)
    first_token = page.evaluate("sessionStorage.getItem('agentDemo.access')")
    expect(page.locator('#timeline li[data-type="token_expired"]')).to_have_count(1)
    expect(page.locator('#timeline li[data-type="connected"]')).to_have_count(2)
    expect(page.locator("#status")).to_have_attribute("data-state", "open")
    assert page.evaluate("sessionStorage.getItem('agentDemo.access')") != first_token

    # A run across token renewals: the answer goes out with a valid token.
    page.locator("#run").click()
    expect(page.locator("#permission-dialog")).to_be_visible()
    page.wait_for_timeout(3500)  # the token of the run's start has expired meanwhile
    page.locator("#permission-approve").click()
    expect(tool(page, "write_file")).to_have_attribute("data-result", "success")

    # A token the server refuses outright (401): the client asks for another.
    page.evaluate("sessionStorage.setItem('agentDemo.access', 'not-a-token')")
    page.reload()
    expect(page.locator("#status")).to_have_attribute("data-state", "open")
    assert page.evaluate("sessionStorage.getItem('agentDemo.access')") != "not-a-token"
    ids = numbered_ids(page)
    assert len(ids) == len(set(ids))


def test_an_unanswered_request_expires(
    live_db: None, make_user: Any, server_factory: Any, pages: Pages
) -> None:
    from tests.browser import BROWSER_ENV, BROWSER_SSE

    env = BROWSER_ENV | {"DEMO_AGENT_PERMISSION_TIMEOUT": "3"}
    server = server_factory(sse=BROWSER_SSE, env=env, name="quick-expiry")
    user, _ = make_user()
    page = pages.new()
    open_demo(page, server.base_url, user.username)
    page.locator("#run").click()
    expect(page.locator("#permission-dialog")).to_be_visible()
    countdown = page.locator("#permission-countdown")
    expect(countdown).to_have_text(re.compile(r"^[23] s$"))
    expect(countdown).to_have_text(re.compile(r"^(1 s|expired)$"))
    # The server's expiry closes the dialog (the countdown's last second may not be over).
    expect(page.locator("#permission-dialog")).to_be_hidden()
    expect(page.locator('#timeline li[data-type="permission_cleared"]')).to_contain_text("expired")
    expect(tool(page, "write_file")).to_have_attribute("data-result", "failure")
    expect(page.locator('#timeline li[data-type="run_finished"]')).to_contain_text(
        "completed_without_write"
    )
