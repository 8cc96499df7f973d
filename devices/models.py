import hashlib

from django.db import models
from django.utils import timezone as tz

from api.fields import ReadableDateTimeField
from devices.signals import devices_deactivated
from tenants.models import Tenant

MAX_TOKEN_LENGTH = 4096


def hash_token(token: str) -> str:
    """Tokens can be 4 KB long, too long for a PostgreSQL btree: unique-index their hash."""
    return hashlib.sha256(token.encode()).hexdigest()


class Platform(models.TextChoices):
    ANDROID = "android", "Android"
    IOS = "ios", "iOS"
    WEB = "web", "Web"


class AppUser(models.Model):
    """A user of a tenant's app, known by the app's own id or by an anonymous one Herald made."""

    # No index of its own: every index and unique constraint here leads with tenant (see Event).
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="app_users", db_index=False)
    app_user_id = models.CharField(max_length=255)
    is_anonymous = models.BooleanField(
        default=False, help_text="Herald generated the id because the app sent none."
    )
    language = models.CharField(max_length=2, blank=True)
    country = models.CharField(max_length=2, blank=True)
    timezone = models.CharField(max_length=64, blank=True)
    first_seen_at = models.DateTimeField(default=tz.now)
    last_seen_at = models.DateTimeField(default=tz.now)

    class Meta:
        verbose_name = "app user"
        constraints = [
            models.UniqueConstraint(fields=["tenant", "app_user_id"], name="app_user_unique_per_tenant"),
        ]

    def __str__(self) -> str:
        return self.app_user_id


# A device a push can reach: active, with the user's permission. The one definition, used by
# DeviceQuerySet.targetable() and Device.is_targetable.
TARGETABLE = {"is_active": True, "push_permission": True}


class DeviceQuerySet(models.QuerySet):
    def targetable(self):
        """Devices a push can reach: active, with the user's permission."""
        return self.filter(**TARGETABLE)

    def deactivate(self, *, reason: str, now=None) -> int:
        """Stop targeting the active devices among these; how many were. One UPDATE."""
        return self.filter(is_active=True).update(
            is_active=False, deactivated_at=now or tz.now(), deactivation_reason=reason[:64]
        )


