"""The demo's approval dialog in Chromium against a real server: arguments
edited in its JSON editor, remembered approvals, a denial with a message, a
stopped run, and several requests at once (a list, "Approve all")."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from playwright.sync_api import Page, Request, expect

from tests.browser import OUTPUT_DIR, ROOT, Pages, save_compact_screenshot
from tests.test_browser_demo import open_demo, tool

pytest_plugins = ["tests.browser_conftest"]
pytestmark = pytest.mark.browser

DOCS_SCREENSHOT = ROOT / "docs" / "approvals.png"
ASKED = {"path": "src/app.py", "changes": "replace 3 TODO comments with the implementation"}


def timeline(page: Page, event_type: str) -> Any:
    return page.locator(f'#timeline li[data-type="{event_type}"]')


def answers_sent(page: Page) -> list[Any]:
    """The bodies the page POSTs to permission-response, as they go out."""
    sent: list[Any] = []

    def record(request: Request) -> None:
        if request.method == "POST" and "/sse/permission-response/" in request.url:
            sent.append(request.post_data_json)

    page.on("request", record)
    return sent


def listed(page: Page, tool_name: str) -> Any:
    """The dialog's list item of the request for ``tool_name``."""
    return page.locator("#permission-list li").filter(
        has=page.locator(".tool-name", has_text=tool_name)
    )


def run(page: Page, scenario: str = "single") -> None:
    page.locator("#scenario").select_option(scenario)
    expect(page.locator("#run")).to_be_enabled()
    page.locator("#run").click()


def finished(page: Page, runs: int) -> None:
    expect(timeline(page, "run_finished")).to_have_count(runs)


def test_edited_arguments_are_validated_and_reach_the_agent(
    live_db: None, make_user: Any, demo_server: Any, pages: Pages
) -> None:
    from permissions.models import PermissionRequest

    user, _ = make_user()
    page = pages.new()
    session_id = open_demo(page, demo_server.base_url, user.username)
    sent = answers_sent(page)
    run(page)
    editor = page.locator("#permission-arguments")
    approve = page.locator("#permission-approve")
    error = page.locator("#permission-arguments-error")
    expect(page.locator("#permission-dialog")).to_be_visible()
    assert json.loads(editor.input_value()) == ASKED
    expect(page.locator("#permission-call")).to_contain_text("call_")  # the agent's tool call id

    # Validated as the person types: invalid JSON disables Approve and says why.
    editor.fill('{"path": "src/other.py",')
    expect(approve).to_be_disabled()
    expect(error).to_contain_text("Not valid JSON")
    expect(editor).to_have_attribute("aria-invalid", "true")
    editor.press("End")
    editor.press_sequentially(' "x": 1}')
    expect(approve).to_be_enabled()
    expect(approve).to_have_text("Approve with edits")
    expect(error).to_have_text("")
    editor.fill('["src/other.py"]')
    expect(approve).to_be_disabled()
    expect(error).to_contain_text("must be a JSON object")
    # Undo restores what was asked: an approval without edits again.
    page.locator("#permission-undo").click()
    assert json.loads(editor.input_value()) == ASKED
    expect(approve).to_have_text("Approve")
    # Keys reordered only: no edit.
    editor.fill(json.dumps(dict(reversed(ASKED.items()))))
    expect(approve).to_have_text("Approve")

    edits = {"path": "src/other.py", "changes": "only the first TODO"}
    editor.fill(json.dumps(edits, indent=2))
    approve.click()
    expect(page.locator("#permission-dialog")).to_be_hidden()
    assert sent[-1]["arguments"] == edits
    assert "remember" not in sent[-1]

    # The agent ran the tool with the edits, and says so.
    expect(tool(page, "write_file")).to_have_attribute("data-result", "success")
    expect(tool(page, "write_file")).to_contain_text("src/other.py")
    result = timeline(page, "tool_result").filter(has_text="write_file")
    expect(result).to_contain_text('"path":"src/other.py"')
    expect(result).to_contain_text("(with your edits)")
    statuses = timeline(page, "tool_status").filter(has_text="write_file: approved")
    expect(statuses).to_contain_text("Approved with edits")
    finished(page, 1)
    expect(timeline(page, "run_finished")).to_contain_text("completed")

    row = PermissionRequest.objects.get(session_id=session_id)
    assert (row.status, row.arguments, row.edited_arguments) == ("approved", ASKED, edits)
    assert row.tool_call_id.startswith("call_")


