"""Campaigns listen to the rooms below them (tenant deactivation, recorded events)."""

from django.dispatch import receiver

from campaigns import services
from tenants.signals import tenant_deactivated


@receiver(tenant_deactivated, dispatch_uid="herald-pause-tenant-campaigns")
def pause_tenant_campaigns(
    sender=None, *, tenant, reason: str = "The tenant was deactivated.", **kwargs
) -> int:
    """A deactivated tenant's active campaigns are paused, saying why; resuming them is the
    staff's choice once the tenant is active again."""
    return services.pause_tenant_campaigns(tenant=tenant, reason=reason)
