"""Reads: which devices a message reaches, and the staff dashboard's activity per day.

The dashboard's charts are drawn by `messaging.charts`.
"""

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from django.db import connection
from django.db.models import BooleanField, Count, F, FilteredRelation, OuterRef, Q, QuerySet, Subquery
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from audiences import rules as rule_doc
from audiences import selectors as audience_selectors
from devices.models import Device, Platform, TokenRotation, hash_token
from messaging import charts, fcm
from messaging.models import Audience, Delivery, Message, MessageRecipient

# Audiences whose devices a fan-out writes down once (SnapshotDevice rows) as it begins.
SNAPSHOT_AUDIENCES = (Audience.SEGMENT, Audience.RULES)


def audience_devices(*, tenant, audience: str, params: dict, now=None) -> QuerySet[Device]:
    """The targetable devices of an audience (none for topics and conditions: FCM fans those out),
    narrowed by its listed users or tokens and its optional filters.

    A segment's or ad-hoc rules' membership is evaluated at `now` (the send time), in the query;
    stored rules that cannot be used raise UnusableAudience.
    """
    devices = Device.objects.targetable().filter(tenant=tenant)
    if audience in (Audience.TOPIC, Audience.CONDITION, Audience.RECIPIENTS):
        return devices.none()  # recipients: see message_devices
    if audience in (Audience.SEGMENT, Audience.RULES):
        rules = _rules(tenant=tenant, audience=audience, params=params)
        if rules is None:  # the segment was deleted: nobody
            return devices.none()
        devices = audience_selectors.devices_matching(tenant, rules, now)
    if audience == Audience.USERS:
        devices = devices.filter(user__app_user_id__in=params.get("app_user_ids") or [])
    elif audience == Audience.TOKENS:
        devices = devices.filter(token_hash__in=[hash_token(t) for t in params.get("tokens") or []])
    if params.get("platforms"):
        devices = devices.filter(platform__in=params["platforms"])
    if params.get("countries"):
        devices = devices.filter(user__country__in=params["countries"])
    if params.get("languages"):
        devices = devices.filter(user__language__in=params["languages"])
    return devices


def message_devices(message: Message) -> QuerySet[Device]:
    """The devices a message's fan-out reads, ordered and paged by `page_key(message)`.

    A campaign's send reaches the devices of the users it lists (MessageRecipient rows). A
    segment or rules message reaches the devices written down as its fan-out began
    (`services.snapshot_audience`): every bounded fan-out task reads the same devices, and
    none evaluates a rule again; those still targetable, as always."""
    if message.audience == Audience.RECIPIENTS:
        return Device.objects.targetable().filter(listed_user(message.pk), tenant_id=message.tenant_id)
    if message.audience in SNAPSHOT_AUDIENCES:
        member = FilteredRelation("snapshots", condition=Q(snapshots__message_id=message.pk))
        return (
            Device.objects.targetable()
            .annotate(member=member)
            .filter(tenant_id=message.tenant_id, member__isnull=False)
        )
    return audience_devices(
        tenant=message.tenant,
        audience=message.audience,
        params=message.audience_params,
        now=message.started_at,
    )


def page_key(message: Message) -> str:
    """The lookup a fan-out pages `message_devices` by ("<key>__gt" the last device id read).
    A snapshot's pages are bounded on the snapshot's own column, which its primary key
    (message, device) orders: a page then reads its next rows there and joins each to its
    device, however sparse the audience is among the tenant's devices. (PostgreSQL carries
    `id = device_id` into the ORDER BY, not `id > n` into the snapshot's scan.)"""
    return "member__device_id" if message.audience in SNAPSHOT_AUDIENCES else "pk"