@pytest.mark.parametrize(
    ("choice", "scope"), [("for this session", "session"), ("always for me", "user")]
)
def test_a_remembered_approval_is_not_asked_again(
    live_db: None, make_user: Any, demo_server: Any, pages: Pages, choice: str, scope: str
) -> None:
    from permissions.models import PermissionRequest, PermissionRule

    user, _ = make_user()
    page = pages.new()
    first_session = open_demo(page, demo_server.base_url, user.username)
    sent = answers_sent(page)
    run(page)
    expect(page.locator("#permission-dialog")).to_be_visible()
    page.get_by_label(choice).check()
    page.locator("#permission-approve").click()
    expect(page.locator("#permission-dialog")).to_be_hidden()
    assert sent[-1]["remember"] == scope
    finished(page, 1)
    rule = PermissionRule.objects.get()
    assert (rule.scope, rule.tool_name, rule.effect) == (scope, "write_file", "allow")

    if scope == "user":  # the user's other sessions too
        page.locator("#new-session").click()
        expect(page.locator("#session-id")).not_to_have_text(first_session)
        expect(page.locator("#status")).to_have_attribute("data-state", "open")
    second_session = page.locator("#session-id").inner_text()
    asked_before = timeline(page, "permission_request").count()
    run(page)
    finished(page, 1 if scope == "user" else 2)
    # No dialog: the request was decided by the rule before any tab saw it.
    expect(timeline(page, "permission_request")).to_have_count(asked_before)
    expect(page.locator("#permission-dialog")).to_be_hidden()
    expect(tool(page, "write_file")).to_have_attribute("data-result", "success")
    cleared = timeline(page, "permission_cleared").first
    expect(cleared).to_contain_text(f"approved — Remembered: approved by {user.username}")
    later = PermissionRequest.objects.filter(session_id=second_session).order_by("-requested_at")[0]
    assert (later.status, later.decided_by, later.decided_by_rule) == (
        "approved",
        None,
        f"rule:{rule.pk}",
    )


def test_deny_with_a_message_then_stop_the_run(
    live_db: None, make_user: Any, demo_server: Any, pages: Pages
) -> None:
    from permissions.models import PermissionRequest

    user, _ = make_user()
    page = pages.new()
    session_id = open_demo(page, demo_server.base_url, user.username)
    sent = answers_sent(page)

    run(page)
    expect(page.locator("#permission-dialog")).to_be_visible()
    page.get_by_label("for this session").check()  # applies to approvals only
    page.locator("#permission-reason").fill("Use a branch instead")
    page.locator("#permission-deny").click()
    expect(page.locator("#permission-dialog")).to_be_hidden()
    assert sent[-1] == {
        "approved": False,
        "reason": "Use a branch instead",
        "request_id": sent[-1]["request_id"],
    }
    # The agent got the message, skipped the tool and went on.
    expect(tool(page, "write_file")).to_have_attribute("data-result", "failure")
    expect(tool(page, "write_file")).to_contain_text("Use a branch instead")
    failed = timeline(page, "tool_result").filter(has_text="write_file")
    expect(failed).to_contain_text("failed — Use a branch instead")
    expect(tool(page, "summarize")).to_have_attribute("data-result", "success")
    finished(page, 1)
    expect(timeline(page, "run_finished")).to_contain_text("completed_without_write_file")

    run(page)
    expect(page.locator("#permission-dialog")).to_be_visible()
    # The message and the choice were reset for the new request.
    expect(page.locator("#permission-reason")).to_have_value("")
    expect(page.get_by_label("once")).to_be_checked()
    page.locator("#permission-reason").fill("Wrong repository")
    page.locator("#permission-abort").click()
    expect(page.locator("#permission-dialog")).to_be_hidden()
    assert sent[-1]["abort"] is True
    # The agent stopped: no summary, the run ends aborted.
    expect(tool(page, "summarize")).to_have_attribute("data-status", "cancelled")
    expect(timeline(page, "tool_result").first).to_contain_text(
        "write_file: failed — Wrong repository (run stopped)"
    )
    finished(page, 2)
    expect(timeline(page, "run_finished").first).to_contain_text("aborted")
    expect(page.locator("#run-message")).to_have_text("Run stopped: Wrong repository")
    summaries = timeline(page, "tool_result").filter(has_text="summarize")
    expect(summaries).to_have_count(1)  # the first run's only

    rows = PermissionRequest.objects.filter(session_id=session_id).order_by("requested_at")
    assert [(r.status, r.reason, r.abort, r.remember) for r in rows] == [
        ("denied", "Use a branch instead", False, ""),
        ("denied", "Wrong repository", True, ""),
    ]


