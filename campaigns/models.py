"""Campaigns: pushes that send themselves, on an event (triggered) or on a schedule.

A campaign holds its current settings; every edit that changes what is sent makes a new
CampaignVersion (a frozen copy of the settings), and every send records the version it used.
Each send is an ordinary messaging.Message (source "campaign") whose audience is the users
listed for it (messaging's "recipients" audience), so message pages, the API and the charts
work for campaign sends too. CampaignRecipient is the per-user ledger: one row per campaign,
occurrence and user, sent or skipped with its reason; its unique constraint is what makes a
trigger occurrence or a schedule occurrence reach a user at most once.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from devices.models import AppUser, Event
from messaging.models import MAX_VARIANTS, Message
from tenants.models import Tenant

MAX_TRIGGER_DELAY_SECONDS = 30 * 24 * 3600


class Kind(models.TextChoices):
    TRIGGERED = "triggered", "Triggered by an event"
    SCHEDULED = "scheduled", "On a schedule"


class Status(models.TextChoices):
    DRAFT = "draft", "Draft"
    ACTIVE = "active", "Active"
    PAUSED = "paused", "Paused"
    ARCHIVED = "archived", "Archived"


class Cooldown(models.TextChoices):
    """How soon a user may receive the same campaign again."""

    MINUTES_5 = "5m", "5 minutes"
    HOUR = "1h", "1 hour"
    DAY = "1d", "1 day"
    WEEK = "1w", "1 week"
    DAYS_30 = "30d", "30 days"
    ONCE = "once", "Once ever"


COOLDOWN_SECONDS = {"5m": 300, "1h": 3600, "1d": 86400, "1w": 7 * 86400, "30d": 30 * 86400, "once": None}


class AudienceKind(models.TextChoices):
    ALL = "all", "Everyone"
    SEGMENT = "segment", "A saved segment"
    RULES = "rules", "Rules"


class ContentMode(models.TextChoices):
    ROTATE = "rotate", "Rotate: each user gets the next variant each time"
    SPLIT = "split", "Split: each user gets one variant"  # scheduled only
    AB_TEST = "ab_test", "A/B test, then the winner"  # scheduled only


class ScheduleKind(models.TextChoices):
    ONCE = "once", "Once"
    DAILY = "daily", "Daily"
    WEEKLY = "weekly", "Weekly"
    MONTHLY = "monthly", "Monthly"
    ANNUALLY = "annually", "Annually"


class ZoneMode(models.TextChoices):
    GLOBAL = "global", "One instant for everyone, in a named zone"
    LOCAL = "local", "The same wall-clock time in each user's own zone"


class QuietHoursAction(models.TextChoices):
    DEFER = "defer", "Send at the end of the quiet hours"
    DROP = "drop", "Drop the send"


class SkipReason(models.TextChoices):
    COOLDOWN = "cooldown", "Cooldown"
    FREQUENCY_CAP = "frequency_cap", "Frequency cap"
    QUIET_HOURS = "quiet_hours", "Quiet hours (dropped)"
    CANCELLED = "cancelled", "Cancel event happened"
    AUDIENCE = "audience", "No longer in the audience"
    NO_DEVICE = "no_device", "No device that allows pushes"
    PAUSED = "paused", "Campaign paused or archived when due"


class CampaignQuerySet(models.QuerySet):
    def for_tenant(self, tenant):
        return self.filter(tenant=tenant)

    def active(self):
        return self.filter(status=Status.ACTIVE)


class Campaign(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="campaigns")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, max_length=2000)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    version = models.PositiveIntegerField(default=1, help_text="The current CampaignVersion's number.")

    # Content, as a message's: {"language": "en", "variants": [{"title", "body", "image_url",
    # "click_link", "localizations": {"tr": {...}}}, ...]} (1 to MAX_VARIANTS variants), plus
    # the push options a Message takes (data, priority, data_only, options, ttl_seconds).
    content = models.JSONField(default=dict)
    content_mode = models.CharField(max_length=8, choices=ContentMode.choices, default=ContentMode.ROTATE)
    ab_test = models.JSONField(
        default=dict, blank=True, help_text="AbTest settings when content_mode is ab_test."
    )

    # Audience, checked when each send is due.
    audience = models.CharField(max_length=8, choices=AudienceKind.choices, default=AudienceKind.ALL)
    segment = models.ForeignKey(
        "audiences.Segment", null=True, blank=True, on_delete=models.PROTECT, related_name="campaigns"
    )
    rules = models.JSONField(default=dict, blank=True, help_text="An audiences.rules document.")

    cooldown = models.CharField(max_length=4, choices=Cooldown.choices, default=Cooldown.DAY)
    quiet_hours_action = models.CharField(
        max_length=8, choices=QuietHoursAction.choices, default=QuietHoursAction.DEFER
    )

    # Triggered campaigns.
    trigger_event = models.CharField(max_length=200, blank=True)
    trigger_params = models.JSONField(
        default=list, blank=True, help_text="Param filters, as in segment event rules."
    )
    delay_seconds = models.PositiveIntegerField(default=0)
    cancel_event = models.CharField(
        max_length=200, blank=True, help_text="Drop the pending send if this event happens within the delay."
    )

    # Scheduled campaigns.
    schedule_kind = models.CharField(max_length=10, choices=ScheduleKind.choices, blank=True)
    send_time = models.TimeField(null=True, blank=True, help_text="Wall-clock time of each occurrence.")
    send_date = models.DateField(null=True, blank=True, help_text="Once: the date; annually: month and day.")
    weekdays = models.JSONField(default=list, blank=True, help_text="Weekly: 0 = Monday … 6 = Sunday.")
    month_days = models.JSONField(default=list, blank=True, help_text="Monthly: 1–31.")
    zone_mode = models.CharField(max_length=8, choices=ZoneMode.choices, default=ZoneMode.GLOBAL)
    zone = models.CharField(
        max_length=64, blank=True, help_text="Global mode's IANA zone (tenant's if blank)."
    )
    # When the next occurrence's first send is due (its earliest wave): the list and the beat.
    next_run_at = models.DateTimeField(null=True, blank=True, editable=False)
    # When the scheduler last planned this campaign's waves (null: plan at the next beat, as
    # after activation or a schedule edit). It re-plans every few minutes, to give zones
    # users have moved to since a wave of their own.
    planned_at = models.DateTimeField(null=True, blank=True, editable=False)

    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now, editable=False)
    activated_at = models.DateTimeField(null=True, blank=True, editable=False)
    # When it last became active (activated or resumed): events before it trigger nothing.
    live_since = models.DateTimeField(null=True, blank=True, editable=False)
    # Why it was last paused or archived, when the system did it ("The tenant was deactivated.").
    status_reason = models.CharField(max_length=200, blank=True, editable=False)
    paused_at = models.DateTimeField(null=True, blank=True, editable=False)
    archived_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )

    objects = CampaignQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="campaign_name_unique_per_tenant"),
            models.CheckConstraint(
                condition=Q(delay_seconds__lte=MAX_TRIGGER_DELAY_SECONDS), name="campaign_delay_max_30_days"
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "status", "kind"], name="campaign_tenant_status_idx"),
            models.Index(fields=["next_run_at"], name="campaign_next_run_idx", condition=Q(status="active")),
            models.Index(
                fields=["tenant", "trigger_event"],
                name="campaign_trigger_idx",
                condition=Q(status="active", kind="triggered"),
            ),
        ]

    def __str__(self) -> str:
        return self.name


class CampaignVersion(models.Model):
    """The settings a campaign had from `created_at` on: what its sends of this number used."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    snapshot = models.JSONField(help_text="The campaign's settings as serialized for the API.")
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["campaign", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "number"], name="campaign_version_unique_number"),
        ]

    def __str__(self) -> str:
        return f"{self.campaign_id} v{self.number}"


