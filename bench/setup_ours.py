"""Bench fixtures for our server: one user owning N sessions ``s00000``...,
and request paths with a simplejwt access token, written as JSON.

    DJANGO_SETTINGS_MODULE=bench.settings DATABASE_URL=sqlite:////tmp/x/bench.sqlite3 \
        .venv/bin/python bench/setup_ours.py 10000 /tmp/x/paths.json
"""

# ruff: noqa: T201 -- a command-line tool: its output is printed
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import django

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from rest_framework_simplejwt.tokens import AccessToken  # noqa: E402

from sse.models import StreamSession  # noqa: E402


def main() -> None:
    n, out = int(sys.argv[1]), sys.argv[2]
    user, _ = get_user_model().objects.get_or_create(username="bench")
    names = [f"s{i:05d}" for i in range(n)]
    have = set(
        StreamSession.objects.filter(session_id__in=names).values_list("session_id", flat=True)
    )
    StreamSession.objects.bulk_create(
        [StreamSession(session_id=s, owner=user) for s in names if s not in have],
        batch_size=1000,
    )
    token = str(AccessToken.for_user(user))
    paths = [f"/agent_backend/api/sse/events/{s}?token={token}" for s in names]
    Path(out).write_text(json.dumps(paths))
    print(json.dumps({"sessions": n, "user": user.pk, "token": token}))


if __name__ == "__main__":
    main()
