import json
from datetime import timedelta

from django.utils import timezone
from rest_framework import serializers

from api.fields import (
    RFC3339DateTimeField,
    StrictBooleanField,
    StrictCharField,
    StrictIntegerField,
    StrictRegexField,
)
from devices.models import MAX_TOKEN_LENGTH, Platform
from messaging.models import MAX_TTL, Audience, Message, validate_link
from messaging.selectors import error_breakdown
from messaging.services import MessageInput
from tenants.codes import COUNTRIES, LANGUAGES

# The rules of a message, stated once: the API's serializers below, which the composer's
# form (messaging.forms) runs too.

# FCM refuses these data keys (and any starting with "google." or "gcm."); Herald keeps
# tracking_token for itself.
RESERVED_DATA_KEYS = {"from", "notification", "message_type", "collapse_key", "tracking_token"}
# Keys a data-only push fills in from the push's own fields (see fcm.build_message), which
# would silently drop a data value of the same name.
DATA_ONLY_KEYS = {"title", "body", "image", "channel_id", "sound", "badge", "click_link"}
# schedule_at: a time up to a day past still means "now" (a retried request, a slow clock);
# further back is a mistake, and more than a year ahead too.
SCHEDULE_GRACE = timedelta(days=1)
SCHEDULE_HORIZON = timedelta(days=366)
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
    """A JSON object of string values (FCM's data map), without keys FCM or Herald keep."""

    child = StrictCharField(allow_blank=True, trim_whitespace=False)

    def filled_keys(self) -> set[str]:
        """Keys the push fills in itself, refused here too (none, unless a subclass says)."""
        return set()

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if any("\x00" in key for key in value):  # PostgreSQL's jsonb cannot store it
            raise serializers.ValidationError("Null characters are not allowed.")
        filled = self.filled_keys()
        problems = [f"{key!r} is reserved by FCM or Herald; choose another key." for key in value
                    if is_reserved_data_key(key)]
        problems += [f"{key!r} is set from the title, body and options in a data-only push; choose another "
                     "key." for key in value if key in filled]
        if problems:
            raise serializers.ValidationError(problems)
        return value


class MessageDataField(StringMapField):
    """A message's data: in a data-only push (the default) it may not name a key the push
    fills in from its own fields (title, body, image, …): the data value would be dropped."""

    def filled_keys(self) -> set[str]:
        initial = getattr(self.parent, "initial_data", None)
        data_only = initial.get("data_only", True) if isinstance(initial, dict) else True
        return DATA_ONLY_KEYS if data_only is not False else set()


class ScheduleAtField(RFC3339DateTimeField):
    """When to send: RFC 3339, from a day ago (meaning now) to a year ahead."""

    default_error_messages = {
        "too_early": "Must be no more than a day in the past (a time that has passed means now).",
        "too_late": "Must be at most 366 days ahead.",
    }

    def to_internal_value(self, value):
        when = super().to_internal_value(value)
        now = timezone.now()
        if when < now - SCHEDULE_GRACE:
            self.fail("too_early")
        if when > now + SCHEDULE_HORIZON:
            self.fail("too_late")
        return when


def check_payload_size(title: str, body: str, data: dict) -> None:
    size = payload_size(title, body, data)
    if size > MAX_PAYLOAD_BYTES:
        raise serializers.ValidationError(
            {"body": [f"Title, body and data come to {size:,} bytes; FCM allows about 4,000."]})


class OptionsSerializer(StrictSerializer):
    android_channel = StrictCharField(required=False, max_length=100)
    sound = StrictCharField(required=False, max_length=100)
    badge = StrictIntegerField(required=False, min_value=0, max_value=99999)
    collapse_key = StrictCharField(required=False, max_length=100)
    analytics_label = StrictRegexField(r"^[a-zA-Z0-9-_.~%]{1,50}$", required=False, error_messages={
        "invalid": "Letters, digits and - _ . ~ %% only, up to 50."})


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
    topic = StrictRegexField(r"^[a-zA-Z0-9-_.~%]{1,900}$", required=False, error_messages={
        "invalid": "A topic name has letters, digits and - _ . ~ %% only."})
    condition = StrictCharField(required=False, max_length=1000)

    def validate(self, attrs):
        kind = attrs.get("kind", Audience.ALL)
        needs = {Audience.USERS: "app_user_ids", Audience.TOKENS: "tokens", Audience.TOPIC: "topic",
                 Audience.CONDITION: "condition"}.get(kind)
        if needs and not attrs.get(needs):
            raise serializers.ValidationError({needs: ["Required for this audience."]})
        if kind == Audience.FILTER and not any(attrs.get(f) for f in ("platforms", "countries", "languages")):
            # A filter with no criteria is "everyone" by accident; the kind "all" says it on purpose.
            raise serializers.ValidationError(
                {"platforms": ["Choose at least one platform, country or language (or the audience all)."]})
        if "countries" in attrs:
            attrs["countries"] = [c.upper() for c in attrs["countries"]]
            if bad := [c for c in attrs["countries"] if c not in COUNTRIES]:
                raise serializers.ValidationError(
                    {"countries": [f"Not ISO 3166-1 country codes: {', '.join(bad)}."]})
        if "languages" in attrs:
            attrs["languages"] = [c.lower() for c in attrs["languages"]]
            if bad := [c for c in attrs["languages"] if c not in LANGUAGES]:
                raise serializers.ValidationError(
                    {"languages": [f"Not ISO 639-1 language codes: {', '.join(bad)}."]})
        return attrs


