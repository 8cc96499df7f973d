from rest_framework import serializers

from api.fields import RFC3339DateTimeField, StrictBooleanField, StrictCharField
from devices.models import MAX_TOKEN_LENGTH, Device, Platform
from tenants.codes import COUNTRIES, LANGUAGES, time_zones


def holds_nul(value) -> bool:
    """Whether a JSON value has U+0000 in any string, keys included: PostgreSQL's text and
    jsonb cannot store it. Iterative, so that deep nesting cannot exhaust the stack."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _token_field(**kwargs):
    return StrictCharField(max_length=MAX_TOKEN_LENGTH, trim_whitespace=False, **kwargs)


class AppCredentialsSerializer(serializers.Serializer):
    """The body credentials every app endpoint takes (checked before the rest)."""

    tenant_id = StrictCharField(help_text="Your tenant's public id.")
    api_key = StrictCharField(write_only=True, help_text="An app key (or a server key).")


class EventSerializer(AppCredentialsSerializer):
    app_user_id = StrictCharField(
        required=False,
        allow_blank=True,
        max_length=255,
        help_text="Your own id of the user. When empty Herald generates an anonymous id, "
        "stable for the device.",
    )
    event_name = StrictCharField(max_length=200, help_text="e.g. app_opened, purchase_completed")
    event_time = RFC3339DateTimeField(help_text="RFC 3339 with an offset (within ±14:00), from 1970 to 2100.")
    device_token = _token_field(help_text="The FCM registration token (it may rotate).")
    platform = serializers.ChoiceField(choices=Platform.choices)
    push_permission_granted = StrictBooleanField(help_text="Only devices with true receive pushes.")
    timezone = StrictCharField(max_length=64, help_text="IANA name, e.g. Europe/Istanbul.")
    language = StrictCharField(max_length=2, min_length=2, help_text="ISO 639-1, e.g. tr.")
    country = StrictCharField(max_length=2, min_length=2, help_text="ISO 3166-1 alpha-2, e.g. TR.")
    session_id = StrictCharField(max_length=255)
    params = serializers.DictField(
        required=False,
        child=serializers.JSONField(allow_null=True),
        help_text="Event properties, any JSON values (null included).",
    )
    token_kind = serializers.ChoiceField(
        choices=Device.TokenKind.choices,
        required=False,
        default=Device.TokenKind.REGISTRATION,
        help_text="Herald extension: `fid` when device_token is a Firebase installation ID.",
    )

    def validate_params(self, value: dict) -> dict:
        if holds_nul(value):
            raise serializers.ValidationError("Null characters are not allowed.")
        return value

    def validate_timezone(self, value: str) -> str:
        if value not in time_zones():
            raise serializers.ValidationError("Not an IANA time zone name, e.g. Europe/Istanbul.")
        return value

    def validate_language(self, value: str) -> str:
        if value.lower() not in LANGUAGES:
            raise serializers.ValidationError("Not an ISO 639-1 language code, e.g. tr.")
        return value.lower()

    def validate_country(self, value: str) -> str:
        if value.upper() not in COUNTRIES:
            raise serializers.ValidationError("Not an ISO 3166-1 alpha-2 country code, e.g. TR.")
        return value.upper()


class FingerprintSerializer(serializers.Serializer):
    fingerprint = serializers.CharField(help_text="A stable identifier of the stored event.")


class RefreshTokenSerializer(AppCredentialsSerializer):
    old_token = _token_field(help_text="The previous FCM registration token being replaced.")
    new_token = _token_field(help_text="The new token from onNewToken().")
    app_user_id = StrictCharField(
        required=False,
        allow_blank=True,
        max_length=255,
        help_text="Your id of the user; decides conflicts when the new token already exists.",
    )
    platform = serializers.ChoiceField(choices=Platform.choices, required=False)


class SuccessSerializer(serializers.Serializer):
    success = serializers.BooleanField()