class CampaignSend(models.Model):
    """One Message a campaign made: a batch of due triggers, or one wave of an occurrence."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="sends")
    message = models.OneToOneField(Message, on_delete=models.CASCADE, related_name="campaign_send")
    version = models.PositiveIntegerField()
    run = models.ForeignKey(
        "CampaignRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="sends"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["campaign", "-created_at"], name="campaign_send_recent_idx")]

    def __str__(self) -> str:
        return f"{self.campaign_id} → message {self.message_id}"


class PendingTrigger(models.Model):
    """An event that matched a triggered campaign: a send due at `due_at` unless cancelled.

    Unique per campaign and event: the same event (idempotent by fingerprint) seen twice, or
    by two workers, makes one row, so one send."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        DONE = "done", "Done"  # its CampaignRecipient row says sent or skipped, and why

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="pending_triggers")
    user = models.ForeignKey(AppUser, on_delete=models.CASCADE, related_name="+")
    event = models.ForeignKey(Event, null=True, on_delete=models.SET_NULL, related_name="+")
    event_at = models.DateTimeField(help_text="When the triggering event occurred.")
    version = models.PositiveIntegerField()
    due_at = models.DateTimeField()
    state = models.CharField(max_length=8, choices=State.choices, default=State.PENDING)
    claimed_until = models.DateTimeField(null=True, blank=True)
    claim = models.CharField(max_length=32, blank=True, help_text="The claiming worker's token.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["campaign", "event"], name="pending_trigger_once_per_event"),
        ]
        indexes = [
            models.Index(fields=["due_at"], name="pending_trigger_due_idx", condition=Q(state="pending")),
        ]

    def __str__(self) -> str:
        return f"{self.campaign_id} for user {self.user_id} at {self.due_at:%Y-%m-%d %H:%M}"


