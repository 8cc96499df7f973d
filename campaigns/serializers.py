"""A campaign's fields, checked as hostile input: the API's serializers, which the admin's
editor runs too.

Content reuses the message serializers' pieces (variants, localizations, data, options, the
payload size), trigger param filters and audience rules reuse audiences.rules, time zones
come from tenants.codes. A fault is a 400 whose `field` is its path
(`content.variants[1].localizations.tr.title`, `trigger_params[0].op`).

An update is checked as a whole: the stored campaign's fields with the PATCH laid over them
(`merged_input`), so a change can never leave a scheduled campaign without a time or a
weekly one without weekdays.
"""

import re
from datetime import date, time

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from api.errors import ApiError
from api.fields import StrictBooleanField, StrictCharField, StrictIntegerField
from audiences import rules as rule_doc
from audiences.serializers import RULES_SCHEMA, RulesField
from campaigns.models import (
    MAX_TRIGGER_DELAY_SECONDS,
    AudienceKind,
    Campaign,
    ContentMode,
    Cooldown,
    Kind,
    QuietHoursAction,
    ScheduleKind,
    ZoneMode,
)
from messaging import content as message_content
from messaging.models import MAX_TTL, MAX_VARIANTS, VariantMode
from messaging.serializers import (
    AbTestSerializer,
    MessageDataField,
    OptionsSerializer,
    StrictSerializer,
    VariantSerializer,
    check_content,
)
from tenants.codes import time_zones

TRIGGER_FIELDS = ("trigger_event", "trigger_params", "delay_seconds", "cancel_event")
SCHEDULE_FIELDS = ("schedule_kind", "send_time", "send_date", "weekdays", "month_days", "zone_mode", "zone")
# The year range a schedule's date may name: every zone converts it, every database stores it.
FIRST_YEAR, LAST_YEAR = 2000, 2099
TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


# --- Fields ----------------------------------------------------------------------------------


@extend_schema_field(
    {
        "type": "array",
        "maxItems": rule_doc.MAX_PARAMS,
        "items": {"type": "object"},
        "description": "Param filters on the trigger event, as in a segment's event rule: "
        '[{"param": "amount", "op": ">", "value": 50}]; ops = != > >= < <= contains in exists not_exists.',
    }
)
class TriggerParamsField(serializers.Field):
    """An event rule's param filters, checked by audiences.rules (the path names the fault)."""

    def to_internal_value(self, data):
        try:
            return rule_doc.parse_params(data, path=self.field_name)
        except rule_doc.RuleError as exc:
            raise ApiError(str(exc), code="invalid_field", field=exc.path) from None

    def to_representation(self, value):
        return value


