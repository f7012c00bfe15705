"""The Prometheus alert rules shipped in ``deploy/prometheus/``: well formed,
on metrics the apps really export, and (with promtool) valid and firing on
the trouble they name."""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import MakeUser, missing_system_package
from tests.metrics_support import scrape
from tests.servers import ROOT
from tests.streaming import MakeStack

RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts.test.yml"
# One alert per trouble the issue names.
ALERTS = {
    "SSEBrokerUnreachable",
    "SSEListenerDown",
    "SSESlowClientDisconnects",
    "SSEReplayGaps",
    "PermissionApprovalsWaitingTooLong",
}
# Labels Prometheus adds to every series it scrapes.
TARGET_LABELS = {"instance", "job"}

_SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^}]*)\}")
_LABEL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![A-Za-z0-9_:.])([A-Za-z_:][A-Za-z0-9_:]*)\b(?!\s*\()")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


def _rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def metrics_of(expr: str) -> dict[str, set[str]]:
    """The metric names an expression reads, each with the label names its
    selectors match on (a small PromQL reader: enough for these rules)."""
    found: dict[str, set[str]] = {}
    for name, matchers in _SELECTOR.findall(expr):
        found.setdefault(name, set()).update(_LABEL.findall(matchers))
    bare = _SELECTOR.sub(" ", expr)
    bare = re.sub(r'"[^"]*"', " ", bare)
    bare = re.sub(r"\[[^\]]*\]", " ", bare)
    bare = _GROUPING.sub(" ", bare)
    for name in _IDENTIFIER.findall(bare):
        if name not in _KEYWORDS:
            found.setdefault(name, set())
    return found


def test_the_reader_of_expressions_finds_names_and_labels() -> None:
    assert metrics_of(
        'max by (instance) (rate(a_total{status="200", b!~"x"}[5m])) / b > 0.5 unless on (i) c'
    ) == {"a_total": {"status", "b"}, "b": set(), "c": set()}


def test_one_well_formed_rule_per_trouble() -> None:
    rules = _rules()
    assert {rule["alert"] for rule in rules} == ALERTS
    assert len(rules) == len(ALERTS)
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule
        assert rule["annotations"]["summary"], rule
        assert rule["annotations"]["description"], rule
        assert metrics_of(rule["expr"]), rule


def test_the_rules_read_only_what_the_metrics_endpoint_exports(
    make_stack: MakeStack, make_user: MakeUser
) -> None:
    base_url = make_stack("memory").base_url
    # One refused stream open, so that the labelled counter has a series.
    assert httpx.get(f"{base_url}/agent_backend/api/sse/events/s1").status_code == 401
    _, staff_token = make_user(staff=True)
    found = scrape(base_url, staff_token)
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}
    exported = {
        name + suffix
        for name, kind in found.families.items()
        for suffix in suffixes.get(kind, [""])
    }
    labels: dict[str, set[str]] = {}
    for sample in found.samples:
        labels.setdefault(sample.name, set()).update(sample.labels)
    for rule in _rules():
        # The expression, and the queries its annotations' templates run.
        queries = [rule["expr"]]
        for text in rule["annotations"].values():
            queries += re.findall(r'query "([^"]*)"', text)
        read = {}
        for query in queries:
            read |= metrics_of(query)
        for name, matched in read.items():
            assert name in exported, f"{rule['alert']} reads {name}, which is not exported"
            unknown = matched - labels.get(name, set()) - TARGET_LABELS
            assert not unknown, f"{rule['alert']} matches {name} on labels it lacks: {unknown}"


def _promtool() -> str:
    promtool = shutil.which("promtool")
    if promtool is None:
        missing_system_package(
            "promtool is not installed: run `apt-get install prometheus` "
            "(`make test` installs it when run as root)"
        )
    return promtool


@pytest.mark.parametrize(
    "args",
    [["check", "rules", str(RULES)], ["test", "rules", str(RULE_TESTS)]],
    ids=["check rules", "test rules"],
)
def test_promtool_accepts_the_rules_and_their_unit_tests(args: list[str]) -> None:
    result = subprocess.run(
        [_promtool(), *args], cwd=RULES.parent, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr
