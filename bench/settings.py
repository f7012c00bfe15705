"""Our server under load: the host project's settings, DEBUG off, limits
raised for 10,000+ streams.  ``SSE_OVERRIDES`` (JSON) is merged into ``SSE``."""

from __future__ import annotations

import json
import os

from agent_backend.settings import *  # noqa: F403
from agent_backend.settings import LOGGING, SSE

DEBUG = False
SSE.update({"MAX_CONNECTIONS": 20000, "MAX_CONNECTIONS_PER_SESSION": 10})
SSE.update(json.loads(os.environ.get("SSE_OVERRIDES", "{}")))
LOGGING["root"]["level"] = "WARNING"
LOGGING["loggers"]["django"]["level"] = "WARNING"

if os.environ.get("BENCH_PATCHES"):
    INSTALLED_APPS = [*INSTALLED_APPS, "bench.patches"]  # noqa: F405

# BENCH_MIDDLEWARE (a JSON list) replaces the project's middleware: what the
# middleware costs a scenario is the difference.
if "BENCH_MIDDLEWARE" in os.environ:
    MIDDLEWARE = json.loads(os.environ["BENCH_MIDDLEWARE"])
    SILENCED_SYSTEM_CHECKS = ["admin.E408", "admin.E409", "admin.E410"]  # the admin is not benched
