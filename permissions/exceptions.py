"""Exceptions raised by the ``permissions`` app."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rest_framework import exceptions

if TYPE_CHECKING:
    from .api import Decision


class PermissionsError(Exception):
    """Base class of the errors agent code gets from ``permissions``."""


class InvalidPermissionRequest(PermissionsError, ValueError):
    """``tool_name``, ``arguments``, ``description`` or ``timeout`` is not usable."""


class RunAborted(PermissionsError):
    """A person denied a tool call with ``abort``: the agent's run stops (the
    agent framework adapters raise it)."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(decision.reason or "A person stopped the run.")
        self.decision = decision


class NotAnObject(exceptions.APIException):
    """A permission response whose JSON body is not an object."""

    status_code = 400
    default_detail = "The body must be a JSON object."
    default_code = "invalid"


class NoPendingRequest(exceptions.APIException):
    """An answer came for a session with nothing waiting for one."""

    status_code = 409
    default_detail = "No permission request of this session is waiting for an answer."
    default_code = "no_pending_request"


class RequestNotFound(exceptions.NotFound):
    """An answer named a request that this session never made."""

    default_detail = "No such permission request in this session."
    default_code = "request_not_found"
