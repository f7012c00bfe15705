from __future__ import annotations

import json
import signal
import sys
import threading
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sse import SSEError, broker_backend

from ...api import request_permission
from ...exceptions import PermissionsError


class Command(BaseCommand):
    help = (
        "Ask the people watching a session whether a tool may run, wait for the "
        "decision and print it as JSON.  Interrupting it cancels the request."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("session_id")
        parser.add_argument("tool_name")
        parser.add_argument("arguments", nargs="?", default="{}", help="a JSON object")
        parser.add_argument("--timeout", type=float, default=None, help="seconds to wait")
        parser.add_argument("--description", default="")
        parser.add_argument("--tool-call-id", default=None, help="the agent framework's id")
        parser.add_argument(
            "--key", default=None, help="asking again with this key re-attaches to the request"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            arguments = json.loads(options["arguments"])
        except json.JSONDecodeError as exc:
            raise CommandError(f"arguments are not valid JSON: {exc}") from exc
        if broker_backend() == "memory":
            self.stderr.write(
                "warning: no REDIS_URL: the request stays in this process and no stream sees it"
            )
        if threading.current_thread() is threading.main_thread():
            # SIGTERM (a supervisor stopping us) cancels the request like Ctrl-C does.
            signal.signal(signal.SIGTERM, _exit)
        try:
            decision = request_permission(
                options["session_id"],
                options["tool_name"],
                arguments,
                timeout=options["timeout"],
                description=options["description"],
                tool_call_id=options["tool_call_id"],
                key=options["key"],
            )
        except (PermissionsError, SSEError) as exc:
            raise CommandError(str(exc)) from exc
        except KeyboardInterrupt:
            self.stderr.write("Interrupted: the request is cancelled.")
            sys.exit(128 + signal.SIGINT)
        self.stdout.write(json.dumps(decision.as_dict(), ensure_ascii=False))


def _exit(signum: int, frame: FrameType | None) -> None:
    sys.exit(128 + signum)
