"""Webhooks: a tenant's endpoints, the outbox of events for them, the batches posted, the attempts.

The outbox is the source of truth, as Delivery rows are for pushes: an Event row is
written in the transaction that caused it (or not at all), a Batch groups up to
WEBHOOKS_BATCH_SIZE of an endpoint's events into one signed POST, and every POST is an
Attempt. Tasks only nudge the work the rows describe.
"""

import base64
import secrets
from datetime import datetime, timedelta

from django.db import models
from django.utils import timezone

from tenants.encryption import decrypt, encrypt
from tenants.models import Tenant

SECRET_PREFIX = "whsec_"


class EventType(models.TextChoices):
    DELIVERY_SENT = "delivery.sent", "delivery.sent: FCM accepted a push for a device"
    DELIVERY_FAILED = "delivery.failed", "delivery.failed: a push failed for good (with the FCM error code)"
    PUSH_OPENED = "push.opened", "push.opened: the app reported a push opened"
    DEVICE_DEACTIVATED = "device.deactivated", "device.deactivated: Herald stopped targeting a device"
    DEVICE_TOKEN_ROTATED = "device.token_rotated", "device.token_rotated: a device's FCM token changed"
    MESSAGE_COMPLETED = "message.completed", "message.completed: a message finished sending"


# Sent only by "Send test event"; never subscribed to.
TEST_EVENT = "webhook.test"


def new_secret() -> str:
    """A Standard Webhooks signing secret: whsec_ and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def new_webhook_id() -> str:
    return "msg_" + secrets.token_urlsafe(18)


class EndpointQuerySet(models.QuerySet):
    def enabled(self):
        return self.filter(disabled_at__isnull=True)


class Endpoint(models.Model):
    """A URL of a tenant's back end that receives the events it subscribed to, signed."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.CharField("URL", max_length=2000, help_text="https:// only; Herald signs every POST.")
    description = models.CharField(max_length=200, blank=True)
    event_types = models.JSONField(default=list, help_text="The event types this endpoint receives.")
    encrypted_secret = models.TextField(editable=False)
    encrypted_previous_secret = models.TextField(editable=False, blank=True)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    # Failing and disabled: set by the sender, cleared by a success or by enabling again.
    disabled_at = models.DateTimeField(null=True, blank=True, editable=False)
    disabled_reason = models.CharField(max_length=300, blank=True, editable=False)
    consecutive_failures = models.PositiveIntegerField(default=0, editable=False)
    failing_since = models.DateTimeField(null=True, blank=True, editable=False)
    # After a failure the endpoint rests (exponential backoff) until this time.
    retry_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_success_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = EndpointQuerySet.as_manager()

    class Meta:
        ordering = ["tenant", "created_at", "id"]
        verbose_name = "webhook endpoint"
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(encrypted_secret=""), name="webhook_endpoint_has_secret"
            ),
        ]

    def __str__(self) -> str:
        return self.url

    @property
    def is_enabled(self) -> bool:
        return self.disabled_at is None

    def set_secret(
        self, secret: str, *, keep_previous_for: timedelta | None = None, now: datetime | None = None
    ) -> None:
        """Store a new secret (encrypted); keep the current one signing for a grace period."""
        now = now or timezone.now()
        if keep_previous_for and self.encrypted_secret:
            self.encrypted_previous_secret = self.encrypted_secret
            self.previous_secret_expires_at = now + keep_previous_for
        else:
            self.encrypted_previous_secret, self.previous_secret_expires_at = "", None
        self.encrypted_secret = encrypt(secret)

    def signing_secrets(self, *, now: datetime) -> list[str]:
        """The secrets every POST is signed with: the current one, and the previous one
        while its grace period lasts (Standard Webhooks allows several signatures)."""
        found = [decrypt(self.encrypted_secret)]
        if (
            self.encrypted_previous_secret
            and self.previous_secret_expires_at
            and self.previous_secret_expires_at > now
        ):
            found.append(decrypt(self.encrypted_previous_secret))
        return found

    def subscribes_to(self, event_type: str) -> bool:
        return event_type in self.event_types


class Batch(models.Model):
    """One POST's worth of an endpoint's events, with the webhook-id it is always sent with."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"

    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="batches")
    webhook_id = models.CharField("webhook-id", max_length=40, unique=True, default=new_webhook_id)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveIntegerField(default=0)
    delivered_at = models.DateTimeField(null=True, blank=True)
    # A sender's hold on the batch while it posts it (see services.deliver_endpoint).
    claimed_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name = "webhook batch"
        verbose_name_plural = "webhook batches"
        indexes = [
            models.Index(fields=["endpoint", "status", "id"], name="webhook_batch_queue_idx"),
            # The few batches not delivered yet, for the metrics' outbox gauges without
            # reading the delivered ones kept for WEBHOOKS_KEEP_DAYS.
            models.Index(
                fields=["id"], condition=models.Q(status="pending"), name="webhook_batch_pending_idx"
            ),
        ]

    def __str__(self) -> str:
        return self.webhook_id


class Event(models.Model):
    """One event for one endpoint: the outbox row, written with the change that caused it."""

    # No database constraint: recording runs inside the delivery path's transaction, which an
    # endpoint deleted at that moment must not fail (a foreign key is checked at COMMIT).
    # Rows of a deleted endpoint are never sent and are pruned (services.prune).
    endpoint = models.ForeignKey(
        Endpoint, on_delete=models.CASCADE, related_name="events", db_constraint=False
    )
    type = models.CharField(max_length=40)
    data = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)
    # Unbatched until a sender takes it; deleted with its batch when that is pruned.
    batch = models.ForeignKey(Batch, null=True, blank=True, on_delete=models.CASCADE, related_name="events")

    class Meta:
        ordering = ["-id"]
        verbose_name = "webhook event"
        indexes = [models.Index(fields=["endpoint", "batch", "id"], name="webhook_event_queue_idx")]

    def __str__(self) -> str:
        return f"{self.event_id} {self.type}"

    @property
    def event_id(self) -> str:
        return f"evt_{self.pk}"

    def as_payload(self) -> dict:
        return {
            "id": self.event_id,
            "type": self.type,
            "timestamp": rfc3339(self.created_at),
            "data": self.data,
        }


class Attempt(models.Model):
    """One POST to an endpoint: what came back (status, latency, error class), never the body."""

    class Trigger(models.TextChoices):
        AUTO = "auto", "Automatic"
        REPLAY = "replay", "Replay"
        TEST = "test", "Test event"

    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="attempts")
    batch = models.ForeignKey(Batch, null=True, on_delete=models.SET_NULL, related_name="attempt_log")
    attempted_at = models.DateTimeField(default=timezone.now)
    trigger = models.CharField(max_length=10, choices=Trigger.choices, default=Trigger.AUTO)
    event_count = models.PositiveIntegerField(default=0)
    ok = models.BooleanField(default=False)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(default=0)
    # "http_status" (a non-2xx answer, 3xx included), "timeout", "connect", "tls", "dns",
    # "unsafe_url", "protocol"; empty on success.
    error = models.CharField(max_length=20, blank=True)
    detail = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-attempted_at", "-id"]
        verbose_name = "webhook attempt"
        indexes = [models.Index(fields=["endpoint", "attempted_at"], name="webhook_attempt_time_idx")]

    def __str__(self) -> str:
        return f"{self.attempted_at:%Y-%m-%d %H:%M:%S} {self.status_code or self.error}"


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(timezone.UTC).isoformat().replace("+00:00", "Z")
