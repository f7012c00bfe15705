"""One error shape everywhere, streams included:
``{"success": false, "error": {"code": "...", "message": "..."}}``."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from .exceptions import SSEError


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, **extra}
    return {"success": False, "error": error}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> JsonResponse:
    return JsonResponse(error_body(code, message, **extra), status=status, headers=headers)


def api_error(error: type[SSEError]) -> exceptions.APIException:
    """One of our errors, as the DRF exception a DRF view raises for it."""
    exc = exceptions.APIException(getattr(error, "default_detail", ""), error.default_code)
    exc.status_code = error.status_code
    return exc


def _describe(detail: Any) -> tuple[str, str]:
    """The first (code, message) in a DRF error detail."""
    if isinstance(detail, dict):
        if "detail" in detail:  # simplejwt: {"detail", "code", "messages"}
            return str(detail.get("code", "error")), str(detail["detail"])
        field, value = next(iter(detail.items()))
        code, message = _describe(value)
        return code, message if field == "non_field_errors" else f"{field}: {message}"
    if isinstance(detail, list) and detail:
        return _describe(detail[0])
    return str(getattr(detail, "code", "error")), str(detail)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF ``EXCEPTION_HANDLER`` rendering every API error in our shape."""
    if isinstance(exc, RequestDataTooBig):  # Django's; DRF leaves it to an HTML page
        return Response(
            error_body("request_too_large", "The request body is too large."), status=413
        )
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.APIException):
        response.data = {"success": False, "error": api_exception_error(exc)}
    elif response.status_code == 404:
        response.data = error_body("not_found", "Not found.")
    else:
        response.data = error_body("permission_denied", "You do not have permission to do this.")
    return response


def api_exception_error(exc: exceptions.APIException) -> dict[str, Any]:
    """The ``error`` object of a DRF exception: code, message, and the
    fields of a validation error."""
    code, message = _describe(exc.detail)
    error: dict[str, Any] = {"code": code, "message": message}
    if isinstance(exc, exceptions.ValidationError) and isinstance(exc.detail, dict):
        error["fields"] = exc.detail
    return error
