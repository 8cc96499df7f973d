import json
from datetime import timedelta

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
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
from messaging import content
from messaging.models import (
    MAX_EXTRA_LANGUAGES,
    MAX_TTL,
    MAX_VARIANTS,
    AbTest,
    Audience,
    Message,
    VariantMode,
    validate_link,
)
from messaging.selectors import content_stats, error_breakdown
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
        problems = [
            f"{key!r} is reserved by FCM or Herald; choose another key."
            for key in value
            if is_reserved_data_key(key)
        ]
        problems += [
            f"{key!r} is set from the title, body and options in a data-only push; choose another key."
            for key in value
            if key in filled
        ]
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
            {"body": [f"Title, body and data come to {size:,} bytes; FCM allows about 4,000."]}
        )


class OptionsSerializer(StrictSerializer):
    android_channel = StrictCharField(required=False, max_length=100)
    sound = StrictCharField(required=False, max_length=100)
    badge = StrictIntegerField(required=False, min_value=0, max_value=99999)
    collapse_key = StrictCharField(required=False, max_length=100)
    analytics_label = StrictRegexField(
        r"^[a-zA-Z0-9-_.~%]{1,50}$",
        required=False,
        error_messages={"invalid": "Letters, digits and - _ . ~ %% only, up to 50."},
    )


class AudienceSerializer(StrictSerializer):
    # "recipients" is a campaign's own audience, never composed.
    kind = serializers.ChoiceField(
        choices=[c for c in Audience.choices if c[0] != Audience.RECIPIENTS], default=Audience.ALL
    )
    platforms = serializers.ListField(
        child=serializers.ChoiceField(choices=Platform.choices), required=False, max_length=3
    )
    countries = serializers.ListField(child=StrictCharField(max_length=2), required=False, max_length=250)
    languages = serializers.ListField(child=StrictCharField(max_length=2), required=False, max_length=200)
    app_user_ids = serializers.ListField(
        child=StrictCharField(max_length=255), required=False, max_length=10000
    )
    tokens = serializers.ListField(
        child=StrictCharField(max_length=MAX_TOKEN_LENGTH), required=False, max_length=1000
    )
    topic = StrictRegexField(
        r"^[a-zA-Z0-9-_.~%]{1,900}$",
        required=False,
        error_messages={"invalid": "A topic name has letters, digits and - _ . ~ %% only."},
    )
    condition = StrictCharField(required=False, max_length=1000)
    segment_id = StrictIntegerField(
        required=False,
        min_value=1,
        max_value=2**53,
        help_text="For a segment audience: one of /api/v1/segments.",
    )
    rules = RulesField(
        required=False,
        path="audience.rules",
        help_text="For a rules audience: a rule document, as a segment's rules.",
    )

    def validate(self, attrs):
        kind = attrs.get("kind", Audience.ALL)
        needs = {
            Audience.USERS: "app_user_ids",
            Audience.TOKENS: "tokens",
            Audience.TOPIC: "topic",
            Audience.CONDITION: "condition",
            Audience.SEGMENT: "segment_id",
            Audience.RULES: "rules",
        }.get(kind)
        if needs and not attrs.get(needs):
            raise serializers.ValidationError({needs: ["Required for this audience."]})
        if kind == Audience.FILTER and not any(attrs.get(f) for f in ("platforms", "countries", "languages")):
            # A filter with no criteria is "everyone" by accident; the kind "all" says it on purpose.
            raise serializers.ValidationError(
                {"platforms": ["Choose at least one platform, country or language (or the audience all)."]}
            )
        if "countries" in attrs:
            attrs["countries"] = [c.upper() for c in attrs["countries"]]
            if bad := [c for c in attrs["countries"] if c not in COUNTRIES]:
                raise serializers.ValidationError(
                    {"countries": [f"Not ISO 3166-1 country codes: {', '.join(bad)}."]}
                )
        if "languages" in attrs:
            attrs["languages"] = [c.lower() for c in attrs["languages"]]
            if bad := [c for c in attrs["languages"] if c not in LANGUAGES]:
                raise serializers.ValidationError(
                    {"languages": [f"Not ISO 639-1 language codes: {', '.join(bad)}."]}
                )
        return attrs


