import json

from rest_framework import serializers

from api.fields import (
    RFC3339DateTimeField,
    StrictBooleanField,
    StrictCharField,
    StrictIntegerField,
    StrictRegexField,
)
from audiences.serializers import RulesField
from devices.models import MAX_TOKEN_LENGTH, Platform
from messaging.models import MAX_TTL, Audience, Message, validate_link
from messaging.selectors import error_breakdown
from tenants.codes import COUNTRIES, LANGUAGES

# FCM refuses these data keys (and any starting with "google." or "gcm."); Herald keeps
# tracking_token for itself. The composer's form applies the same rules (messaging.forms).
RESERVED_DATA_KEYS = {"from", "notification", "message_type", "collapse_key", "tracking_token"}
FCM_PAYLOAD_LIMIT = 4096
# Title, body and data may come to this many bytes: room for tracking_token and FCM's own keys.
MAX_PAYLOAD_BYTES = FCM_PAYLOAD_LIMIT - 100


def is_reserved_data_key(key: str) -> bool:
    """Whether FCM (or Herald) keeps this data key for itself."""
    return key in RESERVED_DATA_KEYS or key.startswith(("google.", "gcm."))


def payload_size(title: str, body: str, data: dict) -> int:
    """The bytes a push's title, body and data come to, as FCM counts them."""
    return len(json.dumps({"title": title, "body": body, **data}, ensure_ascii=False).encode())


