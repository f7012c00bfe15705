from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sse import SSEError, broker_backend, notifier


class Command(BaseCommand):
    help = "Publish one event to a session and print its id."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("session_id")
        parser.add_argument("type")
        parser.add_argument("data", nargs="?", default="{}", help="a JSON object")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            data = json.loads(options["data"])
        except json.JSONDecodeError as exc:
            raise CommandError(f"data is not valid JSON: {exc}") from exc
        if broker_backend() == "memory":
            self.stderr.write(
                "warning: no REDIS_URL: the event stays in this process and no stream sees it"
            )
        try:
            event_id = notifier.send(options["session_id"], options["type"], data)
        except SSEError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(event_id)
