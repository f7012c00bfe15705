"""Globs as rules write them (``fnmatch``, case-sensitive), and their checks."""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ValidationError

MAX_PATTERN = 1000


def argument_text(value: Any) -> str:
    """The string form of an argument that a glob matches: a string as it
    is, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def literal(name: str) -> str:
    """A glob matching exactly ``name`` (a remembered tool)."""
    return "".join(f"[{char}]" if char in "*?[" else char for char in name)


def validate_glob(pattern: object) -> None:
    if not isinstance(pattern, str) or not pattern:
        raise ValidationError("A glob is a non-empty string.", code="invalid_glob")
    if len(pattern) > MAX_PATTERN:
        raise ValidationError(f"A glob has at most {MAX_PATTERN} characters.", code="invalid_glob")
    # Where fnmatch would take a [ literally because it is never closed,
    # the author most likely meant a set: say so.
    index, length = 0, len(pattern)
    while index < length:
        if pattern[index] == "[":
            end = index + 1
            if end < length and pattern[end] == "!":
                end += 1
            if end < length and pattern[end] == "]":
                end += 1
            end = pattern.find("]", end)
            if end < 0:
                raise ValidationError(
                    f"{pattern!r}: the [ at position {index + 1} is never closed "
                    "(write [[] for a literal [).",
                    code="invalid_glob",
                )
            index = end
        index += 1


def validate_arguments_match(value: object) -> None:
    if value is None:
        return
    if not isinstance(value, dict) or not value:
        raise ValidationError(
            'An object of argument names and globs, e.g. {"cmd": "ls *"}, or empty.',
            code="invalid_match",
        )
    for name, pattern in value.items():
        if not name:
            raise ValidationError("Argument names are non-empty.", code="invalid_match")
        try:
            validate_glob(pattern)
        except ValidationError as exc:
            raise ValidationError(f"{name}: {exc.messages[0]}", code="invalid_match") from exc
