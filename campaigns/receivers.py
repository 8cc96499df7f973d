"""Campaigns listen to the rooms below them (tenant deactivation, recorded events)."""

import logging

from django.dispatch import receiver
from django.utils import timezone

from campaigns import scheduler, services
from campaigns.signals import campaign_changed
from tenants.signals import tenant_deactivated

log = logging.getLogger("herald.campaigns")


@receiver(tenant_deactivated, dispatch_uid="herald-pause-tenant-campaigns")
def pause_tenant_campaigns(
    sender=None, *, tenant, reason: str = "The tenant was deactivated.", **kwargs
) -> int:
    """A deactivated tenant's active campaigns are paused, saying why; resuming them is the
    staff's choice once the tenant is active again."""
    return services.pause_tenant_campaigns(tenant=tenant, reason=reason)


@receiver(campaign_changed, dispatch_uid="herald-plan-scheduled-campaign")
def plan_scheduled_campaign(sender=None, *, campaign, what: str, **kwargs) -> None:
    """Plan (or re-plan) a scheduled campaign as soon as it is activated, resumed or edited.
    Only a head start: if this fails, herald_beat plans it on its next pass."""
    try:
        # The moment of the change (tests inject it), else the clock.
        scheduler.campaign_changed(campaign, what=what, now=campaign.updated_at or timezone.now())
    except Exception:
        log.exception("could not plan campaign %s after it was %s", campaign.pk, what)
        type(campaign).objects.filter(pk=campaign.pk).update(planned_at=None)
