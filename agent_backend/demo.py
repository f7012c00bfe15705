"""The simulated agent of the demo.

A run publishes what a real agent would: ``run_started``, a few tools with
``tool_status`` progress and a ``tool_result`` each, one tool that needs a
person's permission (``permissions.arequest_permission``), and
``run_finished``.  The demo page starts runs through ``DemoRunView``;
``manage.py run_demo_agent SESSION`` runs the same agent from a shell.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sse import notifier

logger = logging.getLogger(__name__)

# Seconds the agent waits for an answer, and between progress updates (slow
# enough for a person to follow); the environment overrides them for tests.
PERMISSION_TIMEOUT = float(os.environ.get("DEMO_AGENT_PERMISSION_TIMEOUT", "60"))
STEP_DELAY = float(os.environ.get("DEMO_AGENT_STEP_DELAY", "0.4"))

Report = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    arguments: dict[str, Any]
    progress: tuple[str, ...]
    result: dict[str, Any]


SEARCH = Tool(
    "search_code",
    {"query": "TODO", "path": "src/"},
    ("Listing files", "Scanning 42 files", "Ranking matches"),
    {"matches": 3, "files": ["src/app.py", "src/models.py"]},
)
READ = Tool(
    "read_file",
    {"path": "src/app.py"},
    ("Opening src/app.py", "Reading 128 lines"),
    {"path": "src/app.py", "lines": 128},
)
WRITE = Tool(
    "write_file",
    {"path": "src/app.py", "changes": "replace 3 TODO comments with the implementation"},
    ("Writing src/app.py",),
    {"path": "src/app.py", "bytes_written": 2048},
)
SUMMARIZE = Tool(
    "summarize",
    {"style": "short"},
    ("Drafting the summary",),
    {"summary": "Found 3 TODOs in src/app.py."},
)
WRITE_DESCRIPTION = "Overwrite src/app.py with the fixed version (3 TODOs implemented)."


@dataclass(frozen=True, slots=True)
class RunOutcome:
    run_id: str
    # How the permission request ended: approved, denied, expired or cancelled.
    permission: str
    reason: str


async def run_agent(
    session_id: str,
    *,
    run_id: str | None = None,
    step_delay: float = STEP_DELAY,
    permission_timeout: float = PERMISSION_TIMEOUT,
    report: Report | None = None,
) -> RunOutcome:
    """Run the simulated agent against ``session_id`` (which must exist)."""
    from permissions import arequest_permission

    run_id = run_id or uuid.uuid4().hex[:12]

    async def publish(event_type: str, data: dict[str, Any]) -> None:
        data = {"run_id": run_id, **data}
        await notifier.asend(session_id, event_type, data)
        if report is not None:
            report(event_type, data)

    async def status(tool_name: str, state: str, **details: Any) -> None:
        await publish("tool_status", notifier.tool_status_data(tool_name, state, **details))

    async def use(tool: Tool) -> None:
        await work(tool)
        await publish("tool_result", notifier.tool_result_data(tool.name, tool.result))

    async def work(tool: Tool) -> None:
        steps = len(tool.progress)
        for done, message in enumerate(tool.progress):
            await status(
                tool.name,
                "running",
                progress=round(done / steps, 2),
                message=message,
                arguments=tool.arguments,
            )
            await asyncio.sleep(step_delay)
        await status(tool.name, "completed", progress=1.0, message="Done")

    await publish("run_started", {"tools": [t.name for t in (SEARCH, READ, WRITE, SUMMARIZE)]})
    try:
        await use(SEARCH)
        await use(READ)
        await status(
            WRITE.name,
            "waiting_permission",
            progress=0.0,
            message="Waiting for your permission",
            arguments=WRITE.arguments,
        )
        decision = await arequest_permission(
            session_id,
            WRITE.name,
            WRITE.arguments,
            timeout=permission_timeout,
            description=WRITE_DESCRIPTION,
        )
        if decision.approved:
            await use(WRITE)
        else:
            reason = decision.reason or f"Permission {decision.status}"
            await status(WRITE.name, decision.status, message=reason)
            await publish(
                "tool_result",
                notifier.tool_result_data(
                    WRITE.name, success=False, error=reason, permission=decision.status
                ),
            )
        await use(SUMMARIZE)
    except asyncio.CancelledError:
        await asyncio.shield(publish("run_finished", {"outcome": "cancelled"}))
        raise
    except Exception as exc:
        logger.exception("Demo run %s of session %s failed", run_id, session_id)
        await publish("run_finished", {"outcome": "error", "error": str(exc)})
        raise
    outcome = "completed" if decision.approved else "completed_without_write"
    await publish(
        "run_finished",
        {"outcome": outcome, "permission": decision.status, "reason": decision.reason},
    )
    return RunOutcome(run_id, decision.status, decision.reason)


class RunInProgress(Exception):
    """A demo run is still going in this session."""


class DemoRunner:
    """Runs demo agents on an event loop of its own, in a daemon thread, so a
    synchronous view can start a run and answer at once (one run per session)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runs: dict[str, concurrent.futures.Future[RunOutcome]] = {}

    def start(self, session_id: str, **options: Any) -> str:
        run_id = uuid.uuid4().hex[:12]
        with self._lock:
            current = self._runs.get(session_id)
            if current is not None and not current.done():
                raise RunInProgress(session_id)
            future = asyncio.run_coroutine_threadsafe(
                run_agent(session_id, run_id=run_id, **options), self._running_loop()
            )
            self._runs[session_id] = future
        future.add_done_callback(lambda done: self._finished(session_id, done))
        return run_id

    def _finished(self, session_id: str, future: concurrent.futures.Future[RunOutcome]) -> None:
        with self._lock:
            if self._runs.get(session_id) is future:
                del self._runs[session_id]

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="demo-agent", daemon=True)
            thread.start()
            self._loop = loop
        return self._loop


runner = DemoRunner()
