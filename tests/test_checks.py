"""Each system check id fires on the bad value it names, and only then."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from django.test import override_settings

from sse.checks import check_settings


def ids(sse: Any) -> list[str]:
    with override_settings(SSE=sse):
        return [message.id for message in check_settings()]


def test_defaults_pass() -> None:
    assert ids({}) == []


def test_e001_not_a_dict() -> None:
    assert ids(["REDIS_URL"]) == ["sse.E001"]


def test_w001_unknown_key() -> None:
    assert ids({"BUFER_SIZE": 10}) == ["sse.W001"]


@pytest.mark.parametrize("value", [0, -1, "100", 1.5, True, None])
def test_e002_positive_integers(value: object) -> None:
    assert ids({"QUEUE_SIZE": value}) == ["sse.E002"]


@pytest.mark.parametrize("value", [0, -0.5, "30", None])
def test_e003_heartbeat_interval(value: object) -> None:
    assert ids({"HEARTBEAT_INTERVAL": value}) == ["sse.E003"]
    assert ids({"HEARTBEAT_INTERVAL": 0.5}) == []


@pytest.mark.parametrize(
    "value",
    [
        "localhost:6379",
        "http://x",
        6379,
        "redis://h:1/0?socket_timeout=soon",
        "redis+sentinel://h1:26379,h2:26379",  # no primary named
        "redis+sentinel://h1:26379/mymaster/zero",
        "redis+sentinel://h1:99999/mymaster",
        "redis+cluster://h1:7000,h2:7001/3",  # a cluster has only database 0
        "redis+cluster://h1:7000,,h2:7001",
        "redis+cluster://h1:7000?sentinel_password=x",
        "redis+mesh://h1:7000",
    ],
)
def test_e004_redis_url(value: object) -> None:
    assert ids({"REDIS_URL": value}) == ["sse.E004"]


@pytest.mark.parametrize(
    "value",
    [
        "rediss://h:1/0",
        "unix:///run/redis.sock?db=2",
        "redis+sentinel://:pw@h1:26379,h2:26380,[::1]:26381/mymaster/2?socket_timeout=3",
        "rediss+sentinel://h1/mymaster?ssl_cert_reqs=required&sentinel_password=s",
        "redis+cluster://user:pw@h1:7000,h2:7001",
        "rediss+cluster://h1:7000/?ssl_ca_certs=/etc/ca.pem",
    ],
)
def test_e004_accepts_every_topology(value: str) -> None:
    assert ids({"REDIS_URL": value}) == []


def test_e004_says_what_is_wrong() -> None:
    with override_settings(SSE={"REDIS_URL": "redis+sentinel://h1:26379"}):
        [error] = [e for e in check_settings() if e.id == "sse.E004"]
    assert "names the primary" in error.msg


@pytest.mark.parametrize("value", ["sse.nope.nothing", "sse.conf.DEFAULTS", 5])
def test_e005_session_access(value: object) -> None:
    assert ids({"SESSION_ACCESS": value}) == ["sse.E005"]


@pytest.mark.parametrize("value", [1, "yes", None])
def test_e006_gc_freeze(value: object) -> None:
    assert ids({"GC_FREEZE": value}) == ["sse.E006"]
    assert ids({"GC_FREEZE": False}) == []


@pytest.mark.parametrize("value", [-1, "1", None, True, float("inf"), float("nan"), 1001])
def test_e007_coalesce_ms(value: object) -> None:
    assert ids({"COALESCE_MS": value}) == ["sse.E007"]
    assert ids({"COALESCE_MS": 0}) == []
    assert ids({"COALESCE_MS": 2.5}) == []


def test_e008_redis_without_hiredis(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ids({"REDIS_URL": "redis://127.0.0.1:6379/0"}) == []
    monkeypatch.setitem(sys.modules, "hiredis", None)  # as if not installed
    assert ids({"REDIS_URL": "redis://127.0.0.1:6379/0"}) == ["sse.E008"]
    assert ids({}) == [], "the in-process broker does not need it"


@pytest.mark.parametrize(
    "value",
    [[], "rest_framework.authentication.SessionAuthentication", ["no.such.Class"], [42]],
)
def test_e009_authentication_classes(value: object) -> None:
    assert ids({"AUTHENTICATION_CLASSES": value}) == ["sse.E009"]
    assert (
        ids({"AUTHENTICATION_CLASSES": ["rest_framework.authentication.BasicAuthentication"]}) == []
    )


@pytest.mark.parametrize(
    "value", ["short", "x" * 15, "tok en-0123456789abcdef", "jeton-é-0123456789abcd", 12345, False]
)
def test_e010_metrics_token(value: object) -> None:
    assert ids({"METRICS_TOKEN": value}) == ["sse.E010"]
    assert ids({"METRICS_TOKEN": "x" * 16}) == []
    assert ids({"METRICS_TOKEN": None}) == []
    assert ids({"METRICS_TOKEN": ""}) == []  # unset, e.g. from an empty variable
