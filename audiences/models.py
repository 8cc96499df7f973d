from django.conf import settings
from django.db import models
from django.utils import timezone

from tenants.models import Tenant


def no_rules() -> dict:
    return {"version": 1, "include": [], "exclude": []}


class SegmentQuerySet(models.QuerySet):
    def for_tenant(self, tenant):
        return self.filter(tenant=tenant)


class Segment(models.Model):
    """A saved audience: a rule document (see audiences.rules) evaluated when it is used."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="segments")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, max_length=2000)
    # Saved as audiences.rules.parse normalised it, but an older row or an operator's edit may
    # hold less or other: read it through audiences.rules.stored, never as it is.
    rules = models.JSONField(default=no_rules)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )

    objects = SegmentQuerySet.as_manager()

    class Meta:
        ordering = ["name", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="segment_name_unique_per_tenant"),
        ]

    def __str__(self) -> str:
        return self.name
