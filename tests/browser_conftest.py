"""Browser fixtures: Debian's Chromium driven by Playwright for Python.

Never ``playwright install``: the browser is the system's (``chromium_executable``
from ``tests/conftest.py``).  Test modules load this file with
``pytest_plugins = ["tests.browser_conftest"]``.  When a test fails, every
page it opened is saved to ``test-output/`` (screenshot and console log).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from tests.browser import BROWSER_ENV, BROWSER_SSE, Pages

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Playwright

BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1100, "height": 750}
ASYNC_UNSAFE = "DJANGO_ALLOW_ASYNC_UNSAFE"


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    # Module scope: the sync API owns an event loop while it runs, which the
    # suite's async tests in other modules must not find.
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=15_000)
    # The sync API keeps its event loop marked as running in this thread, so
    # Django would refuse the tests' (synchronous) ORM calls.  The servers
    # keep the check: BROWSER_ENV sets the variable empty for them.
    previous = os.environ.get(ASYNC_UNSAFE)
    os.environ[ASYNC_UNSAFE] = "true"
    try:
        with sync_playwright() as instance:
            yield instance
    finally:
        if previous is None:
            del os.environ[ASYNC_UNSAFE]
        else:
            os.environ[ASYNC_UNSAFE] = previous


@pytest.fixture(scope="module")
def browser(playwright: Playwright, chromium_executable: str) -> Iterator[Browser]:
    browser = playwright.chromium.launch(
        executable_path=chromium_executable, args=BROWSER_ARGS, headless=True
    )
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture
def pages(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Pages]:
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    opened = Pages(context)
    failed_before = request.session.testsfailed
    try:
        yield opened
    finally:
        # The call phase is reported before fixtures are torn down.
        if request.session.testsfailed > failed_before:
            opened.save(re.sub(r"[^\w.-]+", "_", request.node.name))
        context.close()


@pytest.fixture
def demo_server(server_factory: Any) -> Any:
    """The project under uvicorn, memory broker, set up for the browser tests."""
    return server_factory(sse=BROWSER_SSE, env=BROWSER_ENV)
