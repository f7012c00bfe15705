"""The Bearer token's user, looked up by ``sse.rows``, passes simplejwt's
own checks: gone, inactive, another id field."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import AccessToken

pytestmark = pytest.mark.django_db

SESSIONS = "/agent_backend/api/sse/sessions/"


def _get(token: AccessToken) -> Any:
    return Client().get(SESSIONS, HTTP_AUTHORIZATION=f"Bearer {token}")


def test_the_tokens_user_reads_its_sessions() -> None:
    user = get_user_model().objects.create_user("alice")
    response = _get(AccessToken.for_user(user))
    assert response.status_code == 200, response.content
    assert response.json() == {"success": True, "data": []}


@pytest.mark.parametrize(
    ("change", "code"),
    [("delete", "user_not_found"), ("deactivate", "user_inactive")],
)
def test_a_token_whose_user_is_gone_or_inactive_is_refused(change: str, code: str) -> None:
    user = get_user_model().objects.create_user("alice")
    token = AccessToken.for_user(user)
    if change == "delete":
        user.delete()
    else:
        get_user_model().objects.filter(pk=user.pk).update(is_active=False)
    response = _get(token)
    assert response.status_code == 401, response.content
    assert response.json()["error"]["code"] == code


def test_another_user_id_field_is_looked_up_by_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # simplejwt's modules hold this object: a changed SIMPLE_JWT would not reach them.
    monkeypatch.setattr(api_settings, "USER_ID_FIELD", "username")
    alice = get_user_model().objects.create_user("alice")
    get_user_model().objects.create_user(str(alice.pk))  # a username that is alice's id
    token = AccessToken.for_user(alice)
    assert token["user_id"] == "alice"
    assert _get(token).status_code == 200
    alice.username = "alice2"
    alice.save()
    assert _get(token).json()["error"]["code"] == "user_not_found"
