"""The apps' default Bearer authentication: simplejwt's, with the scheme
compared case-insensitively, as RFC 7235 says (``bearer`` works as
``Bearer`` does, for the JSON endpoints and the streams alike)."""

from __future__ import annotations

from rest_framework_simplejwt import authentication


class JWTAuthentication(authentication.JWTAuthentication):
    def get_raw_token(self, header: bytes) -> bytes | None:
        scheme, _, rest = header.partition(b" ")
        for kind in authentication.AUTH_HEADER_TYPE_BYTES:
            if scheme.lower() == kind.lower():
                header = kind + b" " + rest  # simplejwt's checks, on its spelling
                break
        return super().get_raw_token(header)
