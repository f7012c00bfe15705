"""ASGI entry point: ``uvicorn agent_backend.asgi:application`` or daphne."""

from __future__ import annotations

import os

from sse.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agent_backend.settings")

application = get_asgi_application()
