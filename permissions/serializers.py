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


class PermissionResponseSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """``{"approved": bool, "reason"?: str, "request_id"?: uuid, "remember"?: "session"}``;
    other fields are ignored."""

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
    remember = serializers.ChoiceField(
        choices=["session"], required=False, allow_null=True, default=None
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("remember") and not attrs["approved"]:
            raise serializers.ValidationError(
                {"remember": "Only approvals can be remembered."}, code="invalid"
            )
        attrs["reason"] = attrs.get("reason") or ""
        return attrs