class StrictSerializer(serializers.Serializer):
    """Rejects fields it does not know: in Herald's own API a typo must not pass silently."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({unknown[0]: ["Unknown field."]})
        return super().to_internal_value(data)


class StringMapField(serializers.DictField):
    """A JSON object of string values (FCM's data map)."""

    child = StrictCharField(allow_blank=True, trim_whitespace=False)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        for key in value:
            if "\x00" in key:  # PostgreSQL's jsonb cannot store it
                raise serializers.ValidationError("Null characters are not allowed.")
            if is_reserved_data_key(key):
                raise serializers.ValidationError(f"{key!r} is a reserved key.")
        return value


def check_payload_size(title: str, body: str, data: dict) -> None:
    size = payload_size(title, body, data)
    if size > MAX_PAYLOAD_BYTES:
        raise serializers.ValidationError(
            {"body": [f"title, body and data come to {size} bytes; FCM allows about 4,000."]})


class OptionsSerializer(StrictSerializer):
    android_channel = StrictCharField(required=False, max_length=100)
    sound = StrictCharField(required=False, max_length=100)
    badge = StrictIntegerField(required=False, min_value=0, max_value=99999)
    collapse_key = StrictCharField(required=False, max_length=100)
    analytics_label = StrictRegexField(r"^[a-zA-Z0-9-_.~%]{1,50}$", required=False)


class AudienceSerializer(StrictSerializer):
    kind = serializers.ChoiceField(choices=Audience.choices, default=Audience.ALL)
    platforms = serializers.ListField(child=serializers.ChoiceField(choices=Platform.choices),
                                      required=False, max_length=3)
    countries = serializers.ListField(child=StrictCharField(max_length=2), required=False, max_length=250)
    languages = serializers.ListField(child=StrictCharField(max_length=2), required=False, max_length=200)
    app_user_ids = serializers.ListField(child=StrictCharField(max_length=255), required=False,
                                         max_length=10000)
    tokens = serializers.ListField(child=StrictCharField(max_length=MAX_TOKEN_LENGTH), required=False,
                                   max_length=1000)
    topic = StrictRegexField(r"^[a-zA-Z0-9-_.~%]{1,900}$", required=False)
    condition = StrictCharField(required=False, max_length=1000)
    segment_id = StrictIntegerField(required=False, min_value=1, max_value=2**53,
                                    help_text="For a segment audience: one of /api/v1/segments.")
    rules = RulesField(required=False, path="audience.rules",
                       help_text="For a rules audience: a rule document, as a segment's rules.")

    def validate(self, attrs):
        kind = attrs.get("kind", Audience.ALL)
        needs = {Audience.USERS: "app_user_ids", Audience.TOKENS: "tokens", Audience.TOPIC: "topic",
                 Audience.CONDITION: "condition", Audience.SEGMENT: "segment_id",
                 Audience.RULES: "rules"}.get(kind)
        if needs and not attrs.get(needs):
            raise serializers.ValidationError({needs: [f"Required for a {kind} audience."]})
        if "countries" in attrs:
            attrs["countries"] = [c.upper() for c in attrs["countries"]]
            if bad := [c for c in attrs["countries"] if c not in COUNTRIES]:
                raise serializers.ValidationError({"countries": [f"Not ISO 3166-1 codes: {bad}"]})
        if "languages" in attrs:
            attrs["languages"] = [c.lower() for c in attrs["languages"]]
            if bad := [c for c in attrs["languages"] if c not in LANGUAGES]:
                raise serializers.ValidationError({"languages": [f"Not ISO 639-1 codes: {bad}"]})
        return attrs


class MessageCreateSerializer(StrictSerializer):
    title = StrictCharField(max_length=200)
    body = StrictCharField(max_length=2000)
    image_url = serializers.URLField(required=False, max_length=1000)
    click_link = StrictCharField(
        required=False, max_length=1000, validators=[validate_link],
        help_text="An http(s) URL or an app deep link (myshop://sale/flash); "
                  "javascript:, data:, vbscript: and file: links are refused.")
    data = StringMapField(required=False, help_text="String values, delivered in the push data.")
    priority = StrictIntegerField(required=False, min_value=1, max_value=10, default=5)
    data_only = StrictBooleanField(required=False, default=True,
                                   help_text="false sends an FCM notification message instead.")
    options = OptionsSerializer(required=False)
    audience = AudienceSerializer(required=False)
    schedule_at = RFC3339DateTimeField(required=False)
    ttl_seconds = StrictIntegerField(required=False, min_value=0, max_value=int(MAX_TTL.total_seconds()))
    dry_run = StrictBooleanField(required=False, default=False,
                                 help_text="Validate every message with FCM (validate_only); deliver none.")

    def validate(self, attrs):
        check_payload_size(attrs["title"], attrs["body"], attrs.get("data", {}))
        return attrs


class CountsSerializer(serializers.Serializer):
    targeted = serializers.IntegerField(source="targeted_count")
    sent = serializers.IntegerField(source="sent_count")
    failed = serializers.IntegerField(source="failed_count")
    pending = serializers.IntegerField(source="pending_count")
    opened = serializers.IntegerField(source="opened_count")


class MessageSerializer(serializers.ModelSerializer):
    counts = CountsSerializer(source="*")
    open_rate = serializers.FloatField(allow_null=True)
    audience = serializers.SerializerMethodField()

    class Meta:
        model = Message
        fields = ["id", "status", "title", "body", "image_url", "click_link", "data", "priority",
                  "data_only", "options", "audience", "schedule_at", "ttl_seconds", "dry_run", "counts",
                  "open_rate", "error", "source", "created_at", "started_at", "completed_at",
                  "cancelled_at"]

    def get_audience(self, message) -> dict:
        return {"kind": message.audience, **message.audience_params}


class MessageDetailSerializer(MessageSerializer):
    errors = serializers.SerializerMethodField(help_text="Failed deliveries by FCM error code.")

    class Meta(MessageSerializer.Meta):
        fields = [*MessageSerializer.Meta.fields, "errors"]

    def get_errors(self, message) -> dict[str, int]:
        return error_breakdown(message)


class DeveloperPushSerializer(serializers.Serializer):
    """SmartAppPush's body; unknown fields are ignored, as there."""

    app_user_id = StrictCharField(max_length=255)
    title = StrictCharField(max_length=200)
    body = StrictCharField(max_length=2000)
    extra_data = StringMapField(required=False)
    schedule_at = RFC3339DateTimeField(required=False)
    priority = StrictIntegerField(required=False, min_value=1, max_value=10, default=5)
    dedupe_key = StrictCharField(required=False, max_length=200)

    def validate(self, attrs):
        check_payload_size(attrs["title"], attrs["body"], attrs.get("extra_data", {}))
        return attrs


class DeveloperPushResponseSerializer(serializers.Serializer):
    push_count = serializers.IntegerField(help_text="Devices targeted.")
    app_user_id = serializers.CharField()
    app_id = serializers.CharField(help_text="The tenant_id.")


class PushOpenedSerializer(serializers.Serializer):
    tenant_id = StrictCharField()
    api_key = StrictCharField(write_only=True)
    tracking_token = StrictCharField(max_length=64)