def test_two_requests_show_as_a_list_and_approve_all_decides_both(
    live_db: None, make_user: Any, demo_server: Any, pages: Pages
) -> None:
    from permissions.models import PermissionRequest

    user, _ = make_user("demo")  # the name shown in docs/approvals.png
    page = pages.new()
    session_id = open_demo(page, demo_server.base_url, user.username)
    sent = answers_sent(page)
    run(page, "parallel")
    items = page.locator("#permission-list li")
    expect(items).to_have_count(2)
    expect(page.locator("#permission-queue-count")).to_have_text("2 requests waiting")
    # The two were asked at once: either may have come first.
    first = items.nth(0).locator(".tool-name").inner_text()
    expect(items.nth(0)).to_have_attribute("aria-current", "true")
    expect(page.locator("#permission-tool")).to_have_text(first)
    write, tests = listed(page, "write_file"), listed(page, "run_tests")

    # Edit run_tests: select it in the list; its edits stay its own.
    tests.locator('[data-action="select"]').click()
    expect(page.locator("#permission-tool")).to_have_text("run_tests")
    expect(tests).to_have_attribute("aria-current", "true")
    editor = page.locator("#permission-arguments")
    editor.fill('{"command": "pytest -q tests/test_app.py -x"')
    approve_all = page.locator("#permission-approve-all")
    expect(approve_all).to_be_disabled()  # not while an edit is broken
    expect(tests.locator('[data-action="approve"]')).to_be_disabled()
    expect(write.locator('[data-action="approve"]')).to_be_enabled()
    editor.press("End")
    editor.press_sequentially("}")
    expect(approve_all).to_be_enabled()
    expect(approve_all).to_have_text("Approve all (2)")
    write.locator('[data-action="select"]').click()
    assert json.loads(editor.input_value()) == ASKED
    tests.locator('[data-action="select"]').click()
    assert json.loads(editor.input_value()) == {"command": "pytest -q tests/test_app.py -x"}
    _save_screenshot(page)

    approve_all.click()
    expect(page.locator("#permission-dialog")).to_be_hidden()
    (batch,) = sent  # one POST for both
    rows = PermissionRequest.objects.filter(session_id=session_id)
    ids = {str(row.request_id): row.tool_name for row in rows}
    decisions = {ids[d["request_id"]]: d for d in batch["decisions"]}
    assert [decisions[name]["approved"] for name in ("write_file", "run_tests")] == [True, True]
    assert "arguments" not in decisions["write_file"]
    assert decisions["run_tests"]["arguments"] == {"command": "pytest -q tests/test_app.py -x"}

    for name in ("write_file", "run_tests", "summarize"):
        expect(tool(page, name)).to_have_attribute("data-result", "success")
    expect(tool(page, "run_tests")).to_contain_text("pytest -q tests/test_app.py -x")
    finished(page, 1)
    expect(timeline(page, "run_finished")).to_contain_text("completed")
    rows = PermissionRequest.objects.filter(session_id=session_id).order_by("tool_name")
    assert [(r.tool_name, r.status, r.edited_arguments) for r in rows] == [
        ("run_tests", "approved", {"command": "pytest -q tests/test_app.py -x"}),
        ("write_file", "approved", None),
    ]


def test_each_listed_request_has_its_own_actions_and_stopping_cancels_the_rest(
    live_db: None, make_user: Any, demo_server: Any, pages: Pages
) -> None:
    from permissions.models import PermissionRequest

    user, _ = make_user()
    page = pages.new()
    session_id = open_demo(page, demo_server.base_url, user.username)
    items = page.locator("#permission-list li")

    run(page, "parallel")
    expect(items).to_have_count(2)
    listed(page, "run_tests").locator('[data-action="deny"]').click()
    # One left: no list, the editor shows it.
    expect(page.locator("#permission-queue")).to_be_hidden()
    expect(page.locator("#permission-tool")).to_have_text("write_file")
    page.locator("#permission-approve").click()
    expect(page.locator("#permission-dialog")).to_be_hidden()
    expect(tool(page, "write_file")).to_have_attribute("data-result", "success")
    expect(tool(page, "run_tests")).to_have_attribute("data-result", "failure")
    finished(page, 1)
    expect(timeline(page, "run_finished")).to_contain_text("completed_without_run_tests")

    run(page, "parallel")
    expect(items).to_have_count(2)
    listed(page, "write_file").locator('[data-action="select"]').click()
    expect(page.locator("#permission-tool")).to_have_text("write_file")
    page.locator("#permission-abort").click()  # the question about run_tests goes too
    expect(page.locator("#permission-dialog")).to_be_hidden()
    finished(page, 2)
    expect(timeline(page, "run_finished").first).to_contain_text("aborted")
    expect(tool(page, "run_tests")).to_have_attribute("data-status", "cancelled")
    statuses = PermissionRequest.objects.filter(session_id=session_id).order_by("requested_at")
    assert sorted((r.tool_name, r.status) for r in statuses[2:]) == [
        ("run_tests", "cancelled"),
        ("write_file", "denied"),
    ]


def _save_screenshot(page: Page) -> None:
    """test-output/approvals.png always; docs/approvals.png with UPDATE_DOCS_SCREENSHOT=1."""
    OUTPUT_DIR.mkdir(exist_ok=True)
    page.screenshot(path=str(OUTPUT_DIR / "approvals.png"))
    if os.environ.get("UPDATE_DOCS_SCREENSHOT") == "1":
        save_compact_screenshot(page, DOCS_SCREENSHOT)
        assert DOCS_SCREENSHOT.stat().st_size < 150_000
