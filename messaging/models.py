import base64
import re
import secrets
import threading
import zoneinfo
from datetime import UTC, datetime, timedelta
from datetime import timezone as fixed_offset

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac

from api.fields import ReadableDateTimeField
from devices.models import Device
from tenants.models import Tenant

MAX_TTL = timedelta(weeks=4)  # FCM keeps a message at most four weeks


def new_tracking_token() -> str:
    """A random token, as deliveries were given before their tokens were derived from
    their ids (the early migrations name this function)."""
    return secrets.token_urlsafe(16)


# A derived token: the delivery's id encrypted, so that nothing is stored or indexed for it and
# an install cannot read off it how many deliveries the server has made (the id in the clear
# did). One AES block, the id's 8 bytes (big-endian) and 8 zero bytes, under a key derived from
# SECRET_KEY: 22 URL-safe base64 characters, which a Web Push Topic takes. The zero half
# authenticates it: a forged or altered token decrypts to it once in 2**64.
_DERIVED_TOKEN = re.compile(r"[A-Za-z0-9_-]{21}[AQgw]")  # 16 bytes: the last character holds 4 bits
# The tokens derived before (still in pushes on devices): the id in the clear and a MAC of it.
_SIGNED_TOKEN = re.compile(r"([1-9][0-9]{0,18})_([A-Za-z0-9_-]{16})")
_TOKEN_SALT = "herald.messaging.tracking_token"
_ZERO_HALF = bytes(8)
_token_ciphers = threading.local()


def _token_cipher(secret: str):
    """This thread's (encryptor, decryptor) under secret's token key. ECB over a single block
    is the bare block cipher: no IV, the same id always gives the same token (a resend's
    collapse key). A context costs ~11 µs to make and ~1 µs a block, so each thread keeps its
    own (they are not shared between threads)."""
    contexts = getattr(_token_ciphers, "by_secret", None)
    if contexts is None or len(contexts) > 8:  # SECRET_KEY and its fallbacks; tests change them
        contexts = _token_ciphers.by_secret = {}
    pair = contexts.get(secret)
    if pair is None:
        key = salted_hmac(_TOKEN_SALT + ".aes", "key", secret=secret, algorithm="sha256").digest()[:16]
        cipher = Cipher(algorithms.AES(key), modes.ECB())  # one block: see above
        pair = contexts[secret] = (cipher.encryptor(), cipher.decryptor())
    return pair


def derived_tracking_token(delivery_id: int) -> str:
    """The tracking token of a delivery that has none stored: its id, encrypted (see above)."""
    block = _token_cipher(settings.SECRET_KEY)[0].update(delivery_id.to_bytes(8, "big") + _ZERO_HALF)
    return base64.urlsafe_b64encode(block).decode().rstrip("=")


def _signed_token_mac(delivery_id: int, secret: str) -> str:
    digest = salted_hmac(_TOKEN_SALT, str(delivery_id), secret=secret, algorithm="sha256").digest()
    return base64.urlsafe_b64encode(digest[:12]).decode()


def delivery_id_of(tracking_token: str) -> int | None:
    """The delivery id a derived tracking token stands for, if it is one (made with SECRET_KEY
    or one of SECRET_KEY_FALLBACKS, now or in the earlier signed form); None for any other
    string, a stored random token included (but once in 2**64)."""
    secrets_in_use = (settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS)
    if _DERIVED_TOKEN.fullmatch(tracking_token):
        block = base64.urlsafe_b64decode(tracking_token + "==")
        for secret in secrets_in_use:
            plain = _token_cipher(secret)[1].update(block)
            if plain[8:] == _ZERO_HALF:
                delivery_id = int.from_bytes(plain[:8], "big")
                return delivery_id if 0 < delivery_id < 2**63 else None
        return None
    match = _SIGNED_TOKEN.fullmatch(tracking_token)
    if match is None:
        return None
    delivery_id = int(match[1])
    for secret in secrets_in_use:
        if constant_time_compare(match[2], _signed_token_mac(delivery_id, secret)):
            return delivery_id
    return None


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
        raise ValidationError(
            "Enter a full link with its scheme, like https://example.com/sale or myapp://sale.",
            code="invalid_link",
        )
    scheme = match["scheme"].lower()
    if scheme in FORBIDDEN_LINK_SCHEMES:
        raise ValidationError(
            f"{scheme}: links are not allowed; use https:// or your app's own scheme.",
            code="forbidden_scheme",
        )
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
    SEGMENT = "segment", "A saved segment"
    RULES = "rules", "Ad-hoc segment rules"
    # The users listed in MessageRecipient rows (a campaign's send), each with its variant.
    RECIPIENTS = "recipients", "Listed users (a campaign send)"


