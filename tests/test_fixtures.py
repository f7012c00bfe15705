"""The suite's own fixtures behave as the tests that rely on them assume."""

from __future__ import annotations

import signal
import socket

import httpx
import pytest

from tests.conftest import PASSWORD, MakeUser, ServerFactory
from tests.servers import HEALTH_PATH, RedisServer, database_url


@pytest.mark.redis
def test_redis_server_restarts_on_the_same_port(redis_server: RedisServer) -> None:
    client = redis_server.client()
    client.set("key", "value")
    port = redis_server.port

    assert redis_server.stop() == -9
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()

    redis_server.start()
    assert redis_server.port == port
    assert redis_server.url == f"redis://127.0.0.1:{port}/0"
    assert client.ping()
    assert client.get("key") is None  # it keeps nothing on disk
    client.set("key", "value")
    redis_server.flush()
    assert client.dbsize() == 0


def test_database_url() -> None:
    sqlite = {"ENGINE": "django.db.backends.sqlite3", "NAME": "/tmp/x/test.sqlite3"}
    assert database_url(sqlite) == "sqlite:////tmp/x/test.sqlite3"
    postgres = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "test_test",
        "USER": "postgres",
        "PASSWORD": "p@ss",
        "HOST": "127.0.0.1",
        "PORT": 5432,
    }
    assert database_url(postgres) == "postgres://postgres:p%40ss@127.0.0.1:5432/test_test"
    postgres |= {"PASSWORD": "", "PORT": ""}
    assert database_url(postgres) == "postgres://postgres@127.0.0.1/test_test"


@pytest.mark.postgres
def test_servers_see_the_committed_test_database(
    live_db: None, make_user: MakeUser, server_factory: ServerFactory
) -> None:
    user, _ = make_user()
    server = server_factory()
    assert server_factory() is server
    response = httpx.post(
        server.base_url + "/agent_backend/api/auth/token/",
        json={"username": user.username, "password": PASSWORD},
    )
    assert response.status_code == 200, response.text
    assert set(response.json()) >= {"access", "refresh"}

    port = server.port
    server.restart()
    assert server.port == port
    assert httpx.get(server.base_url + HEALTH_PATH).status_code == 401
    # uvicorn re-raises the signal once it has shut down gracefully.
    assert server.stop() == -signal.SIGTERM
    assert "Finished server process" in server.log_text()
    assert server_factory() is server
    assert server.running
