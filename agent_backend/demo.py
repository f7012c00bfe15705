"""The simulated agent of the demo.

A run publishes what a real agent would: ``run_started``, a few tools with
``tool_status`` progress and a ``tool_result`` each, one tool (or, in the
``parallel`` scenario, two at once) that needs a person's permission
(``permissions.arequest_permission``), and ``run_finished``.  An approved tool
runs with the arguments of the decision (a person's edits show in its
status and result); a denial with ``abort`` stops the run.  The demo page
starts runs through ``DemoRunView``; ``manage.py run_demo_agent SESSION``
runs the same agent from a shell.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sse import notifier

if TYPE_CHECKING:
    from permissions import Decision

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
    description: str = ""
    # Arguments the result repeats, so what the tool ran with shows.
    echoed: tuple[str, ...] = ()

    def outcome(self, arguments: dict[str, Any]) -> dict[str, Any]:
        return self.result | {name: arguments[name] for name in self.echoed if name in arguments}


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
    description="Overwrite src/app.py with the fixed version (3 TODOs implemented).",
    echoed=("path", "changes"),
)
TESTS = Tool(
    "run_tests",
    {"command": "pytest -q tests/test_app.py"},
    ("Collecting tests", "Running 12 tests"),
    {"passed": 12, "failed": 0},
    description="Run the tests of src/app.py.",
    echoed=("command",),
)
SUMMARIZE = Tool(
    "summarize",
    {"style": "short"},
    ("Drafting the summary",),
    {"summary": "Found 3 TODOs in src/app.py."},
)

STOPPED = "Not run: the run was stopped"

# What the agent asks a person about, by scenario: "single" one tool,
# "parallel" two tool calls of one step at once (as a model may plan them).
SCENARIOS: dict[str, tuple[Tool, ...]] = {"single": (WRITE,), "parallel": (WRITE, TESTS)}


@dataclass(frozen=True, slots=True)
class RunOutcome:
    run_id: str
    # How the permission requests ended (approved, denied, expired or
    # cancelled), comma-separated in the order asked.
    permission: str
    reason: str
    # completed, completed_without_<tools>, or aborted (a person stopped the run).
    outcome: str = "completed"


async def run_agent(
    session_id: str,
    *,
    run_id: str | None = None,
    step_delay: float = STEP_DELAY,
    permission_timeout: float = PERMISSION_TIMEOUT,
    scenario: str = "single",
    report: Report | None = None,
) -> RunOutcome:
    """Run the simulated agent against ``session_id`` (which must exist)."""
    from permissions import arequest_permission

    run_id = run_id or uuid.uuid4().hex[:12]
    asked = SCENARIOS[scenario]

    async def publish(event_type: str, data: dict[str, Any]) -> None:
        data = {"run_id": run_id, **data}
        await notifier.asend(session_id, event_type, data)
        if report is not None:
            report(event_type, data)

    async def status(tool_name: str, state: str, **details: Any) -> None:
        await publish("tool_status", notifier.tool_status_data(tool_name, state, **details))

    async def use(tool: Tool, arguments: dict[str, Any] | None = None, **details: Any) -> None:
        arguments = tool.arguments if arguments is None else arguments
        steps = len(tool.progress)
        for done, message in enumerate(tool.progress):
            await status(
                tool.name,
                "running",
                progress=round(done / steps, 2),
                message=message,
                arguments=arguments,
            )
            await asyncio.sleep(step_delay)
        await status(tool.name, "completed", progress=1.0, message="Done")
        await publish(
            "tool_result", notifier.tool_result_data(tool.name, tool.outcome(arguments), **details)
        )

    async def ask(number: int, tool: Tool) -> Decision:
        return await arequest_permission(
            session_id,
            tool.name,
            tool.arguments,
            timeout=permission_timeout,
            description=tool.description,
            tool_call_id=f"call_{run_id}_{number}",
        )

    async def decide(tools: tuple[Tool, ...]) -> dict[str, Decision]:
        """Ask about every tool at once; a request to stop the run cancels
        the questions still open (their dialogs close)."""
        waiting = {
            asyncio.ensure_future(ask(number, tool)): tool for number, tool in enumerate(tools)
        }
        decisions: dict[str, Decision] = {}
        try:
            while waiting:
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                for future in done:
                    decisions[waiting.pop(future).name] = future.result()
                if any(decision.abort for decision in decisions.values()):
                    break
        finally:
            for future in waiting:
                future.cancel()
            await asyncio.gather(*waiting, return_exceptions=True)
        return decisions

    async def act(tool: Tool, decision: Decision | None, stopped: bool) -> bool:
        """Run ``tool`` if it was approved and the run goes on; whether it ran."""
        if decision is None or (stopped and decision.approved):
            await status(tool.name, "cancelled", message=STOPPED)
            return False
        if decision.approved:
            if decision.edited:
                text = f"Approved with edits: {json.dumps(decision.arguments)}"
            else:
                text = decision.reason or "Approved"
            await status(tool.name, "approved", message=text, arguments=decision.arguments)
            await use(tool, decision.arguments, edited=decision.edited)
            return True
        reason = decision.reason or f"Permission {decision.status}"
        await status(tool.name, decision.status, message=reason)
        await publish(
            "tool_result",
            notifier.tool_result_data(
                tool.name,
                success=False,
                error=reason,
                permission=decision.status,
                aborted=decision.abort,
            ),
        )
        return False

    await publish("run_started", {"tools": [t.name for t in (SEARCH, READ, *asked, SUMMARIZE)]})
    try:
        await use(SEARCH)
        await use(READ)
        for tool in asked:
            await status(
                tool.name,
                "waiting_permission",
                progress=0.0,
                message="Waiting for your permission",
                arguments=tool.arguments,
            )
        decisions = await decide(asked)
        stop = next((d for d in decisions.values() if d.abort), None)
        skipped = [
            tool.name
            for tool in asked
            if not await act(tool, decisions.get(tool.name), stop is not None)
        ]
        if stop is None:
            await use(SUMMARIZE)
        else:
            await status(SUMMARIZE.name, "cancelled", message=STOPPED)
    except asyncio.CancelledError:
        await asyncio.shield(publish("run_finished", {"outcome": "cancelled"}))
        raise
    except Exception as exc:
        logger.exception("Demo run %s of session %s failed", run_id, session_id)
        await publish("run_finished", {"outcome": "error", "error": str(exc)})
        raise
    statuses = [decisions[t.name].status if t.name in decisions else "cancelled" for t in asked]
    refused = [d.reason for d in decisions.values() if not d.approved]
    if stop is not None:
        outcome = "aborted"
    elif skipped:
        outcome = "completed_without_" + "_and_".join(skipped)
    else:
        outcome = "completed"
    reason = stop.reason if stop is not None else (refused[0] if refused else "")
    await publish(
        "run_finished",
        {"outcome": outcome, "permission": ", ".join(statuses), "reason": reason},
    )
    return RunOutcome(run_id, ", ".join(statuses), reason, outcome)


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
