"""Real processes for the suite: a private redis-server and ASGI servers running the project.

Each process runs in a session of its own (so stopping it also reaches any
workers it forked) and writes to a log file the tests can read.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import httpx
import redis

ROOT = Path(__file__).resolve().parent.parent
HEALTH_PATH = "/agent_backend/api/sse/health/x"
START_TIMEOUT = 30.0

Broker = Literal["memory", "redis"]
ServerKind = Literal["uvicorn", "daphne"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ManagedProcess:
    """A child process started with ``argv`` on a fixed port, restartable on the same port."""

    def __init__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        port: int,
        log_path: Path,
        cwd: Path = ROOT,
    ) -> None:
        self.cwd = cwd
        self.argv = list(argv)
        self.env = dict(env)
        self.port = port
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        assert not self.running, "already running"
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not self.ready():
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.argv[:4]} exited with {self.proc.returncode} while starting:\n"
                    + self.log_text()[-4000:]
                )
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(
                    f"{self.argv[:4]} did not answer within {START_TIMEOUT}s:\n"
                    + self.log_text()[-4000:]
                )
            time.sleep(0.05)

    def ready(self) -> bool:
        raise NotImplementedError

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Send ``sig`` and wait; past ``timeout`` the process is killed (exit code -9)."""
        assert self.proc is not None, "not started"
        if self.proc.poll() is None and sig != signal.SIGKILL:
            self.proc.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                return self.proc.wait(timeout)
        return self.kill()

    def kill(self) -> int:
        """SIGKILL the process and whatever it forked; returns its exit code."""
        assert self.proc is not None, "not started"
        # Until the process is reaped its id cannot name anyone else's group.
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.wait()

    def restart(self) -> None:
        if self.running:
            self.stop()
        self.start()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class RedisServer(ManagedProcess):
    """A private redis-server that keeps nothing on disk."""

    def __init__(self, binary: str, directory: Path) -> None:
        port = free_port()
        argv = [
            binary,
            *self._listen_args(port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(directory),
        ]  # fmt: skip
        super().__init__(argv, os.environ, port, directory / "redis.log")
        self.url = f"redis://127.0.0.1:{port}/0"
        self._clients: list[redis.Redis] = []

    def _listen_args(self, port: int) -> list[str]:
        return ["--port", str(port)]

    def _client_options(self) -> dict[str, Any]:
        """What ``ready()`` passes to ``redis.Redis`` besides the port."""
        return {}

    def ready(self) -> bool:
        with redis.Redis(port=self.port, socket_timeout=1, **self._client_options()) as client:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

    def stop(self, sig: int = signal.SIGKILL, timeout: float = 10.0) -> int:
        return super().stop(sig, timeout)

    def client(self) -> redis.Redis:
        """A client closed at the end of the session (or use it in a ``with`` block)."""
        client = redis.Redis.from_url(self.url)
        self._clients.append(client)
        return client

    def flush(self) -> None:
        with redis.Redis.from_url(self.url) as client:
            client.flushall()

    def close(self) -> None:
        for client in self._clients:
            client.close()
        if self.proc is not None:
            self.kill()


# Extensions for the certificates TLSRedisServer makes (strict enough for
# Python's VERIFY_X509_STRICT: critical basic constraints, key identifiers;
# clientAuth too, as cluster nodes present it to each other on their bus).
_OPENSSL_CONFIG = """\
[req]
distinguished_name = dn
prompt = no

[dn]

[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
"""


class TLSRedisServer(RedisServer):
    """A private redis-server that only speaks TLS, with a CA of its own made in ``directory``.

    ``url`` trusts that CA (``ssl_ca_certs`` in the query); ``plain_tls_url``
    does not, so a client that verifies certificates must refuse the server.
    """

    def __init__(self, binary: str, directory: Path) -> None:
        self.ca_path = directory / "ca.crt"
        self.cert_path = directory / "server.crt"
        self.key_path = directory / "server.key"
        _make_certificates(directory, self.ca_path, self.cert_path, self.key_path)
        super().__init__(binary, directory)
        self.plain_tls_url = f"rediss://127.0.0.1:{self.port}/0"
        self.url = (
            f"{self.plain_tls_url}?ssl_ca_certs={quote(str(self.ca_path), safe='')}"
            "&ssl_cert_reqs=required"
        )

    def _listen_args(self, port: int) -> list[str]:
        return [
            "--port", "0",
            "--tls-port", str(port),
            "--tls-cert-file", str(self.cert_path),
            "--tls-key-file", str(self.key_path),
            "--tls-ca-cert-file", str(self.ca_path),
            "--tls-auth-clients", "no",
        ]  # fmt: skip

    def _client_options(self) -> dict[str, Any]:
        return {"host": "127.0.0.1", "ssl": True, "ssl_ca_certs": str(self.ca_path)}


def _make_certificates(directory: Path, ca_path: Path, cert_path: Path, key_path: Path) -> None:
    """A self-signed CA, and a key and certificate for 127.0.0.1/localhost it signed."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError(
            "openssl is not installed: run `apt-get install openssl` "
            "(TLSRedisServer makes its certificates with it)"
        )
    config = directory / "openssl.cnf"
    config.write_text(_OPENSSL_CONFIG)
    ca_key = directory / "ca.key"
    csr = directory / "server.csr"
    days = "2"

    def run(*args: str) -> None:
        result = subprocess.run(
            [openssl, *args], cwd=directory, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"openssl {args[0]} failed with {result.returncode}:\n{result.stderr}"
            )

    for key in (ca_key, key_path):
        run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(key))
    run(
        "req", "-x509", "-new", "-key", str(ca_key), "-out", str(ca_path),
        "-days", days, "-subj", "/CN=redis test CA", "-config", str(config), "-extensions", "ca",
    )  # fmt: skip
    run(
        "req", "-new", "-key", str(key_path), "-out", str(csr),
        "-subj", "/CN=localhost", "-config", str(config),
    )  # fmt: skip
    run(
        "x509", "-req", "-in", str(csr), "-CA", str(ca_path), "-CAkey", str(ca_key),
        "-set_serial", f"0x{secrets.token_hex(16)}", "-out", str(cert_path), "-days", days,
        "-extfile", str(config), "-extensions", "server",
    )  # fmt: skip


class ASGIServer(ManagedProcess):
    """The project served by uvicorn or daphne on 127.0.0.1, as a user would run it."""

    def __init__(
        self, argv: Sequence[str], env: Mapping[str, str], port: int, log_path: Path
    ) -> None:
        super().__init__(argv, env, port, log_path)
        self.base_url = f"http://127.0.0.1:{port}"

    def ready(self) -> bool:
        try:
            httpx.get(self.base_url + HEALTH_PATH, timeout=2, trust_env=False)
        except httpx.TransportError:
            return False
        return True

    def __repr__(self) -> str:
        return f"<ASGIServer {self.base_url} pid={self.proc and self.proc.pid}>"


APP = "agent_backend.asgi:application"


def asgi_argv(
    kind: ServerKind, port: int, *, access_log: bool, workers: int, app: str = APP
) -> list[str]:
    if kind == "daphne":
        argv = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port)]
        if not access_log:
            argv += ["--access-log", os.devnull]
        assert workers == 1, "daphne runs one process"
        return [*argv, app]
    argv = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--lifespan", "off"]
    if not access_log:
        argv.append("--no-access-log")
    if workers > 1:
        argv += ["--workers", str(workers)]
    return argv


def database_url(settings_dict: Mapping[str, object]) -> str:
    """A ``DATABASE_URL`` naming the database described by a Django ``settings_dict``."""
    engine = settings_dict["ENGINE"]
    name = str(settings_dict["NAME"])
    if engine == "django.db.backends.sqlite3":
        path = Path(name)
        assert path.is_absolute(), f"servers cannot share the database {name!r}"
        return f"sqlite:///{path}"
    if engine == "django.db.backends.postgresql":
        user = quote(str(settings_dict.get("USER") or ""))
        password = settings_dict.get("PASSWORD")
        credentials = f"{user}:{quote(str(password))}" if password else user
        host = str(settings_dict.get("HOST") or "")
        port = settings_dict.get("PORT")
        netloc = f"{credentials}@{host}" + (f":{port}" if port else "")
        return f"postgres://{netloc}/{quote(name)}"
    raise NotImplementedError(f"no DATABASE_URL for {engine}")
