"""Fixtures that start real processes: Redis, and the project under uvicorn or daphne.

A test that talks to a server must commit what it creates, so the server's
own database connections see it: request ``live_db`` (a transactional
database) before ``make_user``/``make_session``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, TypeVar

import pytest

from tests.servers import (
    APP,
    ASGIServer,
    Broker,
    RedisServer,
    ServerKind,
    TLSRedisServer,
    asgi_argv,
    database_url,
    free_port,
)

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from sse.models import StreamSession
    from tests.topologies import ClusterTopology, SentinelTopology

T = TypeVar("T")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
PASSWORD = "test-password-1234"
# Inherited variables that would point a server at another database or broker.
_SERVER_ENV_OWN = {"DJANGO_SETTINGS_MODULE", "DATABASE_URL", "REDIS_URL", "SSE_OVERRIDES"}


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def django_db_modify_db_settings(
    django_db_modify_db_settings_parallel_suffix: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from django.db import connections

    # A SQLite test database must be a file, not memory, so the servers the suite
    # starts share it; one per run, so concurrent runs do not clobber each other.
    for alias in connections:
        settings_dict = connections[alias].settings_dict
        if settings_dict["ENGINE"] == "django.db.backends.sqlite3":
            directory = tmp_path_factory.mktemp("db")
            settings_dict["TEST"]["NAME"] = str(directory / f"{alias}.sqlite3")


# --- Redis -------------------------------------------------------------------------------


def _redis_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail(
            "redis-server is not installed: run `apt-get install redis-server` "
            "(`make test` installs it when run as root)",
            pytrace=False,
        )
    return binary


@pytest.fixture(scope="session")
def _redis_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], RedisServer]]:
    started: list[RedisServer] = []

    def running_redis() -> RedisServer:
        if not started:
            started.append(RedisServer(_redis_binary(), tmp_path_factory.mktemp("redis")))
        if not started[0].running:
            # First use, or an earlier test stopped it and did not start it again.
            started[0].start()
        return started[0]

    try:
        yield running_redis
    finally:
        for server in started:
            server.close()


@pytest.fixture(scope="session")
def redis_server(_redis_servers: Callable[[], RedisServer]) -> RedisServer:
    """A private redis-server on a free port; ``stop()``/``start()`` keep the port."""
    return _redis_servers()


@pytest.fixture(scope="session")
def tls_redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSRedisServer]:
    """A private redis-server speaking only TLS, with a CA made for the session.

    ``url`` trusts its CA (``ca_path``); ``plain_tls_url`` does not, so a
    client that verifies certificates refuses it.
    """
    server = TLSRedisServer(_redis_binary(), tmp_path_factory.mktemp("redis-tls"))
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def _topologies(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Any]]:
    from tests.topologies import ClusterTopology, SentinelTopology

    started: dict[str, Any] = {}

    def running(kind: str) -> Any:
        if kind not in started:
            make = ClusterTopology if kind.endswith("cluster") else SentinelTopology
            directory = tmp_path_factory.mktemp(kind)
            topology = make(_redis_binary(), directory, tls=kind.startswith("tls"))
            started[kind] = topology
            topology.start()
        return started[kind]

    try:
        yield running
    finally:
        for topology in started.values():
            topology.close()


@pytest.fixture
def sentinel(_topologies: Callable[[str], Any]) -> SentinelTopology:
    """One primary, one replica, three sentinels (``url`` is the
    ``redis+sentinel://`` of them), shared by the session: a node an
    earlier test killed is back as a replica."""
    topology: SentinelTopology = _topologies("sentinel")
    topology.heal()
    return topology


@pytest.fixture
def tls_sentinel(_topologies: Callable[[str], Any]) -> SentinelTopology:
    """The same, speaking only TLS (sentinels too) with a CA of its own."""
    topology: SentinelTopology = _topologies("tls-sentinel")
    topology.heal()
    return topology


@pytest.fixture
def cluster(_topologies: Callable[[str], Any]) -> ClusterTopology:
    """A Redis Cluster of three primaries and three replicas (``url`` is
    its ``redis+cluster://``), shared by the session: a node an earlier
    test killed is back as a replica."""
    topology: ClusterTopology = _topologies("cluster")
    topology.heal()
    return topology


@pytest.fixture
def tls_cluster(_topologies: Callable[[str], Any]) -> ClusterTopology:
    """The same, speaking only TLS with a CA of its own."""
    topology: ClusterTopology = _topologies("tls-cluster")
    topology.heal()
    return topology


# --- ASGI servers ------------------------------------------------------------------------


class ServerFactory(Protocol):
    def __call__(
        self,
        broker: Broker = "memory",
        sse: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        name: str | None = None,
        *,
        server: ServerKind = "uvicorn",
        workers: int = 1,
        access_log: bool = True,
        args: Sequence[str] = (),
        app: str = APP,
    ) -> ASGIServer: ...


@pytest.fixture(scope="session")
def server_factory(
    django_db_setup: None,
    _redis_servers: Callable[[], RedisServer],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServerFactory]:
    """Start (or reuse) the project served on 127.0.0.1 against the test database.

    Servers with the same arguments are shared for the whole session (one
    stopped by a test is started again on its port); ``name`` tells apart
    servers that must be distinct processes. ``sse`` is merged into the ``SSE``
    setting; ``env`` adds environment variables.
    """
    from django.db import connection

    servers: dict[tuple[object, ...], ASGIServer] = {}

    def factory(
        broker: Broker = "memory",
        sse: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        name: str | None = None,
        *,
        server: ServerKind = "uvicorn",
        workers: int = 1,
        access_log: bool = True,
        args: Sequence[str] = (),
        app: str = APP,
    ) -> ASGIServer:
        sse_json = json.dumps(dict(sse or {}), sort_keys=True)
        env_items = tuple(sorted((env or {}).items()))
        key = (server, broker, sse_json, env_items, name, workers, access_log, tuple(args), app)
        instance = servers.get(key)
        if instance is None:
            full_env = {k: v for k, v in os.environ.items() if k not in _SERVER_ENV_OWN}
            full_env |= {
                "DJANGO_SETTINGS_MODULE": "tests.settings",
                "DATABASE_URL": database_url(connection.settings_dict),
                "SSE_OVERRIDES": sse_json,
                "PYTHONUNBUFFERED": "1",
            }
            if broker == "redis":
                full_env["REDIS_URL"] = _redis_servers().url
            full_env |= dict(env or {})
            port = free_port()
            argv = asgi_argv(server, port, access_log=access_log, workers=workers, app=app)
            argv += args
            log_path = tmp_path_factory.getbasetemp() / f"{server}-{name or 'server'}-{port}.log"
            instance = servers[key] = ASGIServer(argv, full_env, port, log_path)
        elif broker == "redis":
            _redis_servers()
        if not instance.running:
            instance.start()
        return instance

    try:
        yield factory
    finally:
        # Before django_db_setup tears down: the test database must have no users left.
        for instance in servers.values():
            if instance.proc is not None:
                instance.kill()


@pytest.fixture(autouse=True)
def _check_shared_processes(
    request: pytest.FixtureRequest, _redis_servers: Callable[[], RedisServer]
) -> None:
    names = request.fixturenames
    if "redis_server" in names:
        _redis_servers()
    if "server_factory" in names and "db" in names and not _is_transactional(request):
        pytest.fail(
            "this test talks to a server but its data stays in an uncommitted transaction "
            "the server cannot see: request the `live_db` fixture",
            pytrace=False,
        )


# --- Database ----------------------------------------------------------------------------


@pytest.fixture
def live_db(transactional_db: None) -> None:
    """A test database whose writes are committed, for tests that talk to servers."""


class MakeUser(Protocol):
    def __call__(self, username: str | None = None, staff: bool = False) -> tuple[User, str]: ...


class MakeSession(Protocol):
    def __call__(self, user: User, session_id: str | None = None) -> StreamSession: ...


@pytest.fixture
def _run_orm(request: pytest.FixtureRequest, db: None) -> Callable[[Callable[[], T]], T]:
    """Run ORM work from sync or async tests alike.

    An async test's event loop thread may not use the ORM, so the work runs in
    a thread of its own, whose connection only sees (and must only make)
    committed data: such tests need ``live_db``.
    """

    def run(work: Callable[[], T]) -> T:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return work()
        if not _is_transactional(request):
            pytest.fail("an async test that creates data must request `live_db`", pytrace=False)
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(_closing_connections, work).result()

    return run


def _closing_connections(work: Callable[[], T]) -> T:
    from django.db import connections

    try:
        return work()
    finally:
        connections.close_all()


@pytest.fixture
def make_user(_run_orm: Callable[[Callable[[], Any]], Any]) -> MakeUser:
    """Create a user whose password is ``PASSWORD``; returns it and an access token."""
    from django.contrib.auth.models import User
    from rest_framework_simplejwt.tokens import AccessToken

    def make(username: str | None = None, staff: bool = False) -> tuple[User, str]:
        user: User = _run_orm(
            lambda: User.objects.create_user(
                username or f"user-{uuid.uuid4().hex[:12]}", password=PASSWORD, is_staff=staff
            )
        )
        return user, str(AccessToken.for_user(user))

    return make


@pytest.fixture
def make_session(_run_orm: Callable[[Callable[[], Any]], Any]) -> MakeSession:
    """Create a stream session owned by ``user``, with a unique id unless one is given."""
    from sse.models import StreamSession

    def make(user: User, session_id: str | None = None) -> StreamSession:
        session: StreamSession = _run_orm(
            lambda: StreamSession.objects.create(
                session_id=session_id or f"s-{uuid.uuid4().hex}", owner=user, title=""
            )
        )
        return session

    return make


def _is_transactional(request: pytest.FixtureRequest) -> bool:
    marker = request.node.get_closest_marker("django_db")
    return "transactional_db" in request.fixturenames or bool(
        marker and marker.kwargs.get("transaction")
    )


# --- Browser -----------------------------------------------------------------------------


def _chromium() -> str | None:
    for candidate in ("chromium", "chromium-browser"):
        if found := shutil.which(candidate):
            return found
    return None


def missing_system_package(message: str) -> NoReturn:
    """Skip the test for want of a system package; under CI=true, fail it."""
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("browser") and _chromium() is None:
        missing_system_package(
            "Chromium is not installed: run `apt-get install chromium chromium-driver` "
            "(`make test` installs them when run as root)"
        )


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    """The path of Debian's Chromium, for Playwright's ``executable_path``."""
    path = _chromium()
    assert path is not None  # pytest_runtest_setup skipped or failed the test otherwise
    return path


# --- The project served in this process ---------------------------------------------------


class InProcessServer:
    """uvicorn serving the project on a thread of the test process, so the
    test publishes through the same in-memory broker the server reads."""

    def __init__(self) -> None:
        import threading

        import uvicorn

        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            APP,
            host="127.0.0.1",
            port=self.port,
            lifespan="off",
            log_level="warning",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="uvicorn", daemon=True)

    def start(self) -> None:
        import time

        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the in-process uvicorn server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)


@pytest.fixture(scope="session")
def inprocess_server(django_db_setup: None) -> Iterator[InProcessServer]:
    """The project under uvicorn in this process, with the in-memory broker.

    Tests change its ``SSE`` settings with pytest-django's ``settings``
    fixture: the server reads them on every new stream.
    """
    server = InProcessServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


# One publishing broker per Redis for the whole run: its pooled sockets
# stay in use rather than leak.
_redis_brokers: dict[str, Any] = {}


@pytest.fixture
def redis_publisher(redis_server: RedisServer) -> Any:
    """A Redis broker in this process, publishing to ``redis_server``."""
    from sse._stream.hub import StreamHub

    broker = _redis_brokers.get(redis_server.url)
    if broker is None:
        broker = _redis_brokers[redis_server.url] = StreamHub(redis_server.url).broker
    return broker


@pytest.fixture
def make_stack(request: pytest.FixtureRequest, settings: Any, live_db: None) -> Callable[..., Any]:
    """``make_stack("memory"|"redis", **sse)``: a server with those ``SSE``
    settings and a publisher (this process) using the same ones."""
    from sse._stream.hub import get_hub
    from sse._transport.memory import MemoryBroker
    from tests.streaming import Stack

    def make(kind: str, **sse: Any) -> Stack:
        settings.SSE = dict(sse)
        if kind == "memory":
            # The server shares this process: freezing would hide the
            # suite's own garbage from the collector.
            settings.SSE.setdefault("GC_FREEZE", False)
            server = request.getfixturevalue("inprocess_server")
            broker = get_hub().broker
            assert isinstance(broker, MemoryBroker)
            return Stack(kind, server.base_url, broker, server)
        factory = request.getfixturevalue("server_factory")
        server = factory("redis", sse=sse)
        broker = request.getfixturevalue("redis_publisher")
        return Stack(kind, server.base_url, broker, server)

    return make


@pytest.fixture(params=["memory", "redis"])
def stack(request: pytest.FixtureRequest, make_stack: Callable[..., Any]) -> Any:
    """The default server and publisher, once per broker."""
    return make_stack(request.param, HEARTBEAT_INTERVAL=1)


@pytest.fixture
def owner(make_user: MakeUser, make_session: MakeSession) -> tuple[str, str]:
    """A session id and its owner's token."""
    user, token = make_user()
    return make_session(user).session_id, token