def listed_user(message_id: int) -> RawSQL:
    """Whether a device's user is listed for the message (a campaign's send): one probe of
    MessageRecipient's unique (message, user) index per device. On PostgreSQL `OFFSET 0`
    keeps it a probe: the planner would otherwise join the message's whole list first (with
    no statistics for rows written a moment ago, by a full scan of the table) and sort, for
    every page the fan-out reads, where the probe lets a page read devices in id order and
    stop at its size."""
    fence = " OFFSET 0" if connection.vendor == "postgresql" else ""
    table = connection.ops.quote_name(MessageRecipient._meta.db_table)
    devices = connection.ops.quote_name(Device._meta.db_table)
    return RawSQL(
        f"EXISTS (SELECT 1 FROM {table} listed WHERE listed.message_id = %s "  # noqa: S608
        f"AND listed.user_id = {devices}.user_id{fence})",
        [message_id],
        output_field=BooleanField(),
    )


class UnusableAudience(ValueError):
    """A segment or rules audience whose stored rules cannot be used (audiences.rules.stored):
    it reaches nobody until they are corrected. The message says whose rules and the fault."""


def _rules(*, tenant, audience: str, params: dict) -> dict | None:
    """A rules audience's document, or its segment's (None: no such segment any more), read
    as stored rules are; raises UnusableAudience when they cannot be used."""
    try:
        if audience == Audience.RULES:
            return rule_doc.stored(params.get("rules"))
        return audience_selectors.segment_rules(tenant=tenant, segment_id=params.get("segment_id"))
    except rule_doc.RuleError as exc:
        whose = "segment's" if audience == Audience.SEGMENT else "message's"
        raise UnusableAudience(f"The {whose} saved rules cannot be used ({exc})") from None


def listed_variant(message: Message) -> Subquery:
    """A device's variant as its user's MessageRecipient row says (NULL: the message's split)."""
    return Subquery(
        MessageRecipient.objects.filter(message_id=message.pk, user_id=OuterRef("user_id")).values("variant")[
            :1
        ]
    )


def delivered_devices(message_id: int, *, first: int, last: int) -> set[int]:
    """The devices with ids from `first` to `last` that a message has a delivery for: one
    range of the deliveries' unique (message, device) index, whatever the message's size."""
    return set(
        Delivery.objects.filter(message_id=message_id, device_id__gte=first, device_id__lte=last).values_list(
            "device_id", flat=True
        )
    )


def user_variants(message_id: int, user_ids: list[int]) -> dict[int, int]:
    """The variant a message gave each of these users that it reached (on any device): a
    probe of the deliveries' unique index per device of theirs, never a scan of the
    message's deliveries."""
    if not user_ids:
        return {}
    sent = Delivery.objects.filter(message_id=message_id, device_id=OuterRef("pk")).values("variant")[:1]
    rows = (
        Device.objects.filter(user_id__in=user_ids)
        .annotate(variant=Subquery(sent))
        .filter(variant__isnull=False)
        .values_list("user_id", "variant")
    )
    return dict(rows)


def audience_size(*, tenant, audience: str, params: dict) -> int | None:
    """How many devices an audience reaches now; None when FCM decides (topic, condition).
    Raises UnusableAudience when a segment's or rules audience's stored rules cannot be used."""
    if audience in (Audience.TOPIC, Audience.CONDITION):
        return None
    with audience_selectors.jit_off():
        return audience_devices(tenant=tenant, audience=audience, params=params).count()


def audience_users(*, tenant, audience: str, params: dict) -> int | None:
    """How many app users a segment or rules audience matches now (None for other audiences),
    counted as the segment editor counts them: matching users, with or without a pushable device.
    Raises UnusableAudience as `audience_size` does."""
    if audience not in (Audience.SEGMENT, Audience.RULES):
        return None
    rules = _rules(tenant=tenant, audience=audience, params=params)
    if rules is None:
        return 0
    with audience_selectors.jit_off():
        return audience_selectors.users_matching(tenant, rules).count()


def error_breakdown(message: Message) -> dict[str, int]:
    """Failed deliveries of a message counted by FCM error code."""
    rows = (
        message.deliveries.filter(status="failed").values("error_code").annotate(n=Count("id")).order_by("-n")
    )
    counts = dict(message.pruned_error_counts or {})  # of deliveries retention removed
    for row in rows:
        code = row["error_code"] or "UNKNOWN"
        counts[code] = counts.get(code, 0) + row["n"]
    return dict(sorted(counts.items(), key=lambda item: -item[1]))