# --- Localizations and variants (messaging.content) --------------------------------------


def no_lone_surrogates(value: str) -> None:
    """JSON may carry half of a UTF-16 pair ("\\ud800"); no database or FCM can store it."""
    try:
        value.encode()
    except UnicodeEncodeError:
        raise serializers.ValidationError("Contains an unpaired UTF-16 surrogate.", code="invalid") from None


class LocalizedContentSerializer(StrictSerializer):
    """A message's content in one language (or one variant's)."""

    title = StrictCharField(max_length=200, validators=[no_lone_surrogates])
    body = StrictCharField(max_length=2000, validators=[no_lone_surrogates])
    image_url = serializers.URLField(required=False, max_length=1000, validators=[no_lone_surrogates])
    click_link = StrictCharField(
        required=False, max_length=1000, validators=[no_lone_surrogates, validate_link]
    )

    def to_internal_value(self, data):
        return _content_of(super().to_internal_value(data))


def _content_of(value: dict) -> content.Content:
    return content.Content(
        title=value["title"],
        body=value["body"],
        image_url=value.get("image_url", ""),
        click_link=value.get("click_link", ""),
    )


class LocalizationsField(serializers.DictField):
    """{"tr": {"title": …, "body": …, "image_url"?, "click_link"?}, …}: up to 31 ISO 639-1 codes."""

    child = LocalizedContentSerializer()

    def __init__(self, **kwargs):
        kwargs.setdefault(
            "help_text",
            "The content in other languages, by ISO 639-1 code (up to "
            f"{MAX_EXTRA_LANGUAGES}); a user whose language is missing gets the default "
            "language's (the tenant's default language).",
        )
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if isinstance(data, dict):
            if len(data) > MAX_EXTRA_LANGUAGES:
                raise serializers.ValidationError(
                    f"At most {MAX_EXTRA_LANGUAGES} languages besides the default."
                )
            errors = {
                key: ["Not an ISO 639-1 language code (two lowercase letters, like tr)."]
                for key in data
                if key not in LANGUAGES
            }
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)


class VariantSerializer(LocalizedContentSerializer):
    localizations = LocalizationsField(required=False)

    def to_internal_value(self, data):
        value = StrictSerializer.to_internal_value(self, data)
        return content.VariantInput(content=_content_of(value), localizations=value.get("localizations", {}))


class AbTestSerializer(StrictSerializer):
    test_percent = StrictIntegerField(
        min_value=1,
        max_value=99,
        default=20,
        help_text="The share of the audience, split evenly, that tests the variants.",
    )
    wait_seconds = StrictIntegerField(
        min_value=60,
        max_value=7 * 86400,
        default=3600,
        help_text="How long after the test is sent the winner is chosen.",
    )
    metric = serializers.ChoiceField(choices=AbTest.Metric.choices, default=AbTest.Metric.OPEN_RATE)
    min_opens = StrictIntegerField(
        min_value=0,
        max_value=1_000_000,
        default=10,
        help_text="With fewer opens in the whole test, fallback_variant wins.",
    )
    fallback_variant = StrictIntegerField(
        min_value=0, max_value=MAX_VARIANTS - 1, default=0, help_text="0 is the first variant."
    )


