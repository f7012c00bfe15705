from __future__ import annotations

import asyncio
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from agent_backend.demo import PERMISSION_TIMEOUT, SCENARIOS, STEP_DELAY, run_agent
from sse import broker_backend
from sse.models import StreamSession


class Command(BaseCommand):
    help = (
        "Run the demo's simulated agent against a session. With REDIS_URL set its events "
        "reach the browsers of any server process, and their answer reaches it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("session_id")
        parser.add_argument("--step-delay", type=float, default=STEP_DELAY, help="seconds")
        parser.add_argument(
            "--permission-timeout", type=float, default=PERMISSION_TIMEOUT, help="seconds"
        )
        parser.add_argument(
            "--scenario",
            choices=sorted(SCENARIOS),
            default="single",
            help="single: one tool asks for permission; parallel: two ask at once",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        session_id = options["session_id"]
        if not StreamSession.objects.filter(session_id=session_id).exists():
            raise CommandError(
                f"No session {session_id!r}: open the demo page, or create one with "
                "POST /agent_backend/api/sse/sessions/."
            )
        if broker_backend() == "memory":
            self.stderr.write(
                "warning: no REDIS_URL: the events stay in this process and no browser sees them"
            )
        outcome = asyncio.run(
            run_agent(
                session_id,
                step_delay=options["step_delay"],
                permission_timeout=options["permission_timeout"],
                scenario=options["scenario"],
                report=self._report,
            )
        )
        self.stdout.write(
            f"Run {outcome.run_id} finished: permission {outcome.permission} ({outcome.outcome})"
        )

    def _report(self, event_type: str, data: dict[str, Any]) -> None:
        details = {k: v for k, v in data.items() if k not in ("run_id", "arguments")}
        self.stdout.write(f"{event_type:<12} {json.dumps(details, ensure_ascii=False)}")