class MessageCreateSerializer(StrictSerializer):
    title = StrictCharField(max_length=200)
    body = StrictCharField(max_length=2000)
    image_url = serializers.URLField(required=False, max_length=1000)
    click_link = StrictCharField(
        required=False, max_length=1000, validators=[validate_link],
        help_text="An http(s) URL or an app deep link (myshop://sale/flash); "
                  "javascript:, data:, vbscript: and file: links are refused.")
    data = MessageDataField(
        required=False, help_text="String values, delivered in the push data. In a data-only push the "
        "keys title, body, image, channel_id, sound, badge and click_link are the push's own.")
    priority = StrictIntegerField(required=False, min_value=1, max_value=10, default=5)
    data_only = StrictBooleanField(required=False, default=True,
                                   help_text="false sends an FCM notification message instead.")
    options = OptionsSerializer(required=False)
    audience = AudienceSerializer(required=False)
    schedule_at = ScheduleAtField(required=False, help_text="RFC 3339; from a day ago (meaning now) to "
                                  "366 days ahead.")
    ttl_seconds = StrictIntegerField(required=False, min_value=0, max_value=int(MAX_TTL.total_seconds()),
                                     error_messages={"max_value": "FCM keeps a push at most 4 weeks."})
    dry_run = StrictBooleanField(required=False, default=False,
                                 help_text="Validate every message with FCM (validate_only); deliver none.")

    def validate(self, attrs):
        check_payload_size(attrs["title"], attrs["body"], attrs.get("data", {}))
        return attrs

    def to_input(self) -> MessageInput:
        """The validated message, as `services.create_message` takes it."""
        data = dict(self.validated_data)
        audience = dict(data.pop("audience", {}) or {})
        return MessageInput(audience=audience.pop("kind", Audience.ALL), audience_params=audience, **data)


class CountsSerializer(serializers.Serializer):
    targeted = serializers.IntegerField(source="targeted_count")
    sent = serializers.IntegerField(source="sent_count", help_text="Delivered to FCM (never in a dry run).")
    validated = serializers.IntegerField(source="validated_count",
                                         help_text="A dry run's messages FCM accepted (validate_only): none "
                                         "delivered.")
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
    extra_data = StringMapField(
        required=False, help_text="String values, delivered in the push data beside title, body and "
        "tracking_token; a key title or body is ignored (the push's own fields win), as the data-only "
        "push fills those in.")
    schedule_at = ScheduleAtField(required=False, help_text="RFC 3339; from a day ago (meaning now) to "
                                  "366 days ahead.")
    priority = StrictIntegerField(required=False, min_value=1, max_value=10, default=5)
    dedupe_key = StrictCharField(required=False, max_length=200)

    def validate(self, attrs):
        check_payload_size(attrs["title"], attrs["body"], attrs.get("extra_data", {}))
        return attrs


class DeveloperPushResponseSerializer(serializers.Serializer):
    push_count = serializers.IntegerField(help_text="Devices targeted.")
    app_user_id = serializers.CharField()
    app_id = serializers.CharField(help_text="The tenant_id.")
    deduplicated = serializers.BooleanField(
        required=False, help_text="Present (true) only when a dedupe_key repeated for the same user "
        "within 10 minutes suppressed this push: nothing was sent again, push_count is the first push's.")


class PushOpenedSerializer(serializers.Serializer):
    tenant_id = StrictCharField()
    api_key = StrictCharField(write_only=True)
    tracking_token = StrictCharField(max_length=64)