def check_content(attrs: dict, *, default_language: str | None, data: dict) -> None:
    """The rules localizations and variants share in the API and the composer: content in
    the top-level fields or in `variants`, not both; every variant in the same languages;
    none repeating the default language; each language's push within FCM's size."""
    variants = attrs.get("variants") or []
    localizations = attrs.get("localizations") or {}
    kind = (attrs.get("audience") or {}).get("kind", Audience.ALL)
    if variants:
        for name in ("title", "body", "image_url", "click_link", "localizations"):
            if name in attrs:
                raise serializers.ValidationError(
                    {name: [f"With variants, each variant carries its own {name}; leave it out here."]}
                )
    elif "title" not in attrs or "body" not in attrs:
        name = "title" if "title" not in attrs else "body"
        raise serializers.ValidationError(
            {name: [serializers.ErrorDetail("This field is required.", code="required")]}
        )
    if kind in (Audience.TOPIC, Audience.CONDITION) and (variants or localizations):
        name = "variants" if variants else "localizations"
        raise serializers.ValidationError(
            {name: [f"A {kind} push goes to FCM as one message, in one language and one variant."]}
        )
    if attrs.get("variant_mode") == VariantMode.AB_TEST and not variants:
        raise serializers.ValidationError({"variant_mode": ["An A/B test needs 2 to 5 variants."]})
    if "ab_test" in attrs and attrs.get("variant_mode") != VariantMode.AB_TEST:
        raise serializers.ValidationError({"ab_test": ['Only with "variant_mode": "ab_test".']})
    ab_test = attrs.get("ab_test") or {}
    if ab_test.get("fallback_variant", 0) >= max(len(variants), 1):
        raise serializers.ValidationError(
            {"ab_test": {"fallback_variant": [f"There are {len(variants)} variants, numbered from 0."]}}
        )
    every = variants or [
        content.VariantInput(
            content=content.Content(attrs["title"], attrs["body"]), localizations=localizations
        )
    ]
    languages = set(every[0].localizations)
    for index, variant in enumerate(every):
        where = {"variants": {index: None}} if variants else {}
        if default_language and default_language in variant.localizations:
            _raise_at(
                where,
                "localizations",
                default_language,
                f"{default_language} is the message's default language: its content is the "
                "title and body themselves.",
            )
        if set(variant.localizations) != languages:
            missing = sorted(languages ^ set(variant.localizations))
            _raise_at(
                where,
                "localizations",
                missing[0],
                "Every variant is written in the same languages (the first variant's).",
            )
        for language, text in [(None, variant.content), *variant.localizations.items()]:
            size = payload_size(text.title, text.body, data)
            if size > MAX_PAYLOAD_BYTES:
                _raise_at(
                    where,
                    "localizations" if language else "body",
                    language,
                    f"title, body and data come to {size} bytes; FCM allows about 4,000.",
                )


def _raise_at(where: dict, name: str, language: str | None, problem: str):
    error = {name: {language: [problem]} if language else [problem]}
    if where:
        index = next(iter(where["variants"]))
        error = {"variants": {index: error}}
    raise serializers.ValidationError(error)


class ComposedContentSerializer(StrictSerializer):
    """The composer's content (messaging.forms): the same fields and rules as the API's."""

    title = StrictCharField(max_length=200, required=False)
    body = StrictCharField(max_length=2000, required=False)
    image_url = serializers.URLField(required=False, max_length=1000)
    click_link = StrictCharField(required=False, max_length=1000, validators=[validate_link])
    localizations = LocalizationsField(required=False)
    variants = serializers.ListField(
        child=VariantSerializer(), required=False, min_length=2, max_length=MAX_VARIANTS
    )
    variant_mode = serializers.ChoiceField(
        choices=VariantMode.choices, required=False, default=VariantMode.SPLIT
    )
    ab_test = AbTestSerializer(required=False)

    def validate(self, attrs):
        check_content(
            attrs, default_language=self.context.get("default_language"), data=self.context.get("data", {})
        )
        return attrs