class Device(models.Model):
    """One app install on one phone or browser, known by its current FCM token."""

    class TokenKind(models.TextChoices):
        REGISTRATION = "registration", "FCM registration token"
        FID = "fid", "Firebase installation ID"

    # No index of its own: every index and unique constraint here leads with tenant (see Event).
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="devices", db_index=False)
    user = models.ForeignKey(AppUser, on_delete=models.CASCADE, related_name="devices")
    token = models.TextField()
    token_hash = models.CharField(max_length=64, editable=False)
    token_kind = models.CharField(max_length=16, choices=TokenKind.choices, default=TokenKind.REGISTRATION)
    platform = models.CharField(max_length=10, choices=Platform.choices)
    push_permission = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)
    deactivated_at = models.DateTimeField(null=True, blank=True)
    deactivation_reason = models.CharField(max_length=64, blank=True)
    last_session_id = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=tz.now)
    last_seen_at = models.DateTimeField(default=tz.now)
    token_updated_at = models.DateTimeField(default=tz.now)

    objects = DeviceQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "token_hash"], name="device_token_unique_per_tenant"),
            models.CheckConstraint(
                condition=models.Q(platform__in=["android", "ios", "web"]), name="device_platform_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(is_active=True) | models.Q(deactivated_at__isnull=False),
                name="device_inactive_has_time",
            ),
        ]
        indexes = [
            # A fan-out pages through a tenant's targetable devices in id order: the index
            # gives that order, so the plan needs no statistics (a fresh table of a million
            # devices read every row per chunk without it).
            models.Index(
                fields=["tenant", "is_active", "push_permission", "id"], name="device_targetable_id_idx"
            ),
            models.Index(fields=["tenant", "last_seen_at"], name="device_last_seen_idx"),
            # Segment counts and rules (audiences.selectors), read from the index alone: the
            # targetable devices of each user, and each user's active devices by platform.
            models.Index(
                fields=["tenant", "user"],
                condition=models.Q(is_active=True, push_permission=True),
                name="device_targetable_user_idx",
            ),
            models.Index(
                fields=["user", "platform"],
                condition=models.Q(is_active=True),
                name="device_user_platform_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_platform_display()} …{self.token[-12:]}"

    def save(self, *args, **kwargs):
        self.token_hash = hash_token(self.token)
        super().save(*args, **kwargs)

    def set_token(self, token: str) -> None:
        self.token = token
        self.token_hash = hash_token(token)
        self.token_updated_at = tz.now()

    @property
    def is_targetable(self) -> bool:
        """Whether a push can reach this device (see TARGETABLE)."""
        return all(getattr(self, field) == value for field, value in TARGETABLE.items())

    def deactivate(self, *, reason: str) -> bool:
        """Stop targeting this device. Returns whether it was active (one conditional UPDATE)."""
        now = tz.now()
        changed = Device.objects.filter(pk=self.pk).deactivate(reason=reason, now=now)
        if changed:
            self.is_active, self.deactivated_at, self.deactivation_reason = False, now, reason[:64]
            devices_deactivated.send(
                sender=Device, tenant_id=self.tenant_id, device_ids=[self.pk], reason=reason[:64], at=now
            )
        return bool(changed)

    def reactivate(self) -> None:
        self.is_active = True
        self.deactivated_at = None
        self.deactivation_reason = ""


class TokenRotation(models.Model):
    """One swap of a device's token: the history behind POST /devices/refresh-token."""

    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="rotations")
    old_token = models.TextField()
    # Not indexed: the one lookup by it (a retried refresh) is among one device's rotations,
    # which the device_id index finds; its two indexes (plain and LIKE) cost every refresh two
    # index insertions of a 64-character key for nothing.
    old_token_hash = models.CharField(max_length=64)
    new_token = models.TextField()
    rotated_at = models.DateTimeField(default=tz.now)

    class Meta:
        ordering = ["-rotated_at", "-id"]
        indexes = [models.Index(fields=["rotated_at"], name="rotation_time_idx")]

    def __str__(self) -> str:
        return f"…{self.old_token[-12:]} → …{self.new_token[-12:]}"


class Event(models.Model):
    """Something a user did in the app, as POST /events reported it."""

    # No index of its own: the unique (tenant, fingerprint) and the indexes below all lead with
    # tenant, so they serve its lookups and cascades; one more index on it cost every /events
    # call an index insertion (the device's update too, which is never HOT: last_seen_at is
    # indexed) for nothing.
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="events", db_index=False)
    user = models.ForeignKey(AppUser, on_delete=models.CASCADE, related_name="events")
    device = models.ForeignKey(Device, on_delete=models.SET_NULL, null=True, related_name="events")
    name = models.CharField(max_length=200)
    occurred_at = ReadableDateTimeField()
    received_at = models.DateTimeField(default=tz.now)
    session_id = models.CharField(max_length=255)
    params = models.JSONField(default=dict, blank=True)
    fingerprint = models.CharField(max_length=64)

    class Meta:
        ordering = ["-occurred_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "fingerprint"], name="event_fingerprint_unique"),
        ]
        indexes = [
            models.Index(fields=["tenant", "name", "occurred_at"], name="event_name_time_idx"),
            # Retention deletes by arrival time, a batch at a time (messaging/retention.py).
            models.Index(fields=["tenant", "received_at"], name="event_tenant_received_idx"),
            # Segments ask "did this user do X (since T)?" for each user: audiences.selectors.
            models.Index(fields=["tenant", "user", "name", "occurred_at"], name="event_user_name_time_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.name} @ {self.occurred_at:%Y-%m-%d %H:%M}"
