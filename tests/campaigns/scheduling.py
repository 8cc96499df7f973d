"""Small helpers for the scheduled-campaign tests: campaigns, users in zones, a beat pass."""

from datetime import UTC, datetime, time

import time_machine

from campaigns.models import Campaign, CampaignRecipient, CampaignRun
from campaigns.tasks import scheduled_campaigns_pass
from devices.models import AppUser, Device

CONTENT = {"language": "en", "variants": [{"title": "Good morning", "body": "Your daily digest"}]}


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def make_campaign(tenant, *, name="Digest", activated_at=None, status="active", **fields) -> Campaign:
    values = {
        "kind": "scheduled",
        "status": status,
        "content": CONTENT,
        "schedule_kind": "daily",
        "send_time": time(9),
        "zone_mode": "local",
        "cooldown": "1h",
        "activated_at": activated_at,
    } | fields
    return Campaign.objects.create(tenant=tenant, name=name, **values)


def make_user(tenant, app_user_id: str, zone: str = "", *, device: bool = True, **fields) -> AppUser:
    user = AppUser.objects.create(tenant=tenant, app_user_id=app_user_id, timezone=zone, **fields)
    if device:
        Device.objects.create(
            tenant=tenant, user=user, token=f"token-{app_user_id}", platform="android", push_permission=True
        )
    return user


def beat_at(when: datetime) -> dict:
    """One herald_beat pass of the scheduled-campaign engine, at `when` (queued wave tasks
    run then too, on the immediate backend)."""
    with time_machine.travel(when, tick=False):
        return scheduled_campaigns_pass(now=when)


def waves_of(campaign) -> list[tuple]:
    return [
        (run.occurrence.isoformat(), run.due_at, tuple(run.zones), run.state)
        for run in CampaignRun.objects.filter(campaign=campaign).order_by("due_at")
    ]


def reached(campaign, occurrence: str | None = None) -> dict[str, str]:
    """{app_user_id: state} of the campaign's ledger rows (for one occurrence)."""
    rows = CampaignRecipient.objects.filter(campaign=campaign)
    if occurrence:
        rows = rows.filter(occurrence=occurrence)
    return {r.user.app_user_id: r.state for r in rows.select_related("user")}