class MessageCreateSerializer(StrictSerializer):
    title = StrictCharField(max_length=200, required=False, help_text="Required unless variants are given.")
    body = StrictCharField(max_length=2000, required=False, help_text="Required unless variants are given.")
    image_url = serializers.URLField(required=False, max_length=1000)
    click_link = StrictCharField(
        required=False,
        max_length=1000,
        validators=[validate_link],
        help_text="An http(s) URL or an app deep link (myshop://sale/flash); "
        "javascript:, data:, vbscript: and file: links are refused.",
    )
    data = MessageDataField(
        required=False,
        help_text="String values, delivered in the push data. In a data-only push the "
        "keys title, body, image, channel_id, sound, badge and click_link are the push's own.",
    )
    priority = StrictIntegerField(required=False, min_value=1, max_value=10, default=5)
    data_only = StrictBooleanField(
        required=False, default=True, help_text="false sends an FCM notification message instead."
    )
    options = OptionsSerializer(required=False)
    audience = AudienceSerializer(required=False)
    schedule_at = ScheduleAtField(
        required=False, help_text="RFC 3339; from a day ago (meaning now) to 366 days ahead."
    )
    ttl_seconds = StrictIntegerField(
        required=False,
        min_value=0,
        max_value=int(MAX_TTL.total_seconds()),
        error_messages={"max_value": "FCM keeps a push at most 4 weeks."},
    )
    dry_run = StrictBooleanField(
        required=False,
        default=False,
        help_text="Validate every message with FCM (validate_only); deliver none.",
    )
    transactional = StrictBooleanField(
        required=False,
        default=False,
        help_text="A push the user asked for (a receipt, an order shipped): exempt from the tenant's "
        "marketing frequency cap and quiet hours.",
    )
    localizations = LocalizationsField(required=False)
    variants = serializers.ListField(
        child=VariantSerializer(),
        required=False,
        min_length=2,
        max_length=MAX_VARIANTS,
        help_text="2 to 5 variants, each with its own content and localizations; instead of the "
        "top-level title, body, image_url, click_link and localizations.",
    )
    variant_mode = serializers.ChoiceField(
        choices=VariantMode.choices,
        required=False,
        default=VariantMode.SPLIT,
        help_text="split: each user gets one variant, evenly. ab_test: a test group gets them, then the "
        "variant with the best open rate goes to the rest.",
    )
    ab_test = AbTestSerializer(required=False)

    def validate(self, attrs):
        check_content(
            attrs, default_language=self.context.get("default_language"), data=attrs.get("data", {})
        )
        return attrs

    def to_input(self) -> MessageInput:
        """The validated message, as `services.create_message` takes it."""
        data = content.spread_variants(dict(self.validated_data))
        audience = dict(data.pop("audience", {}) or {})
        return MessageInput(audience=audience.pop("kind", Audience.ALL), audience_params=audience, **data)


class CountsSerializer(serializers.Serializer):
    targeted = serializers.IntegerField(source="targeted_count")
    sent = serializers.IntegerField(source="sent_count", help_text="Delivered to FCM (never in a dry run).")
    validated = serializers.IntegerField(
        source="validated_count",
        help_text="A dry run's messages FCM accepted (validate_only): none delivered.",
    )
    failed = serializers.IntegerField(source="failed_count")
    pending = serializers.IntegerField(source="pending_count")
    opened = serializers.IntegerField(source="opened_count")


class MessageSerializer(serializers.ModelSerializer):
    counts = CountsSerializer(source="*")
    open_rate = serializers.FloatField(allow_null=True)
    audience = serializers.SerializerMethodField()

    class Meta:
        model = Message
        fields = [
            "id",
            "status",
            "title",
            "body",
            "image_url",
            "click_link",
            "data",
            "priority",
            "data_only",
            "options",
            "audience",
            "schedule_at",
            "ttl_seconds",
            "dry_run",
            "transactional",
            "counts",
            "open_rate",
            "error",
            "source",
            "created_at",
            "started_at",
            "completed_at",
            "cancelled_at",
        ]

    def get_audience(self, message) -> dict:
        return {"kind": message.audience, **message.audience_params}


class ContentOutSerializer(serializers.Serializer):
    title = serializers.CharField()
    body = serializers.CharField()
    image_url = serializers.CharField()
    click_link = serializers.CharField()


class ContentStatSerializer(serializers.Serializer):
    sent = serializers.IntegerField()
    failed = serializers.IntegerField()
    opened = serializers.IntegerField()
    pending = serializers.IntegerField()
    open_rate = serializers.FloatField(allow_null=True, help_text="opened / sent; sent is its sample size.")


class LanguageStatSerializer(ContentStatSerializer):
    language = serializers.CharField(source="key")


class VariantStatSerializer(ContentStatSerializer):
    variant = serializers.IntegerField(source="key", help_text="0 is the first variant (A).")


class VariantOutSerializer(ContentOutSerializer):
    variant = serializers.IntegerField()
    localizations = serializers.DictField(child=ContentOutSerializer())


class AbTestOutSerializer(serializers.ModelSerializer):
    class Meta:
        model = AbTest
        fields = [
            "test_percent",
            "wait_seconds",
            "metric",
            "min_opens",
            "fallback_variant",
            "test_sent_at",
            "decide_at",
            "winner",
            "reason",
            "decided_at",
            "tally",
        ]


