"""Exit 0 when the PostgreSQL server of a database URL answers, creating the database if missing.

``make test`` uses it to decide whether to run the ``postgres`` tests again on
PostgreSQL: ``python -m tests.postgres_probe postgres://postgres@127.0.0.1:5432/test``.
"""

from __future__ import annotations

import sys
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql


def main(url: str) -> int:
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    maintenance = urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))
    try:
        connection = psycopg.connect(maintenance, connect_timeout=3, autocommit=True)
    except psycopg.OperationalError as exc:
        sys.stdout.write(f"PostgreSQL does not answer at {parts.hostname}:{parts.port}: {exc}\n")
        return 1
    with connection:
        exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        if exists.fetchone() is None:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
