import hashlib
import json

from django.db import models
from django.utils import timezone


def hash_target(target: str) -> str:
    """Tokens can be 4 KB long, too long for a PostgreSQL btree: index their hash."""
    return hashlib.sha256(target.encode()).hexdigest()


class SandboxServiceAccount(models.Model):
    """A service-account key the sandbox's token endpoint trusts (its public half)."""

    client_email = models.CharField(max_length=254)
    key_id = models.CharField(max_length=100)
    project_id = models.CharField(max_length=100)
    public_key_pem = models.TextField()
    token_uri = models.CharField(max_length=500)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "sandbox service account"
        constraints = [
            models.UniqueConstraint(fields=["client_email", "key_id"], name="sandbox_account_key_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.client_email} ({self.project_id})"


class SandboxMessage(models.Model):
    """A message the sandbox accepted for delivery: what the target device would receive."""

    class TargetKind(models.TextChoices):
        TOKEN = "token", "Registration token"
        FID = "fid", "Firebase installation ID"
        TOPIC = "topic", "Topic"
        CONDITION = "condition", "Condition"

    name = models.CharField(max_length=300, unique=True)  # projects/{p}/messages/{id}
    project_id = models.CharField(max_length=100)
    sender = models.CharField(max_length=254)  # the service account's client_email
    target_kind = models.CharField(max_length=10, choices=TargetKind.choices)
    target = models.TextField()
    target_hash = models.CharField(max_length=64, editable=False)
    # What a phone would show, taken from the notification block or, for data-only
    # messages, from data["title"] and data["body"].
    title = models.TextField(blank=True)
    body = models.TextField(blank=True)
    data_only = models.BooleanField(default=True)
    message = models.JSONField()  # as received, field names in camelCase
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]
        verbose_name = "sandbox message"
        indexes = [
            models.Index(fields=["target_hash", "id"], name="sandbox_message_target_idx"),
            models.Index(fields=["received_at"], name="sandbox_message_time_idx"),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):
        self.target_hash = hash_target(self.target)
        super().save(*args, **kwargs)

    @property
    def pretty_message(self) -> str:
        return json.dumps(self.message, indent=2, ensure_ascii=False)

    def as_json(self) -> dict:
        """What the inbox JSON endpoint (and the device simulator) sees of a message."""
        return {
            "id": self.pk,
            "name": self.name,
            "project_id": self.project_id,
            "target_kind": self.target_kind,
            "target": self.target,
            "received_at": self.received_at.isoformat(),
            "title": self.title,
            "body": self.body,
            "data_only": self.data_only,
            "data": self.message.get("data", {}),
            "message": self.message,
        }
