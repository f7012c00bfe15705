"""DRF fields of the apps' request bodies."""

from __future__ import annotations

from rest_framework import serializers

from .._stream.events import SESSION_ID_RE


class SessionIdField(serializers.RegexField):
    """A session id as sent: 1-128 characters of ``[A-Za-z0-9_.:-]``, not
    trimmed (DRF's default would turn ``" ws-1\\n"`` into ``"ws-1"``)."""

    def __init__(self, **kwargs: object) -> None:
        kwargs.setdefault("max_length", 128)
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(rf"\A{SESSION_ID_RE.pattern}\Z", **kwargs)  # type: ignore[arg-type]
