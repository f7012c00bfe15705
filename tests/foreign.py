"""A foreign host project, made as a user would: ``django-admin startproject``,
an email-login user model, its own DRF API with its own defaults,
django-cors-headers, and our apps from our wheel under another URL prefix.

Its virtualenv sees the suite's packages (Django, DRF, redis-py...) and
installs nothing but our wheel: the project imports ``sse`` and
``permissions`` from the wheel, never from this checkout.
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "copilot/"
ORIGIN = "http://app.example"
PASSWORD = "foreign-password-1234"

ACCOUNTS_MODELS = '''
from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models


class UserManager(BaseUserManager):
    def create_user(self, email, password=None, **extra):
        user = self.model(email=self.normalize_email(email), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email, password=None, **extra):
        return self.create_user(email, password, is_staff=True, is_superuser=True, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    """Logs in with an email address; no username at all."""

    email = models.EmailField(unique=True)
    is_staff = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)

    USERNAME_FIELD = "email"
    objects = UserManager()
'''

HOST_API = '''
from rest_framework.response import Response
from rest_framework.views import APIView


class WhoAmI(APIView):
    """The host's own API: its REST_FRAMEWORK defaults apply here."""

    def get(self, request):
        return Response({"user": request.user.get_username() or None})
'''

SETTINGS_TAIL = f'''
INSTALLED_APPS += ["rest_framework", "corsheaders", "accounts", "sse", "permissions"]
MIDDLEWARE.insert(0, "corsheaders.middleware.CorsMiddleware")
AUTH_USER_MODEL = "accounts.User"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
# The host's own API: session-authenticated, open to anyone, browsable.
REST_FRAMEWORK = {{
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
}}
CORS_ALLOWED_ORIGINS = ["{ORIGIN}"]
CORS_ALLOW_CREDENTIALS = True
import os
if os.environ.get("REDIS_URL"):
    SSE = {{"REDIS_URL": os.environ["REDIS_URL"]}}
'''

URLS = f'''
from django.contrib import admin
from django.urls import include, path

from accounts.api import WhoAmI

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/whoami/", WhoAmI.as_view()),
    path("{PREFIX}", include("sse.urls")),
    path("{PREFIX}", include("permissions.urls")),
]
'''


@dataclass
class ForeignProject:
    path: Path
    python: Path

    def env(self, **extra: str) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "SSE_"))}
        keep.pop("DATABASE_URL", None)
        keep.pop("REDIS_URL", None)
        return {**keep, "DJANGO_SETTINGS_MODULE": "hostsite.settings", **extra}

    def manage(
        self, *args: str, timeout: float = 120, **env: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.python), "manage.py", *args],
            cwd=self.path,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def shell(self, code: str, **env: str) -> str:
        done = self.manage("shell", "-c", textwrap.dedent(code), **env)
        assert done.returncode == 0, done.stderr
        return done.stdout


def build_wheel(out: Path) -> Path:
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run(
        [*pip, "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("agent_sse-*.whl")
    return wheel


def make_project(where: Path) -> ForeignProject:
    """Build our wheel, a virtualenv with only it installed, and the project."""
    wheel = build_wheel(where / "dist")
    venv = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # The suite's packages, not its checkout: Django, DRF, redis-py and friends.
    (Path(purelib) / "suite-packages.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)],
        check=True,
        capture_output=True,
    )
    project = where / "hostsite"
    project.mkdir()
    subprocess.run(
        [str(python), "-m", "django", "startproject", "hostsite", str(project)],
        check=True,
        capture_output=True,
    )
    accounts = project / "accounts"
    accounts.mkdir()
    (accounts / "__init__.py").write_text("")
    (accounts / "models.py").write_text(ACCOUNTS_MODELS)
    (accounts / "api.py").write_text(HOST_API)
    settings = project / "hostsite" / "settings.py"
    settings.write_text(settings.read_text() + SETTINGS_TAIL)
    (project / "hostsite" / "urls.py").write_text(URLS)
    found = ForeignProject(project, python)
    for args in (["makemigrations", "accounts"], ["migrate"]):
        done = found.manage(*args)
        assert done.returncode == 0, done.stderr
    where_sse = found.shell("import sse; print(sse.__file__)")
    assert str(ROOT) not in where_sse, f"sse imported from the checkout: {where_sse}"
    return found


def staff_cookie(project: ForeignProject, email: str) -> str:
    """A logged-in admin's session cookie (as after the admin's login page)."""
    out = project.shell(
        f"""
        from django.contrib.auth import get_user_model
        from django.test import Client
        user = get_user_model().objects.create_superuser({email!r}, {PASSWORD!r})
        client = Client()
        client.force_login(user)
        print(client.cookies["sessionid"].value)
        """
    )
    return out.strip().splitlines()[-1]


def json_lines(text: str) -> list[object]:
    return [json.loads(line) for line in text.splitlines() if line.startswith(("{", "["))]