class EventNameField(StrictCharField):
    """An event name, as /events records it and segment rules name it."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 200)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        try:
            return rule_doc.event_name(value, self.field_name)
        except rule_doc.RuleError as exc:
            raise serializers.ValidationError(exc.message) from None


@extend_schema_field({"type": "string", "pattern": r"^([01]\d|2[0-3]):[0-5]\d$", "example": "09:00"})
class WallTimeField(serializers.Field):
    """A wall-clock time, "HH:MM" (24 hours)."""

    default_error_messages = {"invalid": 'A time of day as "HH:MM", e.g. "09:00".'}

    def to_internal_value(self, data):
        if not isinstance(data, str) or not TIME.match(data):
            self.fail("invalid")
        return time.fromisoformat(data)

    def to_representation(self, value):
        return value.strftime("%H:%M") if value else None


@extend_schema_field({"type": "string", "format": "date", "example": "2026-12-24"})
class ScheduleDateField(serializers.Field):
    """A calendar date, "YYYY-MM-DD", from 2000 to 2099."""

    default_error_messages = {
        "invalid": 'A date as "YYYY-MM-DD", e.g. "2026-12-24".',
        "range": f"A date from {FIRST_YEAR} to {LAST_YEAR}.",
    }

    def to_internal_value(self, data):
        if not isinstance(data, str) or not DATE.match(data):
            self.fail("invalid")
        try:
            value = date.fromisoformat(data)
        except ValueError:
            self.fail("invalid")
        if not FIRST_YEAR <= value.year <= LAST_YEAR:
            self.fail("range")
        return value

    def to_representation(self, value):
        return value.isoformat() if value else None


class NumberSetField(serializers.ListField):
    """A set of whole numbers in a range (weekdays, days of the month), stored sorted."""

    def __init__(self, *, low: int, high: int, **kwargs):
        self.low, self.high = low, high
        kwargs.setdefault("child", StrictIntegerField(min_value=low, max_value=high))
        kwargs.setdefault("max_length", high - low + 1)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if isinstance(data, list) and len(data) > self.high - self.low + 1:
            raise serializers.ValidationError(f"At most {self.high - self.low + 1} values.")
        return sorted(set(super().to_internal_value(data)))


class ZoneField(StrictCharField):
    default_error_messages = {"unknown_zone": "Not an IANA time zone name (e.g. Europe/Istanbul)."}

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 64)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if value and value not in time_zones():
            self.fail("unknown_zone")
        return value


# --- Content -----------------------------------------------------------------------------------


class CampaignContentSerializer(StrictSerializer):
    """What each send says: 1 to 5 variants (each in the tenant's default language, plus up to
    31 localizations), and the push options a message takes."""

    variants = serializers.ListField(
        child=VariantSerializer(),
        min_length=1,
        max_length=MAX_VARIANTS,
        help_text="1 to 5 variants: title, body, image_url?, click_link?, localizations? "
        "(as a message's). Every variant is written in the same languages.",
    )
    data = MessageDataField(required=False, help_text="String values, delivered in the push data.")
    priority = StrictIntegerField(required=False, min_value=1, max_value=10, default=5)
    data_only = StrictBooleanField(required=False, default=True)
    options = OptionsSerializer(required=False)
    ttl_seconds = StrictIntegerField(
        required=False,
        min_value=0,
        max_value=int(MAX_TTL.total_seconds()),
        error_messages={"max_value": "FCM keeps a push at most 4 weeks."},
    )

    def to_internal_value(self, data):
        # MessageDataField reads data_only from its parent's input, as at the top of a message.
        self.initial_data = data
        return super().to_internal_value(data)


def check_campaign_content(value: dict, *, mode: str, ab_test: dict | None, default_language: str) -> None:
    """The message composer's content rules (check_content), for 1 to 5 variants."""
    variants = value["variants"]
    data = value.get("data", {})
    if len(variants) == 1:
        first = variants[0]
        attrs = {
            "title": first.content.title,
            "body": first.content.body,
            "localizations": first.localizations,
        }
        try:
            check_content(attrs, default_language=default_language, data=data)
        except serializers.ValidationError as exc:
            raise serializers.ValidationError({"variants": {0: exc.detail}}) from None
        return
    attrs = {"variants": variants, "variant_mode": VariantMode.AB_TEST if mode == "ab_test" else "split"}
    if ab_test is not None:
        attrs["ab_test"] = ab_test
    check_content(attrs, default_language=default_language, data=data)


def stored_content(value: dict, *, language: str) -> dict:
    """The validated content as Campaign.content keeps it (plain JSON)."""
    out = {
        "language": language,
        "variants": [
            {
                **v.content.as_dict(),
                "localizations": {lang: c.as_dict() for lang, c in v.localizations.items()},
            }
            for v in value["variants"]
        ],
    }
    for key in ("data", "priority", "data_only", "options", "ttl_seconds"):
        if key in value:
            out[key] = value[key]
    return out


def content_input(stored: dict) -> dict:
    """Campaign.content back as the API writes it (without the language the tenant sets)."""
    out = {
        "variants": [
            {
                key: val
                for key, val in v.items()
                if key in ("title", "body", "localizations") or (key in ("image_url", "click_link") and val)
            }
            for v in stored.get("variants", [])
        ]
    }
    for variant in out["variants"]:
        variant["localizations"] = {
            lang: {k: val for k, val in c.items() if k in ("title", "body") or val}
            for lang, c in variant.get("localizations", {}).items()
        }
        if not variant["localizations"]:
            del variant["localizations"]
    for key in ("data", "priority", "data_only", "options", "ttl_seconds"):
        if key in stored:
            out[key] = stored[key]
    return out


# --- Audience ---------------------------------------------------------------------------------