# --- The staff dashboard: activity per day over a period, for a set of tenants ---------

PERIODS = (7, 30, 90)
DEFAULT_PERIOD = 30


@dataclass
class PlatformCount:
    platform: str
    label: str
    active: int
    targetable: int
    share: float  # of all active devices, 0–100


@dataclass
class Dashboard:
    days: list[date]
    messages: int
    sent: int
    failed: int
    validated: int  # dry runs' deliveries FCM accepted: checked, not delivered
    opened: int
    success_rate: float | None
    open_rate: float | None
    active_devices: int
    targetable_devices: int
    rotations: int
    deactivations: int
    platforms: list[PlatformCount]
    deactivation_reasons: list[tuple[str, int]]
    recent: list[Message]
    charts: dict = field(default_factory=dict)


def _per_day(queryset, when, start, tz) -> dict[date, int]:
    rows = (
        queryset.annotate(when=when)
        .filter(when__gte=start)
        .annotate(day=TruncDate("when", tzinfo=tz))
        .values("day")
        .annotate(n=Count("pk"))
        .order_by()
    )
    return {row["day"]: row["n"] for row in rows}


def dashboard(*, tenant_ids: list[int], days: int = DEFAULT_PERIOD) -> Dashboard:
    """Messages, deliveries, opens, devices, rotations and deactivations of the tenants,
    per day over the last `days` days (today included, in the current time zone)."""
    tz = timezone.get_current_timezone()
    today = timezone.localdate()
    first = today - timedelta(days=days - 1)
    start = datetime.combine(first, time.min, tzinfo=tz)
    day_list = [first + timedelta(days=i) for i in range(days)]

    messages = Message.objects.filter(tenant_id__in=tenant_ids)
    # A dry run delivers nothing: its deliveries are counted apart, as validations.
    tried = Delivery.objects.filter(message__tenant_id__in=tenant_ids)
    deliveries = tried.filter(message__dry_run=False)
    devices = Device.objects.filter(tenant_id__in=tenant_ids)

    messages_by_day = _per_day(messages, F("created_at"), start, tz)
    sent_by_day = _per_day(deliveries.filter(status=Delivery.Status.SENT), F("sent_at"), start, tz)
    # A failed delivery has no time of its own; its last attempt was scheduled for
    # next_attempt_at. Cancelled ones were never tried and are not failures of delivery.
    failed_by_day = _per_day(
        deliveries.filter(status=Delivery.Status.FAILED).exclude(error_code=fcm.CANCELLED),
        Coalesce("sent_at", "next_attempt_at"),
        start,
        tz,
    )
    validated_by_day = _per_day(tried.filter(status=Delivery.Status.VALIDATED), F("sent_at"), start, tz)
    opened_by_day = _per_day(deliveries.filter(opened_at__isnull=False), F("opened_at"), start, tz)
    rotations_by_day = _per_day(
        TokenRotation.objects.filter(device__tenant_id__in=tenant_ids), F("rotated_at"), start, tz
    )
    deactivated_by_day = _per_day(devices.filter(is_active=False), F("deactivated_at"), start, tz)

    def series(counts):
        return [counts.get(d, 0) for d in day_list]

    sent, failed = series(sent_by_day), series(failed_by_day)
    rate = [round(100 * s / (s + f), 1) if s + f else None for s, f in zip(sent, failed, strict=True)]
    total_sent, total_failed = sum(sent), sum(failed)
    total_opened = sum(opened_by_day.values())

    by_platform = (
        devices.filter(is_active=True)
        .values("platform")
        .annotate(active=Count("pk"), targetable=Count("pk", filter=Q(push_permission=True)))
        .order_by()
    )
    platform_rows = {row["platform"]: row for row in by_platform}
    active = sum(row["active"] for row in platform_rows.values())
    platforms = [
        PlatformCount(
            platform=value,
            label=label,
            active=platform_rows.get(value, {}).get("active", 0),
            targetable=platform_rows.get(value, {}).get("targetable", 0),
            share=100 * platform_rows.get(value, {}).get("active", 0) / active if active else 0,
        )
        for value, label in Platform.choices
    ]
    reasons = list(
        devices.filter(is_active=False, deactivated_at__gte=start)
        .values_list("deactivation_reason")
        .annotate(n=Count("pk"))
        .order_by("-n")[:6]
    )

    board = Dashboard(
        days=day_list,
        messages=sum(messages_by_day.values()),
        sent=total_sent,
        failed=total_failed,
        validated=sum(validated_by_day.values()),
        opened=total_opened,
        success_rate=100 * total_sent / (total_sent + total_failed) if total_sent + total_failed else None,
        open_rate=100 * total_opened / total_sent if total_sent else None,
        active_devices=active,
        targetable_devices=sum(p.targetable for p in platforms),
        rotations=sum(rotations_by_day.values()),
        deactivations=sum(deactivated_by_day.values()),
        platforms=platforms,
        deactivation_reasons=[(r or "unknown", n) for r, n in reasons],
        recent=list(messages.composed().select_related("tenant")[:6]),
    )
    board.charts = {
        "messages": charts.bar_chart(
            days=day_list,
            label="Messages per day",
            empty="No messages in this period",
            series=[charts.Series("messages", "hc-primary", series(messages_by_day))],
        ),
        "deliveries": charts.bar_chart(
            days=day_list,
            label="Deliveries per day, sent and failed (dry runs apart)",
            empty="No deliveries in this period",
            series=[
                charts.Series("sent", "hc-ok", sent),
                charts.Series("failed", "hc-bad", failed),
                charts.Series("validated (dry run)", "hc-primary", series(validated_by_day)),
            ],
        ),
        "success": charts.line_chart(
            days=day_list,
            label="Delivery success rate per day",
            percent=True,
            bridge_gaps=True,
            empty="No deliveries in this period",
            series=[charts.Series("delivered", "hc-ok", rate)],
        ),
        "opens": charts.bar_chart(
            days=day_list,
            label="Opens per day",
            empty="No opens in this period",
            series=[charts.Series("opens", "hc-accent", series(opened_by_day))],
        ),
        "devices": charts.bar_chart(
            days=day_list,
            label="Token rotations and deactivations per day",
            stacked=False,
            empty="No rotations or deactivations in this period",
            series=[
                charts.Series("token rotations", "hc-primary", series(rotations_by_day)),
                charts.Series("deactivations", "hc-bad", series(deactivated_by_day)),
            ],
        ),
    }
    return board


