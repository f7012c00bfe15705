"""The apps dropped into a foreign project (``tests/foreign.py``): its own
user model (email login), its own DRF defaults, django-cors-headers, our
URLs under ``/copilot/``, Django's own ``asgi.py`` under uvicorn, our wheel
and nothing else of ours."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sse.testing import open_stream
from tests.foreign import ORIGIN, PASSWORD, PREFIX, ForeignProject, make_project, staff_cookie
from tests.servers import ManagedProcess, RedisServer, free_port

pytestmark = pytest.mark.redis


class ForeignServer(ManagedProcess):
    def ready(self) -> bool:
        try:
            httpx.get(f"http://127.0.0.1:{self.port}/api/whoami/", timeout=2, trust_env=False)
        except httpx.TransportError:
            return False
        return True


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> ForeignProject:
    return make_project(tmp_path_factory.mktemp("foreign"))


@pytest.fixture(scope="module")
def base_url(
    project: ForeignProject, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    port = free_port()
    argv = [str(project.python), "-m", "uvicorn", "hostsite.asgi:application"]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--lifespan", "off"]
    log = tmp_path_factory.mktemp("foreign-log") / "server.log"
    server = ForeignServer(argv, project.env(REDIS_URL=redis_server.url), port, log, project.path)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="module")
def token(project: ForeignProject, base_url: str) -> str:
    project.shell(
        f"""
        from django.contrib.auth import get_user_model
        get_user_model().objects.create_user("ada@example.com", {PASSWORD!r})
        """
    )
    pair = httpx.post(
        f"{base_url}/{PREFIX}auth/token/", json={"email": "ada@example.com", "password": PASSWORD}
    )
    assert pair.status_code == 200, pair.text
    access: str = pair.json()["access"]
    return access


def test_the_project_checks_clean(project: ForeignProject) -> None:
    done = project.manage("check", "--fail-level", "WARNING")
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_hosts_own_api_keeps_its_defaults(base_url: str) -> None:
    mine = httpx.get(f"{base_url}/api/whoami/")
    assert mine.status_code == 200, "AllowAny, as the host says"
    assert mine.json() == {"user": None}
    ours = httpx.get(f"{base_url}/{PREFIX}sse/sessions/")
    assert ours.status_code == 401
    assert ours.json()["error"]["code"] == "not_authenticated"


async def test_a_session_streams_what_the_agent_publishes(
    project: ForeignProject, base_url: str, token: str, redis_server: RedisServer
) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    created = httpx.post(
        f"{base_url}/{PREFIX}sse/sessions/", json={"session_id": "ws-1"}, headers=auth
    )
    assert created.status_code == 201, created.text
    assert created.json()["data"]["owner"] == "ada@example.com"
    url = f"{base_url}/{PREFIX}sse/events/ws-1?token={token}"
    async with open_stream(url, headers={"Origin": ORIGIN}) as stream:
        assert stream.status_code == 200
        assert stream.headers["access-control-allow-origin"] == ORIGIN
        assert stream.headers["access-control-allow-credentials"] == "true"
        assert (await stream.next_event()).json()["type"] == "connected"
        project.shell(
            """
            from sse import notifier
            notifier.send("ws-1", "tool_status", {"tool": "search", "status": "running"})
            """,
            REDIS_URL=redis_server.url,
        )
        event = (await stream.next_event(timeout=5)).json()
    assert event["type"] == "tool_status"
    assert event["data"] == {"tool": "search", "status": "running"}


@pytest.mark.parametrize(
    "page",
    [
        "admin/sse/streamsession/?q=ada&o=2",
        "admin/permissions/permissionrequest/?q=ada&o=6",
        "admin/permissions/permissionrule/?q=ada",
    ],
)
def test_the_admin_searches_and_sorts_by_the_email_login(
    project: ForeignProject, base_url: str, token: str, page: str
) -> None:
    cookie = staff_cookie(project, f"admin-{abs(hash(page))}@example.com")
    response = httpx.get(f"{base_url}/{page}", cookies={"sessionid": cookie})
    assert response.status_code == 200, response.text[-2000:]


def test_only_the_wheel_is_installed(project: ForeignProject) -> None:
    files = project.shell("import sse, permissions; print(sse.__file__, permissions.__file__)")
    assert "site-packages" in files
    assert str(Path(sys.prefix)) not in files


def test_runserver_without_daphne_warns_that_streams_need_asgi(project: ForeignProject) -> None:
    server = subprocess.Popen(
        [str(project.python), "manage.py", "runserver", "--noreload", f"127.0.0.1:{free_port()}"],
        cwd=project.path,
        env=project.env(PYTHONUNBUFFERED="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert server.stdout is not None
        text = ""
        # Until it says it serves: the checks ran before (however slow the machine).
        while "Quit the server with" not in text:
            line = server.stdout.readline()
            assert line, f"runserver stopped: {text}"
            text += line
        assert server.poll() is None  # it serves on, warned
    finally:
        server.kill()
        server.communicate()
    assert "sse.W010" in text
    assert "daphne" in text


def test_a_stream_under_wsgi_says_it_needs_asgi(project: ForeignProject) -> None:
    out = project.shell(
        f"""
        from django.test import Client
        response = Client(HTTP_HOST="localhost").get("/{PREFIX}sse/events/ws-1?token=x")
        print(response.status_code, response.json()["error"]["code"])
        """
    )
    assert out.split()[-2:] == ["500", "asgi_required"]


def test_pages_get_the_real_prefix_for_the_js_client(project: ForeignProject) -> None:
    out = project.shell(
        """
        from django.template import Context, Template
        print(Template("{% load sse %}{% sse_config %}").render(Context()))
        """
    )
    assert '<script id="sse-config" type="application/json">{"apiBase": "/copilot"}</script>' in out


def test_the_schema_is_served_at_the_projects_prefix(base_url: str) -> None:
    schema = httpx.get(f"{base_url}/{PREFIX}sse/schema/")
    assert schema.status_code == 200
    assert schema.json()["servers"] == [{"url": "/copilot"}]
    assert "/sse/tickets/" in schema.json()["paths"]
