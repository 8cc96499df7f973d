import re
import secrets
import zoneinfo
from datetime import UTC, datetime, timedelta
from datetime import timezone as fixed_offset

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from api.fields import ReadableDateTimeField
from devices.models import Device
from tenants.models import Tenant

MAX_TTL = timedelta(weeks=4)  # FCM keeps a message at most four weeks


def new_tracking_token() -> str:
    return secrets.token_urlsafe(16)


# Schemes that run code or read local files where a link is opened (a web push, a WebView).
FORBIDDEN_LINK_SCHEMES = {"javascript", "data", "vbscript", "file"}
_LINK = re.compile(r"^(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*):(?P<rest>.+)$", re.DOTALL)
_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")


def validate_link(value: str) -> None:
    """A link a push opens: an http(s) URL, or an app's deep link such as myshop://sale/flash.

    The one rule for the composer, the API and the model. Any scheme an app may register
    is accepted, except those in FORBIDDEN_LINK_SCHEMES; http and https must be valid URLs.
    """
    if _SPACE_OR_CONTROL.search(value):
        raise ValidationError("A link has no spaces or control characters.", code="invalid_link")
    match = _LINK.match(value)
    if not match:
        raise ValidationError("Enter a full link with its scheme, like https://example.com/sale "
                              "or myapp://sale.", code="invalid_link")
    scheme = match["scheme"].lower()
    if scheme in FORBIDDEN_LINK_SCHEMES:
        raise ValidationError(f"{scheme}: links are not allowed; use https:// or your app's own scheme.",
                              code="forbidden_scheme")
    if scheme in ("http", "https"):
        URLValidator(schemes=["http", "https"], message="Enter a valid http(s) URL.")(value)


_OFFSET = re.compile(r"^([+-])(\d{2}):(\d{2})$")


def zone_named(name: str):
    """A tzinfo for an IANA zone name or an offset like +03:00; UTC for "" or anything unknown."""
    if match := _OFFSET.match(name or ""):
        sign = -1 if match[1] == "-" else 1
        return fixed_offset(sign * timedelta(hours=int(match[2]), minutes=int(match[3])))
    try:
        return zoneinfo.ZoneInfo(name) if name else UTC
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return UTC


def zone_of(moment: datetime) -> str:
    """The zone a datetime was written in, as Message.schedule_tz stores it: its IANA name
    when it carries one, else its offset (+03:00), or "" for UTC."""
    if isinstance(moment.tzinfo, zoneinfo.ZoneInfo):
        return moment.tzinfo.key
    offset = moment.utcoffset() or timedelta(0)
    if not offset:
        return ""
    minutes = int(abs(offset).total_seconds()) // 60
    return f"{'-' if offset < timedelta(0) else '+'}{minutes // 60:02d}:{minutes % 60:02d}"


class Audience(models.TextChoices):
    ALL = "all", "All devices"
    FILTER = "filter", "Devices matching platform, country, language"
    USERS = "users", "App user ids"
    TOKENS = "tokens", "Explicit tokens"
    TOPIC = "topic", "FCM topic"
    CONDITION = "condition", "FCM condition"


class MessageQuerySet(models.QuerySet):
    def for_tenant(self, tenant):
        return self.filter(tenant=tenant)

    def composed(self):
        """Messages staff or a back end composed for an audience: not the one-user pushes of
        POST /developer/push (an order shipped, a receipt), which may come every few seconds."""
        return self.exclude(source=Message.Source.DEVELOPER_PUSH)