# --- Per language and per variant ------------------------------------------------------


@dataclass
class ContentStat:
    """One language's or one variant's figures; open_rate is opened/sent, `sent` its sample."""

    key: str | int
    sent: int
    failed: int
    opened: int
    pending: int

    @property
    def open_rate(self) -> float | None:
        return self.opened / self.sent if self.sent else None


def content_stats(message: Message) -> dict[str, list[ContentStat]]:
    """Sent, failed, opened and pending deliveries of a message by language and by variant:
    one GROUP BY over the message's deliveries. Every variant is listed, sent or not."""
    rows = list(
        message.deliveries.values("language", "variant")
        .annotate(
            sent=Count("pk", filter=Q(status=Delivery.Status.SENT)),
            failed=Count("pk", filter=Q(status=Delivery.Status.FAILED)),
            opened=Count("pk", filter=Q(opened_at__isnull=False)),
            pending=Count("pk", filter=Q(status__in=[Delivery.Status.PENDING, Delivery.Status.RETRYING])),
        )
        .order_by()
    )
    languages: dict[str, ContentStat] = {}
    variants = {i: ContentStat(i, 0, 0, 0, 0) for i in range(message.variant_count)}
    for row in rows:
        for key, bucket in ((row["language"] or message.language, languages), (row["variant"], variants)):
            stat = bucket.setdefault(key, ContentStat(key, 0, 0, 0, 0))
            stat.sent += row["sent"]
            stat.failed += row["failed"]
            stat.opened += row["opened"]
            stat.pending += row["pending"]
    ordered = sorted(languages.values(), key=lambda s: (s.key != message.language, -s.sent, s.key))
    return {"languages": ordered, "variants": [variants[k] for k in sorted(variants)]}
