"""The body of a permission response, validated strictly: JSON types as
sent, no coercion (DRF would take ``"yes"`` or ``1`` for true)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

MAX_REASON_LENGTH = 1000


class StrictBooleanField(serializers.BooleanField):
    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class StrictCharField(serializers.CharField):
    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictUUIDField(serializers.UUIDField):
    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str):
            self.fail("invalid", value=data)
        return super().to_internal_value(data)


class StrictObjectField(serializers.JSONField):
    """A JSON object, as sent."""

    default_error_messages = {"invalid": "Must be a JSON object."}

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, dict):
            self.fail("invalid")
        return data


class PermissionResponseSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """``{"approved": bool, "reason"?: str, "request_id"?: uuid, "arguments"?: {...},
    "abort"?: bool, "remember"?: "session" | "user"}``; other fields are ignored."""

    approved = StrictBooleanField()
    reason = StrictCharField(
        max_length=MAX_REASON_LENGTH,
        required=False,
        allow_blank=True,
        allow_null=True,
        trim_whitespace=False,
        default="",
    )
    request_id = StrictUUIDField(required=False, allow_null=True, default=None)
    # Approvals only: run the tool with these instead.
    arguments = StrictObjectField(required=False, allow_null=True, default=None)
    # Denials only: stop the whole run.
    abort = StrictBooleanField(required=False, default=False)
    remember = serializers.ChoiceField(
        choices=["session", "user"], required=False, allow_null=True, default=None
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        approved = attrs["approved"]
        for name, message in (
            ("remember", "Only approvals can be remembered."),
            ("arguments", "Only approvals carry edited arguments."),
        ):
            if attrs.get(name) is not None and not approved:
                raise serializers.ValidationError({name: message}, code="invalid")
        if attrs.get("abort") and approved:
            raise serializers.ValidationError(
                {"abort": "Only denials stop the run."}, code="invalid"
            )
        attrs["reason"] = attrs.get("reason") or ""
        attrs["remember"] = attrs.get("remember") or ""
        return attrs


MAX_BATCH = 50


class BatchItemSerializer(PermissionResponseSerializer):
    """One decision of a batch: it names its request."""

    request_id = StrictUUIDField()


class BatchSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """``{"decisions": [...]}``: 1-50 objects, each checked on its own."""

    decisions = serializers.ListField(
        child=serializers.JSONField(), min_length=1, max_length=MAX_BATCH
    )