class Message(models.Model):
    """A push: what to say, to whom, when, and how it went."""

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        SCHEDULED = "scheduled", "Scheduled"
        SENDING = "sending", "Sending"
        COMPLETED = "completed", "Completed"
        COMPLETED_WITH_FAILURES = "completed_with_failures", "Completed with failures"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    FINAL = (Status.COMPLETED, Status.COMPLETED_WITH_FAILURES, Status.FAILED, Status.CANCELLED)
    CANCELLABLE = (Status.DRAFT, Status.SCHEDULED, Status.SENDING)

    class Source(models.TextChoices):
        API = "api", "Herald API"
        DEVELOPER_PUSH = "developer_push", "POST /developer/push"
        ADMIN = "admin", "Admin"
        COMMAND = "command", "manage.py send_push"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="messages")
    title = models.CharField(max_length=200)
    body = models.TextField(max_length=2000)
    image_url = models.URLField(max_length=1000, blank=True)
    click_link = models.CharField(max_length=1000, blank=True, validators=[validate_link],
                                  help_text="An http(s) URL or an app deep link (myshop://sale/flash).")
    data = models.JSONField(default=dict, blank=True, help_text="extra_data: string values only.")
    priority = models.PositiveSmallIntegerField(default=5, help_text="1–10; 7 and above is high.")
    data_only = models.BooleanField(
        default=True, help_text="Data-only (the app draws the notification) or a notification message."
    )
    # Platform options: android_channel, sound, badge, collapse_key, analytics_label.
    options = models.JSONField(default=dict, blank=True)
    audience = models.CharField(max_length=16, choices=Audience.choices, default=Audience.ALL)
    # The audience's parameters: platforms, countries, languages, app_user_ids, tokens,
    # topic or condition, as the audience kind needs.
    audience_params = models.JSONField(default=dict, blank=True)
    schedule_at = ReadableDateTimeField(null=True, blank=True)
    schedule_tz = models.CharField(
        max_length=64, blank=True,
        help_text="The zone schedule_at was written in: an IANA name (the composer) or an offset "
                  "such as +03:00 (the API), so pages show 09:00 Europe/Istanbul, not 06:00 UTC.")
    ttl_seconds = models.PositiveIntegerField(default=int(MAX_TTL.total_seconds()))
    dry_run = models.BooleanField(default=False, help_text="Validate every message with FCM, deliver none.")

    status = models.CharField(max_length=32, choices=Status.choices, default=Status.DRAFT)
    error = models.TextField(blank=True)
    targeted_count = models.PositiveIntegerField(default=0)
    sent_count = models.PositiveIntegerField(default=0)
    # A dry run's deliveries FCM accepted (validate_only): checked, never delivered.
    validated_count = models.PositiveIntegerField(default=0)
    failed_count = models.PositiveIntegerField(default=0)
    opened_count = models.PositiveIntegerField(default=0)

    source = models.CharField(max_length=16, choices=Source.choices, default=Source.API)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    # NULL, not "", when absent: the unique constraint must ignore messages without a key.
    idempotency_key = models.CharField(max_length=300, null=True, blank=True)  # noqa: DJ001
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    fanned_out_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)

    objects = MessageQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "idempotency_key"], name="message_idempotency_key_unique"
            ),
            models.CheckConstraint(
                condition=Q(priority__gte=1, priority__lte=10), name="message_priority_1_10"
            ),
            models.CheckConstraint(
                condition=Q(ttl_seconds__lte=int(MAX_TTL.total_seconds())), name="message_ttl_max_4_weeks"
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "-created_at"], name="message_tenant_recent_idx"),
            models.Index(fields=["status", "schedule_at"], name="message_status_schedule_idx"),
        ]

    def __str__(self) -> str:
        return self.title

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL

    @property
    def pending_count(self) -> int:
        return max(self.targeted_count - self.sent_count - self.validated_count - self.failed_count, 0)

    @property
    def open_rate(self) -> float | None:
        return self.opened_count / self.sent_count if self.sent_count else None

    @property
    def schedule_zone(self):
        """The tzinfo schedule_at was written in; UTC when unknown."""
        return zone_named(self.schedule_tz)

    @property
    def schedule_local(self) -> datetime | None:
        """schedule_at in the zone it was written in."""
        return self.schedule_at.astimezone(self.schedule_zone) if self.schedule_at else None

    @property
    def schedule_zone_label(self) -> str:
        tz = self.schedule_tz or "UTC"
        return f"UTC{tz}" if tz[:1] in "+-" else tz

    @property
    def deadline(self):
        """After this FCM would drop the message anyway: no retry goes past it."""
        return (self.started_at or self.created_at) + timedelta(seconds=self.ttl_seconds)


class DeliveryQuerySet(models.QuerySet):
    def unfinished(self):
        return self.filter(status__in=[Delivery.Status.PENDING, Delivery.Status.RETRYING])

    def unclaimed(self, now):
        """Deliveries no worker holds at `now`: never claimed, or the claim has run out."""
        return self.filter(models.Q(claimed_until__isnull=True) | models.Q(claimed_until__lt=now))


class Delivery(models.Model):
    """One message to one device (or, for topics and conditions, to FCM's fan-out)."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RETRYING = "retrying", "Retrying"
        SENT = "sent", "Sent"
        VALIDATED = "validated", "Validated (dry run)"
        FAILED = "failed", "Failed"

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="deliveries")
    # SET_NULL: a device merged away or deleted keeps its delivery history.
    device = models.ForeignKey(
        Device, null=True, blank=True, on_delete=models.SET_NULL, related_name="deliveries"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    # A worker owns a delivery while this lies in the future; a crashed worker's
    # claim simply runs out and the delivery is picked up again.
    claimed_until = models.DateTimeField(null=True, blank=True)
    claim = models.CharField(max_length=32, blank=True)
    fcm_message_name = models.CharField(max_length=300, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    error_detail = models.TextField(blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    tracking_token = models.CharField(max_length=32, unique=True, default=new_tracking_token)
    opened_at = models.DateTimeField(null=True, blank=True)

    objects = DeliveryQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(fields=["message", "device"], name="delivery_unique_message_device"),
        ]
        indexes = [
            models.Index(fields=["message", "status", "next_attempt_at"], name="delivery_work_idx"),
            models.Index(
                fields=["status", "next_attempt_at"], name="delivery_due_idx",
                condition=Q(status__in=["pending", "retrying"]),
            ),
            models.Index(fields=["sent_at"], name="delivery_sent_at_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.message_id}→{self.device_id}: {self.status}"


