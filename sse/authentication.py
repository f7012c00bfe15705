"""The apps' default Bearer authentication: simplejwt's, with the scheme
compared case-insensitively, as RFC 7235 says (``bearer`` works as
``Bearer`` does, for the JSON endpoints and the streams alike), and the
token's user looked up by SQL kept from the first request (``sse.rows``)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import FieldDoesNotExist
from rest_framework_simplejwt import authentication
from rest_framework_simplejwt.settings import api_settings

from .rows import first_row, own_column


class JWTAuthentication(authentication.JWTAuthentication):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # simplejwt uses the model's objects.get and DoesNotExist only.
        self.user_model = _Users(self.user_model)  # type: ignore[assignment]

    def get_raw_token(self, header: bytes) -> bytes | None:
        scheme, _, rest = header.partition(b" ")
        for kind in authentication.AUTH_HEADER_TYPE_BYTES:
            if scheme.lower() == kind.lower():
                header = kind + b" " + rest  # simplejwt's checks, on its spelling
                break
        return super().get_raw_token(header)


class _Users:
    """The user model as simplejwt's ``get_user`` uses it (``objects.get``,
    ``DoesNotExist``), its checks unchanged: the user by ``first_row``, which
    is the ORM's answer without compiling the query on every request."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.DoesNotExist = model.DoesNotExist
        # Another manager than the default, or an id field that is not a
        # column of the user table: simplejwt's own lookup.
        try:
            plain = model.objects is model._default_manager
            plain = plain and bool(own_column(model, api_settings.USER_ID_FIELD))
        except (TypeError, FieldDoesNotExist):
            plain = False
        self.objects = self if plain else model.objects

    def get(self, **where: Any) -> Any:
        # {USER_ID_FIELD: the token's claim}; a null claim matches no user.
        user = None if None in where.values() else first_row(self.model, **where)
        if user is None:
            raise self.DoesNotExist
        return user