class EventCursor(models.Model):
    """How far the trigger matcher has read a tenant's events (by Event.id)."""

    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, primary_key=True, related_name="+")
    last_event_id = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.tenant_id} at event {self.last_event_id}"


class CampaignRun(models.Model):
    """One wave of one occurrence of a scheduled campaign: the users whose zones put the
    occurrence's wall-clock time at `due_at` (one wave, zones ["*"], in global mode).
    Unique per campaign, occurrence and instant; claimed once."""

    class State(models.TextChoices):
        PLANNED = "planned", "Planned"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        SKIPPED = "skipped", "Skipped (paused or archived when due)"

    class SkipReason(models.TextChoices):
        PAUSED = "paused", "The campaign was paused when the wave was due"
        ARCHIVED = "archived", "The campaign was archived when the wave was due"
        RESCHEDULED = "rescheduled", "The schedule changed: no longer a wave of it"

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="runs")
    occurrence = models.DateField(help_text="The occurrence's local date.")
    due_at = models.DateTimeField()
    zones = models.JSONField(
        default=list, help_text="IANA zones in this wave; users without one use the default."
    )
    state = models.CharField(max_length=8, choices=State.choices, default=State.PLANNED)
    skip_reason = models.CharField(max_length=12, choices=SkipReason.choices, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    version = models.PositiveIntegerField(null=True, blank=True)
    recipients = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["campaign", "due_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "occurrence", "due_at"], name="campaign_run_once_per_wave"
            ),
        ]
        indexes = [models.Index(fields=["due_at"], name="campaign_run_due_idx", condition=Q(state="planned"))]

    def __str__(self) -> str:
        return f"{self.campaign_id} {self.occurrence} @ {self.due_at:%Y-%m-%d %H:%M}"


class CampaignRecipient(models.Model):
    """The per-user ledger: a campaign reached (or skipped) a user for one occurrence.

    `occurrence` is "e<event id>" for a trigger and the ISO local date for a schedule, so a
    user gets one send per trigger event and one per scheduled occurrence, whichever wave or
    worker gets there first. Cooldowns and variant rotation read the user's latest sent row."""

    class State(models.TextChoices):
        SENT = "sent", "Sent"
        DEFERRED = "deferred", "Deferred to the end of quiet hours"
        SKIPPED = "skipped", "Skipped"

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="recipients")
    user = models.ForeignKey(AppUser, on_delete=models.CASCADE, related_name="+")
    occurrence = models.CharField(max_length=32)
    state = models.CharField(max_length=8, choices=State.choices)
    reason = models.CharField(max_length=16, choices=SkipReason.choices, blank=True)
    variant = models.PositiveSmallIntegerField(null=True, blank=True)
    version = models.PositiveIntegerField()
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    due_at = models.DateTimeField(null=True, blank=True, help_text="Deferred: when quiet hours end.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "occurrence", "user"], name="campaign_recipient_once_per_occurrence"
            ),
            models.CheckConstraint(
                condition=Q(variant__lt=MAX_VARIANTS), name="campaign_recipient_variant_0_4"
            ),
        ]
        indexes = [
            # Cooldown and rotation: this user's latest send of this campaign.
            models.Index(
                fields=["campaign", "user", "-created_at"],
                name="campaign_recipient_last_idx",
                condition=Q(state="sent"),
            ),
            models.Index(fields=["campaign", "state", "reason"], name="campaign_recipient_tally_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.campaign_id} {self.occurrence} user {self.user_id}: {self.state}"


class CampaignLastSend(models.Model):
    """When a campaign last reached a user, and with which variant: the cooldown and rotation.

    One row per campaign and user, moved on by a conditional upsert (`... ON CONFLICT DO
    UPDATE ... WHERE sent_at <= cooldown's start`), so two workers sending the same
    campaign to the same user at once serialize on the row and the second finds it in its
    cooldown: race-proof on PostgreSQL, where reading the latest CampaignRecipient row is not."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(AppUser, on_delete=models.CASCADE, related_name="+")
    sent_at = models.DateTimeField()
    variant = models.PositiveSmallIntegerField(default=0)
    sends = models.PositiveIntegerField(default=1)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["campaign", "user"], name="campaign_last_send_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.campaign_id} → user {self.user_id} at {self.sent_at:%Y-%m-%d %H:%M}"