class VariantMode(models.TextChoices):
    SPLIT = "split", "Split: each user gets one variant"
    AB_TEST = "ab_test", "A/B test, then the winner to the rest"


MAX_VARIANTS = 5
MAX_EXTRA_LANGUAGES = 31


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
        CAMPAIGN = "campaign", "Campaign"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="messages")
    title = models.CharField(max_length=200)
    body = models.TextField(max_length=2000)
    image_url = models.URLField(max_length=1000, blank=True)
    click_link = models.CharField(
        max_length=1000,
        blank=True,
        validators=[validate_link],
        help_text="An http(s) URL or an app deep link (myshop://sale/flash).",
    )
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
        max_length=64,
        blank=True,
        help_text="The zone schedule_at was written in: an IANA name (the composer) or an offset "
        "such as +03:00 (the API), so pages show 09:00 Europe/Istanbul, not 06:00 UTC.",
    )
    ttl_seconds = models.PositiveIntegerField(default=int(MAX_TTL.total_seconds()))
    dry_run = models.BooleanField(default=False, help_text="Validate every message with FCM, deliver none.")
    # Localizations and variants (messaging.content): title, body, image_url and click_link
    # above are variant 0 in `language`; the other variants and languages are MessageContent rows.
    language = models.CharField(
        max_length=2,
        blank=True,
        help_text="ISO 639-1: the language of the content above, the fallback for users whose "
        "language the message lacks (the tenant's default language when created).",
    )
    variant_count = models.PositiveSmallIntegerField(default=1)
    variant_mode = models.CharField(max_length=8, choices=VariantMode.choices, default=VariantMode.SPLIT)

    status = models.CharField(max_length=32, choices=Status.choices, default=Status.DRAFT)
    error = models.TextField(blank=True)
    targeted_count = models.PositiveIntegerField(default=0)
    sent_count = models.PositiveIntegerField(default=0)
    # A dry run's deliveries FCM accepted (validate_only): checked, never delivered.
    validated_count = models.PositiveIntegerField(default=0)
    failed_count = models.PositiveIntegerField(default=0)
    opened_count = models.PositiveIntegerField(default=0)

    source = models.CharField(max_length=16, choices=Source.choices, default=Source.API)
    # Transactional pushes (an order shipped, a receipt: /developer/push, API messages that
    # say so) are exempt from the tenant's marketing frequency cap and quiet hours.
    transactional = models.BooleanField(default=False)
    # Devices the marketing limits kept from this message, by reason: {"frequency_cap": n,
    # "quiet_hours_deferred": n} (deferred devices are sent when the quiet hours end).
    skipped = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    # NULL, not "", when absent: the unique constraint must ignore messages without a key.
    idempotency_key = models.CharField(max_length=300, null=True, blank=True)  # noqa: DJ001
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    fanned_out_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    # Retention removes a finished message's deliveries after a while; their failures by
    # error code are kept here, so the message still says how it went.
    deliveries_pruned_at = models.DateTimeField(null=True, blank=True)
    pruned_error_counts = models.JSONField(default=dict, blank=True)
    # When the message-wide task queued for it (a retry, or herald_beat's recovery) is due;
    # NULL when none is queued. Claimed with a conditional UPDATE, so that at most one such
    # task waits in the queue per message, however many workers or beat passes ask for one.
    task_due_at = models.DateTimeField(null=True, blank=True, editable=False)

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
            models.CheckConstraint(
                condition=Q(variant_count__gte=1, variant_count__lte=MAX_VARIANTS),
                name="message_variant_count_1_5",
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

    # No index of its own: the unique constraint and delivery_work_idx lead with message_id.
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="deliveries", db_index=False)
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
    # The random token of a delivery written before tokens were derived from ids; blank for
    # the others, which then need no entry in its unique index (`tracking_token`).
    stored_tracking_token = models.CharField(max_length=32, blank=True, db_column="tracking_token")
    opened_at = models.DateTimeField(null=True, blank=True)
    # What this device was sent, set at fan-out: the per-variant and per-language statistics.
    variant = models.PositiveSmallIntegerField(default=0)
    language = models.CharField(max_length=2, blank=True)

    objects = DeliveryQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(fields=["message", "device"], name="delivery_unique_message_device"),
            models.UniqueConstraint(
                fields=["stored_tracking_token"],
                name="delivery_unique_stored_tracking_token",
                condition=~Q(stored_tracking_token=""),
            ),
        ]
        indexes = [
            models.Index(fields=["message", "status", "next_attempt_at"], name="delivery_work_idx"),
            models.Index(
                fields=["status", "next_attempt_at"],
                name="delivery_due_idx",
                condition=Q(status__in=["pending", "retrying"]),
            ),
            # The dashboard's days of sent and validated deliveries (`sent_at >= start`); the
            # rows not sent yet (every row as the fan-out writes it) need no entry.
            models.Index(fields=["sent_at"], name="delivery_sent_idx", condition=Q(sent_at__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"{self.message_id}→{self.device_id}: {self.status}"

    @property
    def tracking_token(self) -> str:
        """The token in this delivery's push data, which the app posts back when it is opened."""
        return self.stored_tracking_token or derived_tracking_token(self.pk)

    @tracking_token.setter
    def tracking_token(self, value: str) -> None:
        self.stored_tracking_token = value


class MessageContent(models.Model):
    """What one variant of a message says in one language, besides the message's own fields
    (variant 0 in the message's language). Rows, not a JSON document: per-language and
    per-variant questions ("which messages speak Turkish", a campaign copying its content
    into a message) are plain queries, and the unique constraint keeps one text per slot."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="contents")
    variant = models.PositiveSmallIntegerField(default=0)
    language = models.CharField(max_length=2)
    title = models.CharField(max_length=200)
    body = models.TextField(max_length=2000)
    image_url = models.URLField(max_length=1000, blank=True)
    click_link = models.CharField(max_length=1000, blank=True, validators=[validate_link])

    class Meta:
        ordering = ["variant", "language"]
        constraints = [
            models.UniqueConstraint(
                fields=["message", "variant", "language"], name="message_content_unique_slot"
            ),
            models.CheckConstraint(condition=Q(variant__lt=MAX_VARIANTS), name="message_content_variant_0_4"),
        ]

    def __str__(self) -> str:
        return f"{self.message_id} variant {self.variant} [{self.language}]"


class AbTest(models.Model):
    """An A/B test of a message's variants: the test group gets them evenly, and once the wait
    is over the winner goes to everyone else (messaging.variants decides; the rules are in the
    README). `winner` is set exactly once, by a conditional UPDATE."""

    class Metric(models.TextChoices):
        OPEN_RATE = "open_rate", "Open rate"

    class Reason(models.TextChoices):
        BEST_RATE = "best_rate", "Best open rate"
        TIE = "tie", "Tied best open rate: the lowest variant"
        TOO_FEW_OPENS = "too_few_opens", "Too few opens: the fallback variant"
        MANUAL = "manual", "Picked by hand"

    message = models.OneToOneField(
        Message, on_delete=models.CASCADE, primary_key=True, related_name="ab_test"
    )
    test_percent = models.PositiveSmallIntegerField(
        default=20, help_text="Share of the audience in the test."
    )
    wait_seconds = models.PositiveIntegerField(
        default=3600, help_text="From the test's fan-out to the winner."
    )
    metric = models.CharField(max_length=16, choices=Metric.choices, default=Metric.OPEN_RATE)
    min_opens = models.PositiveIntegerField(
        default=10, help_text="Fewer opens than this in the whole test: the fallback variant wins."
    )
    fallback_variant = models.PositiveSmallIntegerField(default=0)
    test_sent_at = models.DateTimeField(null=True, blank=True, help_text="The test group's fan-out ended.")
    decide_at = models.DateTimeField(null=True, blank=True)
    winner = models.PositiveSmallIntegerField(null=True, blank=True)
    reason = models.CharField(max_length=16, choices=Reason.choices, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    # The test's figures when the winner was chosen: [{"variant", "sent", "opened"}, ...].
    tally = models.JSONField(default=list, blank=True)

    class Meta:
        verbose_name = "A/B test"
        constraints = [
            models.CheckConstraint(
                condition=Q(test_percent__gte=1, test_percent__lte=99), name="ab_test_percent_1_99"
            ),
            models.CheckConstraint(
                condition=Q(fallback_variant__lt=MAX_VARIANTS), name="ab_test_fallback_0_4"
            ),
        ]
        indexes = [
            models.Index(fields=["decide_at"], name="ab_test_due_idx", condition=Q(winner__isnull=True))
        ]

    def __str__(self) -> str:
        return f"A/B test of message {self.message_id}"


class SnapshotDevice(models.Model):
    """A device a segment or rules message reaches, written down as its fan-out begins
    (`services.snapshot_audience`): the message's audience at its send time, read by every
    task of the fan-out in device-id order (`selectors.message_devices`), deleted when the
    fan-out is done. The device is not a constraint (no lock on each device row as a
    million are written); a device deleted meanwhile simply drops out of the join."""

    pk = models.CompositePrimaryKey("message_id", "device_id")  # the only index it needs
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="+", db_index=False)
    device = models.ForeignKey(
        Device, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="snapshots"
    )

    def __str__(self) -> str:
        return f"{self.message_id} → device {self.device_id}"


class MessageRecipient(models.Model):
    """A user a message of the "recipients" audience goes to (a campaign's send), and the
    variant that user gets (NULL: the message's own split or A/B test decides)."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="recipients")
    user = models.ForeignKey("devices.AppUser", on_delete=models.CASCADE, related_name="+")
    variant = models.PositiveSmallIntegerField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["message", "user"], name="message_recipient_unique"),
            models.CheckConstraint(
                condition=Q(variant__lt=MAX_VARIANTS), name="message_recipient_variant_0_4"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.message_id} → user {self.user_id}"


class MarketingDay(models.Model):
    """How many marketing pushes a user was given on one local day: the frequency cap's counter.

    One row per user and day, raised by a conditional upsert (`messaging.limits`), so two
    workers granting the last slot at once cannot both get it."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey("devices.AppUser", on_delete=models.CASCADE, related_name="+")
    day = models.DateField(help_text="The user's local date.")
    count = models.PositiveSmallIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "day"], name="marketing_day_unique"),
        ]
        indexes = [models.Index(fields=["day"], name="marketing_day_prune_idx")]

    def __str__(self) -> str:
        return f"user {self.user_id} on {self.day}: {self.count}"


class MarketingPush(models.Model):
    """One marketing message counted against a user's day: a message counts once per user,
    however many of the user's devices or fan-out chunks it reaches."""

    user = models.ForeignKey("devices.AppUser", on_delete=models.CASCADE, related_name="+")
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["message", "user"], name="marketing_push_unique"),
        ]
        indexes = [models.Index(fields=["day"], name="marketing_push_prune_idx")]

    def __str__(self) -> str:
        return f"message {self.message_id} counted for user {self.user_id} on {self.day}"