class CampaignAudienceSerializer(StrictSerializer):
    kind = serializers.ChoiceField(choices=AudienceKind.choices, default=AudienceKind.ALL)
    segment_id = StrictIntegerField(
        required=False,
        min_value=1,
        max_value=2**53,
        help_text="For a segment audience: one of /api/v1/segments.",
    )
    rules = RulesField(
        required=False, path="audience.rules", help_text="For a rules audience: a rule document."
    )

    def validate(self, attrs):
        kind = attrs.get("kind", AudienceKind.ALL)
        needs = {AudienceKind.SEGMENT: "segment_id", AudienceKind.RULES: "rules"}.get(kind)
        if needs and needs not in attrs:
            raise serializers.ValidationError(
                {needs: [serializers.ErrorDetail("Required for this audience.", code="required")]}
            )
        for name, kind_of in (("segment_id", AudienceKind.SEGMENT), ("rules", AudienceKind.RULES)):
            if name in attrs and name != needs:
                raise serializers.ValidationError({name: [f'Only with "kind": "{kind_of}".']})
        return attrs


# --- The campaign -----------------------------------------------------------------------------


class CampaignWriteSerializer(StrictSerializer):
    """Every writable field of a campaign (create; an update is checked merged, see module)."""

    name = StrictCharField(max_length=200)
    description = StrictCharField(max_length=2000, required=False, allow_blank=True)
    kind = serializers.ChoiceField(choices=Kind.choices)
    content = CampaignContentSerializer()
    content_mode = serializers.ChoiceField(
        choices=ContentMode.choices,
        required=False,
        default=ContentMode.ROTATE,
        help_text="rotate: a user gets the next variant each time (the only mode of triggered "
        "campaigns). split and ab_test: as a message's, for scheduled campaigns.",
    )
    ab_test = AbTestSerializer(required=False, help_text='With "content_mode": "ab_test".')
    audience = CampaignAudienceSerializer(required=False, help_text="Checked when each send is due.")
    cooldown = serializers.ChoiceField(
        choices=Cooldown.choices,
        required=False,
        default=Cooldown.DAY,
        help_text="How soon a user may get this campaign again.",
    )
    quiet_hours_action = serializers.ChoiceField(
        choices=QuietHoursAction.choices, required=False, default=QuietHoursAction.DEFER
    )
    # Triggered.
    trigger_event = EventNameField(required=False, help_text="Triggered: the event that starts a send.")
    trigger_params = TriggerParamsField(required=False)
    delay_seconds = StrictIntegerField(
        required=False,
        min_value=0,
        max_value=MAX_TRIGGER_DELAY_SECONDS,
        help_text="Triggered: how long after the event the send is due, 0 to 30 days.",
    )
    cancel_event = EventNameField(
        required=False,
        allow_blank=True,
        help_text="Triggered: drop the send if this event happens within the delay.",
    )
    # Scheduled.
    schedule_kind = serializers.ChoiceField(choices=ScheduleKind.choices, required=False)
    send_time = WallTimeField(required=False, help_text='Scheduled: the wall-clock time, "HH:MM".')
    send_date = ScheduleDateField(required=False, help_text="once: the date; annually: its month and day.")
    weekdays = NumberSetField(low=0, high=6, required=False, help_text="weekly: 0 = Monday … 6 = Sunday.")
    month_days = NumberSetField(low=1, high=31, required=False, help_text="monthly: days 1–31.")
    zone_mode = serializers.ChoiceField(choices=ZoneMode.choices, required=False, default=ZoneMode.GLOBAL)
    zone = ZoneField(
        required=False, allow_blank=True, help_text="global: an IANA zone (the tenant's if blank)."
    )

    def validate(self, attrs):
        kind = attrs["kind"]
        own, other = (
            (TRIGGER_FIELDS, SCHEDULE_FIELDS) if kind == Kind.TRIGGERED else (SCHEDULE_FIELDS, TRIGGER_FIELDS)
        )
        for name in other:
            if name in self.initial_data:
                raise serializers.ValidationError(
                    {name: [f"Only for {'scheduled' if kind == Kind.TRIGGERED else 'triggered'} campaigns."]}
                )
        if kind == Kind.TRIGGERED:
            self._triggered(attrs)
        else:
            self._scheduled(attrs)
        mode = attrs.get("content_mode", ContentMode.ROTATE)
        if kind == Kind.TRIGGERED and mode != ContentMode.ROTATE:
            raise serializers.ValidationError(
                {"content_mode": ["A triggered campaign rotates its variants (rotate)."]}
            )
        if "ab_test" in attrs and mode != ContentMode.AB_TEST:
            raise serializers.ValidationError({"ab_test": ['Only with "content_mode": "ab_test".']})
        if mode == ContentMode.AB_TEST and len(attrs["content"]["variants"]) < 2:
            raise serializers.ValidationError({"content_mode": ["An A/B test needs 2 to 5 variants."]})
        try:
            check_campaign_content(
                attrs["content"],
                mode=mode,
                ab_test=attrs.get("ab_test"),
                default_language=self.context.get("default_language"),
            )
        except serializers.ValidationError as exc:
            raise serializers.ValidationError({"content": exc.detail}) from None
        return attrs

    def _triggered(self, attrs):
        if not attrs.get("trigger_event"):
            raise serializers.ValidationError(
                {
                    "trigger_event": [
                        serializers.ErrorDetail("Required for a triggered campaign.", code="required")
                    ]
                }
            )
        cancel = attrs.get("cancel_event", "")
        if cancel and not attrs.get("delay_seconds"):
            raise serializers.ValidationError(
                {"cancel_event": ["A cancel event needs a delay to happen within; set delay_seconds."]}
            )
        if cancel and cancel == attrs["trigger_event"]:
            raise serializers.ValidationError(
                {"cancel_event": ["The cancel event must differ from the trigger."]}
            )

    def _scheduled(self, attrs):
        kind = attrs.get("schedule_kind")
        if not kind:
            raise serializers.ValidationError(
                {
                    "schedule_kind": [
                        serializers.ErrorDetail("Required for a scheduled campaign.", code="required")
                    ]
                }
            )
        if "send_time" not in attrs:
            raise serializers.ValidationError(
                {
                    "send_time": [
                        serializers.ErrorDetail("Required for a scheduled campaign.", code="required")
                    ]
                }
            )
        needs = {
            ScheduleKind.ONCE: "send_date",
            ScheduleKind.ANNUALLY: "send_date",
            ScheduleKind.WEEKLY: "weekdays",
            ScheduleKind.MONTHLY: "month_days",
        }.get(kind)
        if needs and not attrs.get(needs):
            raise serializers.ValidationError(
                {needs: [serializers.ErrorDetail(f"Required for a {kind} schedule.", code="required")]}
            )
        for name in ("send_date", "weekdays", "month_days"):
            if name != needs and attrs.get(name):
                raise serializers.ValidationError({name: [f"Not used by a {kind} schedule; leave it out."]})
        if attrs.get("zone") and attrs.get("zone_mode", ZoneMode.GLOBAL) == ZoneMode.LOCAL:
            raise serializers.ValidationError(
                {"zone": ["In per-user local mode each user's own zone is used (the tenant's when unknown)."]}
            )

    def model_fields(self, *, language: str) -> dict:
        """The validated campaign as Campaign's own fields (services.create/update_campaign)."""
        data = dict(self.validated_data)
        audience = data.pop("audience", None) or {"kind": AudienceKind.ALL}
        fields = {
            "name": data["name"],
            "description": data.get("description", ""),
            "kind": data["kind"],
            "content": stored_content(data["content"], language=language),
            "content_mode": data.get("content_mode", ContentMode.ROTATE),
            "ab_test": dict(data["ab_test"]) if data.get("ab_test") else {},
            "audience": audience.get("kind", AudienceKind.ALL),
            "segment_id": audience.get("segment_id"),
            "rules": audience.get("rules") or {},
            "cooldown": data.get("cooldown", Cooldown.DAY),
            "quiet_hours_action": data.get("quiet_hours_action", QuietHoursAction.DEFER),
            # The other kind's fields are cleared: a campaign is one kind at a time.
            "trigger_event": data.get("trigger_event", ""),
            "trigger_params": data.get("trigger_params", []),
            "delay_seconds": data.get("delay_seconds", 0),
            "cancel_event": data.get("cancel_event", ""),
            "schedule_kind": data.get("schedule_kind", ""),
            "send_time": data.get("send_time"),
            "send_date": data.get("send_date"),
            "weekdays": data.get("weekdays", []),
            "month_days": data.get("month_days", []),
            "zone_mode": data.get("zone_mode", ZoneMode.GLOBAL),
            "zone": data.get("zone", ""),
        }
        return fields


