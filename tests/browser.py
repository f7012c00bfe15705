"""Helpers of the browser tests (their fixtures are in ``tests/browser_conftest.py``)."""

from __future__ import annotations

import base64
import struct
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

from tests.conftest import PASSWORD

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page

ROOT = Path(__file__).resolve().parent.parent
OUTPUT_DIR = ROOT / "test-output"
# Servers for the browser tests: the seed page needs DEBUG, the note's code
# logs heartbeats (every 2 s here), and the simulated agent need not dawdle.
# DJANGO_ALLOW_ASYNC_UNSAFE is set in the test process (see browser_conftest),
# never in the servers.
BROWSER_ENV = {"DJANGO_DEBUG": "1", "DEMO_AGENT_STEP_DELAY": "0.1", "DJANGO_ALLOW_ASYNC_UNSAFE": ""}
BROWSER_SSE = {"HEARTBEAT_INTERVAL": 2}


class Pages:
    """Opens pages in one browser context and keeps what they logged."""

    def __init__(self, context: BrowserContext) -> None:
        self.context = context
        self.logs: dict[Page, list[str]] = {}

    def new(self) -> Page:
        return self.adopt(self.context.new_page())

    def adopt(self, page: Page) -> Page:
        """Record ``page`` too (one the page under test opened)."""
        log: list[str] = []
        self.logs[page] = log
        page.on("console", lambda message: log.append(f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: log.append(f"pageerror: {error}"))
        return page

    def save(self, name: str) -> list[Path]:
        OUTPUT_DIR.mkdir(exist_ok=True)
        saved = []
        for number, (page, log) in enumerate(self.logs.items()):
            stem = OUTPUT_DIR / f"{name}-{number}"
            (stem.with_suffix(".log")).write_text("\n".join(log) + "\n", encoding="utf-8")
            if not page.is_closed():
                page.screenshot(path=str(stem.with_suffix(".png")), full_page=True)
                saved.append(stem.with_suffix(".png"))
        return saved


def log_in(page: Page, username: str, password: str = PASSWORD) -> None:
    """Fill the login form of the demo (or seed) page."""
    form = page.locator("#login-form")
    form.locator("input[name=username]").fill(username)
    form.locator("input[name=password]").fill(password)
    form.locator("button[type=submit]").click()


_PIXELS = """async (png) => {
  const blob = await (await fetch(`data:image/png;base64,${png}`)).blob();
  const bitmap = await createImageBitmap(blob);
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const context = canvas.getContext("2d");
  context.drawImage(bitmap, 0, 0);
  const pixels = context.getImageData(0, 0, bitmap.width, bitmap.height).data;
  let binary = "";
  for (let i = 0; i < pixels.length; i += 0x8000) {
    binary += String.fromCharCode(...pixels.subarray(i, i + 0x8000));
  }
  return [bitmap.width, bitmap.height, btoa(binary)];
}"""


def save_compact_screenshot(page: Page, path: Path) -> None:
    """A screenshot of ``page`` about a quarter smaller than Chromium's own PNG.

    A UI's flat colours and text compress best with unfiltered rows and zlib
    level 9; the browser decodes its PNG for us (no imaging library needed).
    """
    png = page.screenshot()
    width, height, encoded = page.evaluate(_PIXELS, base64.b64encode(png).decode())
    rgba = base64.b64decode(encoded)
    rgb = bytearray(width * height * 3)
    for channel in range(3):
        rgb[channel::3] = rgba[channel::4]
    stride = width * 3
    rows = b"".join(b"\x00" + rgb[y * stride : (y + 1) * stride] for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )
