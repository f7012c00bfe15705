"""The django-eventstream peer, configured as its README prescribes for
several processes: ``EVENTSTREAM_REDIS`` (send_event publishes through
Redis; each server process listens) and ``DjangoModelStorage`` (events are
stored, so ``Last-Event-ID`` resumes).  Served by daphne, as the README says.
"""

from __future__ import annotations

import os
from urllib.parse import urlparse

DEBUG = False
SECRET_KEY = "bench-only-not-secret-0123456789abcdefghijklmnopqrstuvwxyz"
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = [
    "daphne",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django_eventstream",
]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "bench.peers.eventstream_site.urls"
ASGI_APPLICATION = "bench.peers.eventstream_site.asgi.application"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("EVENTSTREAM_DB", "/tmp/bench-eventstream.sqlite3"),
        "OPTIONS": {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "timeout": 20,
        },
    }
}
USE_TZ = True
_redis = urlparse(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
EVENTSTREAM_REDIS = {
    "host": _redis.hostname or "127.0.0.1",
    "port": _redis.port or 6379,
    "db": int((_redis.path or "/0").lstrip("/") or 0),
}
if os.environ.get("EVENTSTREAM_STORAGE", "db") == "db":
    EVENTSTREAM_STORAGE_CLASS = "django_eventstream.storage.DjangoModelStorage"
LOGGING = {"version": 1, "disable_existing_loggers": False, "root": {"level": "WARNING"}}