class MessageDetailSerializer(MessageSerializer):
    errors = serializers.SerializerMethodField(help_text="Failed deliveries by FCM error code.")
    localizations = serializers.SerializerMethodField(help_text="The first variant's other languages.")
    variants = serializers.SerializerMethodField(
        help_text="Every variant (none for a single-content message)."
    )
    ab_test = AbTestOutSerializer(allow_null=True, read_only=True)
    per_language = serializers.SerializerMethodField(help_text="Deliveries by the language each device got.")
    per_variant = serializers.SerializerMethodField(help_text="Deliveries by the variant each device got.")

    class Meta(MessageSerializer.Meta):
        fields = [
            *MessageSerializer.Meta.fields,
            "errors",
            "language",
            "localizations",
            "variant_mode",
            "variants",
            "ab_test",
            "per_language",
            "per_variant",
        ]

    def get_errors(self, message) -> dict[str, int]:
        return error_breakdown(message)

    def _variants(self, message) -> list:
        if not hasattr(message, "_variants_cache"):
            message._variants_cache = content.variants_of(message)
        return message._variants_cache

    def _stats(self, message) -> dict:
        if not hasattr(message, "_stats_cache"):
            message._stats_cache = content_stats(message)
        return message._stats_cache

    @extend_schema_field(serializers.DictField(child=ContentOutSerializer()))
    def get_localizations(self, message) -> dict:
        return {lang: c.as_dict() for lang, c in self._variants(message)[0].localizations.items()}

    @extend_schema_field(VariantOutSerializer(many=True))
    def get_variants(self, message) -> list:
        if message.variant_count < 2:
            return []
        return [
            {
                "variant": i,
                **v.content.as_dict(),
                "localizations": {lang: c.as_dict() for lang, c in v.localizations.items()},
            }
            for i, v in enumerate(self._variants(message))
        ]

    @extend_schema_field(LanguageStatSerializer(many=True))
    def get_per_language(self, message) -> list:
        return LanguageStatSerializer(self._stats(message)["languages"], many=True).data

    @extend_schema_field(VariantStatSerializer(many=True))
    def get_per_variant(self, message) -> list:
        return VariantStatSerializer(self._stats(message)["variants"], many=True).data


class DeveloperPushSerializer(serializers.Serializer):
    """SmartAppPush's body; unknown fields are ignored, as there."""

    app_user_id = StrictCharField(max_length=255)
    title = StrictCharField(max_length=200)
    body = StrictCharField(max_length=2000)
    extra_data = StringMapField(
        required=False,
        help_text="String values, delivered in the push data beside title, body and "
        "tracking_token; a key title or body is ignored (the push's own fields win), as the data-only "
        "push fills those in.",
    )
    schedule_at = ScheduleAtField(
        required=False, help_text="RFC 3339; from a day ago (meaning now) to 366 days ahead."
    )
    priority = StrictIntegerField(required=False, min_value=1, max_value=10, default=5)
    dedupe_key = StrictCharField(required=False, max_length=200)
    localizations = LocalizationsField(
        required=False,
        help_text="A Herald extension (SmartAppPush has none): the push in other languages "
        "by ISO 639-1 code; each device gets its user's language, else the tenant's default language.",
    )

    def validate(self, attrs):
        check_payload_size(attrs["title"], attrs["body"], attrs.get("extra_data", {}))
        check_content(
            attrs, default_language=self.context.get("default_language"), data=attrs.get("extra_data", {})
        )
        return attrs


class DeveloperPushResponseSerializer(serializers.Serializer):
    push_count = serializers.IntegerField(help_text="Devices targeted.")
    app_user_id = serializers.CharField()
    app_id = serializers.CharField(help_text="The tenant_id.")
    deduplicated = serializers.BooleanField(
        required=False,
        help_text="Present (true) only when a dedupe_key repeated for the same user "
        "within 10 minutes suppressed this push: nothing was sent again, push_count is the first push's.",
    )


class PushOpenedSerializer(serializers.Serializer):
    tenant_id = StrictCharField()
    api_key = StrictCharField(write_only=True)
    tracking_token = StrictCharField(max_length=64)


class WinnerSerializer(StrictSerializer):
    variant = StrictIntegerField(
        min_value=0, max_value=MAX_VARIANTS - 1, help_text="0 is the first variant (A)."
    )