def campaign_input(campaign: Campaign) -> dict:
    """A stored campaign as the API writes it: the base an update is laid over."""
    out = {
        "name": campaign.name,
        "description": campaign.description,
        "kind": campaign.kind,
        "content": content_input(campaign.content or {}),
        "content_mode": campaign.content_mode,
        "audience": audience_output(campaign),
        "cooldown": campaign.cooldown,
        "quiet_hours_action": campaign.quiet_hours_action,
    }
    if campaign.content_mode == ContentMode.AB_TEST and campaign.ab_test:
        out["ab_test"] = campaign.ab_test
    if campaign.kind == Kind.TRIGGERED:
        out.update(
            trigger_event=campaign.trigger_event,
            trigger_params=campaign.trigger_params or [],
            delay_seconds=campaign.delay_seconds,
            cancel_event=campaign.cancel_event,
        )
    else:
        out.update(
            schedule_kind=campaign.schedule_kind,
            zone_mode=campaign.zone_mode,
            zone=campaign.zone,
        )
        if campaign.send_time is not None:
            out["send_time"] = campaign.send_time.strftime("%H:%M")
        if campaign.send_date is not None:
            out["send_date"] = campaign.send_date.isoformat()
        if campaign.weekdays:
            out["weekdays"] = list(campaign.weekdays)
        if campaign.month_days:
            out["month_days"] = list(campaign.month_days)
    return out


