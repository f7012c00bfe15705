"""``asgi.py`` as ``startproject`` writes it: Django's own handler, not
``sse.asgi``, for host projects that have not switched."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

application = get_asgi_application()
