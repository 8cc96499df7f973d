"""Campaign lifecycle (camp-ui's stand-in for camp-core's services until that branch merges;
the names and signatures are the design's, so the merge takes camp-core's file whole)."""

from dataclasses import dataclass, field

from django.db import IntegrityError, transaction
from django.db.models import Count, Sum
from django.utils import timezone

from campaigns.models import Campaign, CampaignRecipient, CampaignRun, CampaignSend, CampaignVersion, Status


class CampaignError(Exception):
    """An illegal lifecycle transition, or a change a campaign in its state cannot take."""


class DuplicateName(CampaignError):
    pass


@dataclass
class DispatchResult:
    sent: int = 0
    skipped: dict = field(default_factory=dict)
    message: object = None


def _snapshot(campaign: Campaign) -> dict:
    from campaigns.serializers import CampaignSerializer

    return dict(CampaignSerializer(campaign).data)


def create_campaign(*, tenant, fields: dict, created_by=None) -> Campaign:
    """A draft campaign with its first version."""
    try:
        with transaction.atomic():
            campaign = Campaign.objects.create(tenant=tenant, created_by=created_by, **fields)
            CampaignVersion.objects.create(
                campaign=campaign, number=1, snapshot=_snapshot(campaign), created_by=created_by
            )
    except IntegrityError:
        raise DuplicateName(f"A campaign named {fields.get('name')!r} exists already.") from None
    return campaign


def update_campaign(*, campaign: Campaign, fields: dict, updated_by=None) -> Campaign:
    """Change a campaign's settings; a new version when anything changed."""
    if campaign.status == Status.ARCHIVED:
        raise CampaignError("An archived campaign cannot be changed.")
    changed = {k: v for k, v in fields.items() if getattr(campaign, k) != v}
    if not changed:
        return campaign
    try:
        with transaction.atomic():
            for key, value in changed.items():
                setattr(campaign, key, value)
            campaign.version += 1
            campaign.updated_at = timezone.now()
            campaign.save()
            CampaignVersion.objects.create(
                campaign=campaign,
                number=campaign.version,
                snapshot=_snapshot(campaign),
                created_by=updated_by,
            )
    except IntegrityError:
        raise DuplicateName(f"A campaign named {fields.get('name')!r} exists already.") from None
    return campaign


def _move(campaign: Campaign, *, to: str, allowed: tuple, stamp: str, verb: str) -> Campaign:
    now = timezone.now()
    updated = Campaign.objects.filter(pk=campaign.pk, status__in=allowed).update(
        **{"status": to, "updated_at": now, stamp: now}
    )
    if not updated:
        campaign.refresh_from_db(fields=["status"])
        raise CampaignError(f"A {campaign.get_status_display().lower()} campaign cannot be {verb}.")
    campaign.refresh_from_db()
    return campaign


def activate(campaign: Campaign) -> Campaign:
    return _move(campaign, to=Status.ACTIVE, allowed=(Status.DRAFT,), stamp="activated_at", verb="activated")


def pause(campaign: Campaign) -> Campaign:
    return _move(campaign, to=Status.PAUSED, allowed=(Status.ACTIVE,), stamp="paused_at", verb="paused")


def resume(campaign: Campaign) -> Campaign:
    return _move(campaign, to=Status.ACTIVE, allowed=(Status.PAUSED,), stamp="updated_at", verb="resumed")


def archive(campaign: Campaign) -> Campaign:
    return _move(
        campaign,
        to=Status.ARCHIVED,
        allowed=(Status.DRAFT, Status.ACTIVE, Status.PAUSED),
        stamp="archived_at",
        verb="archived",
    )


def campaign_stats(campaign: Campaign, since=None) -> dict:
    """Sent, opened, failed, skipped by reason, per variant and per run."""
    rows = CampaignRecipient.objects.filter(campaign=campaign)
    sends = CampaignSend.objects.filter(campaign=campaign)
    if since is not None:
        rows = rows.filter(created_at__gte=since)
        sends = sends.filter(created_at__gte=since)
    skipped = dict(
        rows.filter(state=CampaignRecipient.State.SKIPPED)
        .values_list("reason")
        .annotate(n=Count("id"))
        .values_list("reason", "n")
    )
    totals = sends.aggregate(
        opened=Sum("message__opened_count"),
        failed=Sum("message__failed_count"),
        sent=Sum("message__sent_count"),
    )
    per_variant = [
        {"variant": v, "sent": n, "opened": 0}
        for v, n in rows.filter(state=CampaignRecipient.State.SENT)
        .values_list("variant")
        .annotate(n=Count("id"))
        .values_list("variant", "n")
        .order_by("variant")
    ]
    runs = [
        {
            "id": r.pk,
            "occurrence": r.occurrence.isoformat(),
            "due_at": r.due_at.isoformat(),
            "zones": r.zones,
            "state": r.state,
            "recipients": r.recipients,
            "skipped": r.skipped,
        }
        for r in CampaignRun.objects.filter(campaign=campaign).order_by("-due_at")[:50]
    ]
    return {
        "sent": rows.filter(state=CampaignRecipient.State.SENT).count(),
        "delivered": totals["sent"] or 0,
        "opened": totals["opened"] or 0,
        "failed": totals["failed"] or 0,
        "deferred": rows.filter(state=CampaignRecipient.State.DEFERRED).count(),
        "skipped": skipped,
        "per_variant": per_variant,
        "runs": runs,
    }