def merged_input(campaign: Campaign, patch: dict) -> dict:
    """The campaign's fields with a PATCH laid over them (top-level keys replace). A change of
    kind drops the old kind's fields; a new schedule_kind drops the dates of the old one."""
    base = campaign_input(campaign)
    if "kind" in patch and patch["kind"] != base["kind"]:
        for name in (*TRIGGER_FIELDS, *SCHEDULE_FIELDS, "content_mode", "ab_test"):
            base.pop(name, None)
    if "schedule_kind" in patch and patch["schedule_kind"] != base.get("schedule_kind"):
        for name in ("send_date", "weekdays", "month_days"):
            base.pop(name, None)
    if "content_mode" in patch and patch["content_mode"] != ContentMode.AB_TEST:
        base.pop("ab_test", None)
    if isinstance(patch.get("audience"), dict):
        base.pop("audience", None)
    return {**base, **patch}


def audience_output(campaign: Campaign) -> dict:
    out = {"kind": campaign.audience}
    if campaign.audience == AudienceKind.SEGMENT:
        out["segment_id"] = campaign.segment_id
    elif campaign.audience == AudienceKind.RULES:
        out["rules"] = campaign.rules
    return out


# --- Errors with their paths -----------------------------------------------------------------


def first_error(detail, path: str = "") -> tuple[str, str, str]:
    """The first problem in a DRF error tree: (path like content.variants[1].title, text, code)."""
    if isinstance(detail, dict):
        key, value = next(iter(detail.items()))
        if key in ("non_field_errors", "__all__"):
            return first_error(value, path)
        step = (
            f"[{key}]"
            if isinstance(key, int) or (isinstance(key, str) and key.isdigit() and path)
            else (f".{key}" if path else str(key))
        )
        return first_error(value, f"{path}{step}")
    if isinstance(detail, list) and detail:
        if all(isinstance(item, (str, serializers.ErrorDetail)) for item in detail):
            return path, str(detail[0]), getattr(detail[0], "code", "invalid")
        for index, item in enumerate(detail):
            if item:
                return first_error(item, f"{path}[{index}]")
    return path, str(detail), getattr(detail, "code", "invalid")


def validated(serializer: serializers.Serializer) -> serializers.Serializer:
    """Run a serializer; a fault is an ApiError naming the full path of the first problem."""
    if not serializer.is_valid():
        path, text, code = first_error(serializer.errors)
        raise ApiError(
            f"{path}: {text}" if path else text,
            code="missing_field" if code in ("required", "null") else "invalid_field",
            field=path or None,
        )
    return serializer


# --- Output -----------------------------------------------------------------------------------


