"""Settings for the test suite and the servers it starts.

The servers the suite starts read the same module, with ``SSE_OVERRIDES``
(a JSON object) merged into ``SSE`` so each server can run with small limits.
The SQLite test database is placed by ``tests/conftest.py`` (a file per run,
which the servers open through ``DATABASE_URL``).
"""

from __future__ import annotations

import json
import os

from agent_backend.settings import *  # noqa: F403
from agent_backend.settings import SSE

SSE.update(json.loads(os.environ.get("SSE_OVERRIDES", "{}")))

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Any other setting, for a server started with a host project's
# configuration (its middleware, CORS...): a JSON object of settings.
globals().update(json.loads(os.environ.get("DJANGO_OVERRIDES", "{}")))
