"""Permission requests: an agent asks, a person decides, exactly once, audited.

``from permissions import arequest_permission, request_permission``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api import Decision, arequest_permission, request_permission

__all__ = ["Decision", "arequest_permission", "request_permission"]


def __getattr__(name: str) -> Any:
    # Imported on first use: Django imports this package while loading apps,
    # before models may be imported.
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