class CampaignSerializer(serializers.ModelSerializer):
    audience = serializers.SerializerMethodField()
    content = serializers.SerializerMethodField()
    schedule_kind = serializers.CharField(
        read_only=True, help_text="once, daily, weekly, monthly or annually; empty for a triggered campaign."
    )
    send_time = WallTimeField(read_only=True, allow_null=True)
    send_date = ScheduleDateField(read_only=True, allow_null=True)
    trigger_params = serializers.JSONField(read_only=True)
    weekdays = serializers.ListField(child=serializers.IntegerField(), read_only=True)
    month_days = serializers.ListField(child=serializers.IntegerField(), read_only=True)
    ab_test = serializers.DictField(read_only=True)

    class Meta:
        model = Campaign
        fields = [
            "id",
            "name",
            "description",
            "kind",
            "status",
            "version",
            "content",
            "content_mode",
            "ab_test",
            "audience",
            "cooldown",
            "quiet_hours_action",
            "trigger_event",
            "trigger_params",
            "delay_seconds",
            "cancel_event",
            "schedule_kind",
            "send_time",
            "send_date",
            "weekdays",
            "month_days",
            "zone_mode",
            "zone",
            "next_run_at",
            "created_at",
            "updated_at",
            "activated_at",
            "paused_at",
            "archived_at",
        ]
        read_only_fields = fields

    @extend_schema_field(
        {
            "type": "object",
            "properties": {
                "kind": {"type": "string", "enum": [c.value for c in AudienceKind]},
                "segment_id": {"type": "integer"},
                "rules": RULES_SCHEMA | {"additionalProperties": True},
            },
            "required": ["kind"],
        }
    )
    def get_audience(self, campaign) -> dict:
        return audience_output(campaign)

    @extend_schema_field(
        {
            "type": "object",
            "description": "language (the tenant's default when made), variants, and the push options.",
            "additionalProperties": True,
        }
    )
    def get_content(self, campaign) -> dict:
        return campaign.content


class VariantStatsSerializer(serializers.Serializer):
    variant = serializers.IntegerField(allow_null=True, help_text="0 is the first variant (A).")
    sent = serializers.IntegerField()
    failed = serializers.IntegerField()
    opened = serializers.IntegerField()


class RunStatsSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    occurrence = serializers.DateField(help_text="The occurrence's local date.")
    due_at = serializers.DateTimeField()
    state = serializers.CharField()
    zones = serializers.ListField(child=serializers.CharField())
    recipients = serializers.IntegerField()
    skipped = serializers.IntegerField()


class HealthPartSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="delivery, opens, active or skips.")
    points = serializers.FloatField()
    max = serializers.IntegerField()
    ok = serializers.BooleanField()
    text = serializers.CharField(help_text='e.g. "Open rate 2.1 % is below the tenant\'s median 4.8 %".')


class HealthSerializer(serializers.Serializer):
    score = serializers.IntegerField(allow_null=True, help_text="0–100; null with too little data.")
    band = serializers.CharField(help_text="Excellent, Good, Needs work, Critical, or Too little data.")
    parts = HealthPartSerializer(many=True)
    summary = serializers.CharField()


class CampaignStatsSerializer(serializers.Serializer):
    users_sent = serializers.IntegerField(help_text="Users the campaign reached.")
    users_deferred = serializers.IntegerField(help_text="Users waiting for their quiet hours to end.")
    users_skipped = serializers.IntegerField()
    skipped = serializers.DictField(child=serializers.IntegerField(), help_text="Users skipped, by reason.")
    messages = serializers.IntegerField(help_text="Messages (sends) the campaign made.")
    sent = serializers.IntegerField(help_text="Deliveries FCM accepted.")
    failed = serializers.IntegerField()
    opened = serializers.IntegerField()
    open_rate = serializers.FloatField(allow_null=True)
    pending_triggers = serializers.IntegerField(help_text="Triggered sends waiting for their delay.")
    per_variant = VariantStatsSerializer(many=True)
    per_run = RunStatsSerializer(many=True, help_text="Scheduled waves, by due time.")
    health = HealthSerializer(help_text="The health score (README, Campaigns): score, band, parts.")


def content_variants(campaign: Campaign) -> list[message_content.VariantInput]:
    """The campaign's variants as the composer's VariantInput (for previews)."""
    out = []
    for v in (campaign.content or {}).get("variants", []):
        out.append(
            message_content.VariantInput(
                content=message_content.Content(
                    v.get("title", ""), v.get("body", ""), v.get("image_url", ""), v.get("click_link", "")
                ),
                localizations={
                    lang: message_content.Content(
                        c.get("title", ""), c.get("body", ""), c.get("image_url", ""), c.get("click_link", "")
                    )
                    for lang, c in v.get("localizations", {}).items()
                },
            )
        )
    return out
