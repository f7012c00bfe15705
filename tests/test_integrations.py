"""The agent framework adapters are optional: ``permissions`` imports none of
the frameworks, and an adapter whose framework is missing names its extra."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def python(code: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"DJANGO_SETTINGS_MODULE": "tests.settings"}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )


def test_permissions_imports_no_framework() -> None:
    done = python(
        "import sys, django; django.setup()\n"
        "import permissions, permissions.api, permissions.views, permissions.admin\n"
        "import permissions.integrations, permissions.integrations._common\n"
        "frameworks = ('agents', 'openai', 'langgraph', 'langchain_core', 'pydantic_ai')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in frameworks))\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("adapter", "framework", "extra"),
    [
        ("openai_agents", "agents", "openai-agents"),
        ("langgraph", "langgraph", "langgraph"),
        ("langgraph", "langchain_core", "langgraph"),
        ("pydantic_ai", "pydantic_ai", "pydantic-ai"),
    ],
)
def test_an_adapter_without_its_framework_names_the_extra(
    adapter: str, framework: str, extra: str
) -> None:
    done = python(
        f"import sys; sys.modules[{framework!r}] = None\n"
        f"import permissions.integrations.{adapter}\n"
    )
    assert done.returncode == 1
    assert "ImportError: " in done.stderr
    assert f"pip install 'agent-sse[{extra}]'" in done.stderr, done.stderr


def test_the_adapters_import_before_django_is_set_up() -> None:
    # Agent code may import them at the top of a module, before django.setup().
    done = python(
        "import permissions.integrations.openai_agents, permissions.integrations.langgraph, "
        "permissions.integrations.pydantic_ai"
    )
    assert done.returncode == 0, done.stderr
