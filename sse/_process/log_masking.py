"""Keep tokens out of logs: every logged URL shows ``token=***``."""

from __future__ import annotations

import logging
import re

TOKEN_IN_URL = re.compile(r"(?i)\b((?:token|access|refresh|access_token)=)[^&\s\"']+")

# Loggers of the servers we run under that log request URLs.
SERVER_LOGGERS = (
    "uvicorn.access",
    "uvicorn.error",
    "django.server",
    "django.request",
    "django.channels.server",
    "daphne.server",
    "daphne.http_protocol",
)


def mask(text: str) -> str:
    return TOKEN_IN_URL.sub(r"\1***", text)


class MaskTokensFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = mask(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(mask(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: mask(v) if isinstance(v, str) else v for k, v in record.args.items()}
        return True


def install() -> None:
    """Mask on the loggers of the ASGI servers (they bypass our handlers)."""
    for name in SERVER_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, MaskTokensFilter) for f in logger.filters):
            logger.addFilter(MaskTokensFilter())
