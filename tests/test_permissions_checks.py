"""The PERMISSIONS settings: lazy reads, and each system check id on the value it names."""

from __future__ import annotations

import math
from typing import Any

import pytest
from django.core import checks
from django.test import override_settings

from permissions.checks import check_settings
from permissions.conf import conf


def ids(value: Any) -> list[str]:
    with override_settings(PERMISSIONS=value):
        return [str(message.id) for message in check_settings()]


def test_defaults_and_good_values_pass() -> None:
    assert ids({}) == []
    good = {"TIMEOUT": 0.5, "POLICY": "permissions.policies.allow_read_only", "NUM_PROXIES": 2}
    assert ids(good) == []
    assert ids({"POLICY": None, "NUM_PROXIES": 0, "TIMEOUT": 300}) == []


def test_settings_are_read_on_every_access() -> None:
    assert (conf.TIMEOUT, conf.POLICY, conf.NUM_PROXIES) == (300.0, None, 0)
    with override_settings(PERMISSIONS={"TIMEOUT": 5, "POLICY": "x.y", "NUM_PROXIES": 1}):
        assert (conf.TIMEOUT, conf.POLICY, conf.NUM_PROXIES) == (5.0, "x.y", 1)
    assert conf.TIMEOUT == 300.0


def test_checks_are_registered() -> None:
    with override_settings(PERMISSIONS={"TIMEOUT": 0}):
        found = [str(message.id) for message in checks.run_checks()]
    assert "permissions.E002" in found


def test_e001_not_a_dict() -> None:
    assert ids(["TIMEOUT"]) == ["permissions.E001"]


def test_w001_unknown_key() -> None:
    assert ids({"TIMEOUTS": 10}) == ["permissions.W001"]


@pytest.mark.parametrize("value", [0, -1, "300", True, None, math.nan, math.inf])
def test_e002_timeout(value: object) -> None:
    assert ids({"TIMEOUT": value}) == ["permissions.E002"]


@pytest.mark.parametrize("value", ["permissions.nope.policy", "permissions.conf.DEFAULTS", 5, ""])
def test_e003_policy(value: object) -> None:
    assert ids({"POLICY": value}) == ["permissions.E003"]


@pytest.mark.parametrize("value", [-1, "1", True, 1.5, None])
def test_e004_num_proxies(value: object) -> None:
    assert ids({"NUM_PROXIES": value}) == ["permissions.E004"]
