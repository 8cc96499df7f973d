"""The scheduled-campaign engine: plan each occurrence's waves, claim due waves once, send them.

herald_beat drives it (campaigns/tasks.py listens to messaging's `beat` signal):

1. **Plan** (`plan_due_campaigns`): for each active or paused scheduled campaign, the
   occurrences whose first wave is due within PLAN_AHEAD get one CampaignRun row per wave:
   global mode one wave at the send time in the campaign's zone; per-user local mode the
   distinct zones of the tenant's users (plus the tenant's zone, for users without one)
   grouped by the UTC instant their wall clocks reach the send time on the occurrence's
   date, which spreads one occurrence over about 26 hours. Rows are unique per campaign,
   occurrence and instant and inserted with ON CONFLICT DO NOTHING, so two beats planning
   at once make one set. A campaign is planned again every REPLAN_EVERY, so a zone users
   moved to since gets a wave of its own.
2. **Skip** (`skip_inactive_runs`): due waves of a paused or archived campaign are marked
   skipped, never sent later: resuming continues with the next wave, without a burst.
3. **Claim** (`claim_due_runs`): each due wave (or one whose claim ran out: its worker
   died) is taken by one conditional UPDATE that sets a lease (`claimed_until`), so two
   beats claim it once; the beat queues one task per claim.
4. **Send** (`run_wave`): the task renews the lease if it is still the claim's, evaluates
   the audience now (not when the campaign was made), keeps the users whose zone is one of
   the wave's, and hands them to `services.dispatch` with the occurrence's local date. A
   wave re-run after a crash finds its users already in CampaignRecipient (unique per
   campaign, occurrence and user): nobody gets the occurrence twice, whichever wave or
   worker reaches them first, even when they change zone between two waves.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db.models import Min, Q, QuerySet
from django.db.models.functions import Coalesce

from campaigns import schedule as sched
from campaigns import services
from campaigns.models import Campaign, CampaignRun, Kind, Status
from devices.models import AppUser

log = logging.getLogger("herald.campaigns")

# Plan an occurrence once its first wave is this close: the campaign page shows a day ahead.
PLAN_AHEAD = timedelta(days=1)
# Plan each campaign again this often (a new zone among its users gets its own wave).
REPLAN_EVERY = timedelta(minutes=10)
# A wave found when re-planning is not sent if it was due longer ago than this (its zone's
# users appeared after their moment passed); waves planned in time are sent however late
# the beat comes back.
LATE_LIMIT = timedelta(minutes=15)
# How long a claimed wave is its claimer's; a claim that runs out is taken again.
RUN_LEASE = timedelta(minutes=10)
# Occurrences looked at per campaign per planning pass, at most.
_MAX_OCCURRENCES = 400


def user_zones(tenant) -> tuple[set[str], set[str]]:
    """The distinct `timezone` values of a tenant's users: (IANA zones, other non-blank names).

    Users with a blank or unknown zone belong to the tenant's default zone."""
    names = AppUser.objects.filter(tenant=tenant).values_list("timezone", flat=True).distinct()
    zones, unknown = set(), set()
    for name in names.order_by():
        if not name:
            continue
        (zones if sched.zone_info(name) is not None else unknown).add(name)
    return zones, unknown


def _default_zone(campaign: Campaign) -> str:
    return campaign.tenant.time_zone or "UTC"


def _is_local(campaign: Campaign) -> bool:
    return campaign.zone_mode == sched.LOCAL


# --- Planning -------------------------------------------------------------------------------


def plan_campaign(campaign: Campaign, *, now: datetime, zones: set[str] | None = None) -> int:
    """Create the waves of `campaign`'s occurrences due within PLAN_AHEAD (those not already
    planned, none due before the campaign was activated or resumed, or more than LATE_LIMIT
    ago) and
    update `next_run_at`. Returns how many waves it added. Idempotent, race-safe. `zones`:
    the tenant's users' zones, when the caller has read them already."""
    if campaign.kind != Kind.SCHEDULED or campaign.status not in (Status.ACTIVE, Status.PAUSED):
        Campaign.objects.filter(pk=campaign.pk).update(next_run_at=None, planned_at=now)
        return 0
    default = _default_zone(campaign)
    if not _is_local(campaign):
        zones = set()
    elif zones is None:
        zones = user_zones(campaign.tenant)[0]
    lower = max(campaign.live_since or campaign.activated_at or now, now - LATE_LIMIT)
    # Local dates run from UTC−12 to UTC+14: two days back covers every zone's "today".
    start = (lower - timedelta(days=2)).date()
    rows, upcoming = [], None
    for count, day in enumerate(sched.occurrence_dates(campaign, start)):
        planned = sched.waves(campaign, day, zones, default)
        if not planned or count >= _MAX_OCCURRENCES:
            break
        if planned[-1].due_at < lower:
            continue
        if planned[0].due_at > now + PLAN_AHEAD:
            upcoming = planned[0].due_at
            break
        rows += [
            CampaignRun(
                campaign=campaign,
                occurrence=day,
                due_at=wave.due_at,
                zones=list(wave.zones),
                version=campaign.version,
            )
            for wave in planned
            if wave.due_at >= lower
        ]
    if rows:
        CampaignRun.objects.bulk_create(rows, ignore_conflicts=True)
    _set_next_run(campaign, planned_at=now, upcoming=upcoming)
    return len(rows)


def _set_next_run(
    campaign: Campaign, *, planned_at: datetime | None = None, upcoming: datetime | None = None
):
    """next_run_at: the next planned wave, else the first wave of the next unplanned
    occurrence; none while paused or archived."""
    next_run = None
    if campaign.status == Status.ACTIVE:
        next_run = (
            campaign.runs.filter(state=CampaignRun.State.PLANNED).aggregate(at=Min("due_at"))["at"]
            or upcoming
        )
    fields = {"next_run_at": next_run} | ({"planned_at": planned_at} if planned_at else {})
    Campaign.objects.filter(pk=campaign.pk).update(**fields)
    for name, value in fields.items():
        setattr(campaign, name, value)


def campaigns_to_plan(*, now: datetime) -> QuerySet[Campaign]:
    return Campaign.objects.filter(kind=Kind.SCHEDULED, status__in=[Status.ACTIVE, Status.PAUSED]).filter(
        Q(planned_at__isnull=True) | Q(planned_at__lte=now - REPLAN_EVERY)
    )


def plan_due_campaigns(*, now: datetime, limit: int = 200) -> int:
    """Plan every scheduled campaign not planned for REPLAN_EVERY (or since an edit); each
    is taken by one conditional UPDATE, so two beats do not plan the same one at once."""
    added = 0
    zones_of: dict[int, set[str]] = {}  # per tenant, read once a pass
    for campaign_id in list(campaigns_to_plan(now=now).values_list("id", flat=True)[:limit]):
        if not campaigns_to_plan(now=now).filter(pk=campaign_id).update(planned_at=now):
            continue  # another beat took it
        campaign = Campaign.objects.select_related("tenant").get(pk=campaign_id)
        try:
            if _is_local(campaign) and campaign.tenant_id not in zones_of:
                zones_of[campaign.tenant_id] = user_zones(campaign.tenant)[0]
            added += plan_campaign(campaign, now=now, zones=zones_of.get(campaign.tenant_id))
        except Exception:
            log.exception("could not plan campaign %s", campaign_id)
    return added


def campaign_changed(campaign: Campaign, *, what: str, now: datetime) -> None:
    """Keep the plan in step with the lifecycle: an activated or resumed campaign is planned
    at once (its next run shows), waves due while it was paused are skipped, an edit
    re-plans the waves not due yet, a paused or archived campaign has no next run."""
    if campaign.kind != Kind.SCHEDULED:
        if what == "updated":  # no longer scheduled: its waves not due yet go
            campaign.runs.filter(state=CampaignRun.State.PLANNED, due_at__gt=now).delete()
        return
    if what == "resumed":
        campaign.runs.filter(state=CampaignRun.State.PLANNED, due_at__lte=now).update(
            state=CampaignRun.State.SKIPPED, skip_reason="paused", finished_at=now
        )
    if what == "updated" and campaign.status in (Status.ACTIVE, Status.PAUSED):
        reschedule(campaign, now=now)
    elif what in ("activated", "resumed"):
        plan_campaign(campaign, now=now)
    elif what in ("paused", "archived"):
        _set_next_run(campaign)


def reschedule(campaign: Campaign, *, now: datetime) -> int:
    """After an edit of the schedule (or activation): drop the waves planned for the old
    schedule that are not due yet, and plan the new one. Returns the waves added."""
    campaign.runs.filter(state=CampaignRun.State.PLANNED, due_at__gt=now).delete()
    return plan_campaign(campaign, now=now)


# --- Claiming -------------------------------------------------------------------------------


def skip_inactive_runs(*, now: datetime) -> int:
    """Mark due waves of paused and archived campaigns skipped: they are never sent."""
    skipped = 0
    for status, reason in ((Status.PAUSED, "paused"), (Status.ARCHIVED, "archived")):
        skipped += CampaignRun.objects.filter(
            state=CampaignRun.State.PLANNED, due_at__lte=now, campaign__status=status
        ).update(state=CampaignRun.State.SKIPPED, skip_reason=reason, finished_at=now)
    return skipped


def _claimable(now: datetime) -> Q:
    return Q(state=CampaignRun.State.PLANNED, due_at__lte=now) | Q(
        state=CampaignRun.State.RUNNING, claimed_until__lt=now
    )


def claim_due_runs(*, now: datetime, limit: int = 100) -> list[tuple[int, datetime]]:
    """Claim due waves (and waves whose claim ran out) for RUN_LEASE: [(run id, lease)].

    Each is one conditional UPDATE: of two beats, one changes the row and the other finds
    it no longer claimable (PostgreSQL re-checks the condition after the first commits)."""
    claimed = []
    candidates = CampaignRun.objects.filter(_claimable(now)).order_by("due_at").values_list("id", flat=True)
    for run_id in list(candidates[:limit]):
        lease = now + RUN_LEASE
        if (
            CampaignRun.objects.filter(_claimable(now), pk=run_id).update(
                state=CampaignRun.State.RUNNING, claimed_until=lease, started_at=Coalesce("started_at", now)
            )
            == 1
        ):
            claimed.append((run_id, lease))
    return claimed


def release(*, run_id: int, lease: datetime) -> None:
    """Give back a claim whose task could not be queued: the next beat claims it again."""
    CampaignRun.objects.filter(pk=run_id, state=CampaignRun.State.RUNNING, claimed_until=lease).update(
        state=CampaignRun.State.PLANNED, claimed_until=None
    )


# --- Sending --------------------------------------------------------------------------------


def wave_zones(campaign: Campaign, run: CampaignRun, present: set[str] | None = None) -> list[str] | None:
    """The zones whose users this wave reaches now: the zones (the tenant's users' current
    ones, plus those it was planned with) whose wall clocks reach the send time at the wave's
    instant; ["*"] for a global wave. None when the schedule no longer has this wave (it
    was edited after the wave was planned). `present`: the users' zones, if known."""
    schedule = sched.Schedule.of(campaign)
    if campaign.kind != Kind.SCHEDULED or not schedule.occurs_on(run.occurrence):
        return None
    default = _default_zone(campaign)
    if not _is_local(campaign):
        if run.zones != [sched.ALL_ZONES]:
            return None
        planned = sched.waves(schedule, run.occurrence, (), default)
        return [sched.ALL_ZONES] if planned and planned[0].due_at == run.due_at else None
    if sched.ALL_ZONES in run.zones:
        return None
    current = user_zones(campaign.tenant)[0] if present is None else present
    was = {z for z in run.zones if sched.zone_info(z) is not None}
    matching = {
        name
        for name in current | was | {default}
        if sched.local_instant(run.occurrence, schedule.send_time, name) == run.due_at
    }
    if was and not (was & matching):
        return None  # none of the zones it was planned for meets the send time then any more
    return sorted(matching)


def wave_users(
    campaign: Campaign, zones: list[str], *, now: datetime, unknown: set[str] | None = None
) -> QuerySet[AppUser]:
    """The audience at `now`, among users whose zone is one of `zones` (users without a zone,
    or with a name that is not a zone — `unknown`, if known — count as the tenant's zone)."""
    users = services.audience_users(campaign, now=now)
    if zones == [sched.ALL_ZONES]:
        return users
    in_zone = Q(timezone__in=zones)
    if _default_zone(campaign) in zones:
        unknown = user_zones(campaign.tenant)[1] if unknown is None else unknown
        in_zone |= Q(timezone="") | Q(timezone__in=unknown)
    return users.filter(in_zone)


def run_wave(*, run_id: int, lease: datetime, now: datetime) -> CampaignRun | None:
    """Send one claimed wave, if the claim `lease` is still this run's. Returns the run, or
    None when another claimer has it (or it is finished)."""
    fresh = now + RUN_LEASE
    if not CampaignRun.objects.filter(pk=run_id, state=CampaignRun.State.RUNNING, claimed_until=lease).update(
        claimed_until=fresh
    ):
        return None
    run = CampaignRun.objects.select_related("campaign__tenant", "campaign__segment").get(pk=run_id)
    campaign = run.campaign
    if campaign.status != Status.ACTIVE:
        reason = "archived" if campaign.status == Status.ARCHIVED else "paused"
        return _finish(run, fresh, now=now, state=CampaignRun.State.SKIPPED, skip_reason=reason)
    present, unknown = user_zones(campaign.tenant) if _is_local(campaign) else (set(), set())
    zones = wave_zones(campaign, run, present)
    if zones is None:
        return _finish(run, fresh, now=now, state=CampaignRun.State.SKIPPED, skip_reason="rescheduled")
    users = wave_users(campaign, zones, now=now, unknown=unknown).values_list("id", flat=True)
    result = services.dispatch(
        campaign=campaign, user_ids=users, occurrence=run.occurrence.isoformat(), now=now, run=run
    )
    return _finish(
        run,
        fresh,
        now=now,
        state=CampaignRun.State.DONE,
        zones=zones,
        version=campaign.version,
        recipients=result.sent,
        skipped=sum(result.skipped.values()),
    )


def _finish(run: CampaignRun, lease: datetime, *, now: datetime, **fields) -> CampaignRun | None:
    done = CampaignRun.objects.filter(pk=run.pk, state=CampaignRun.State.RUNNING, claimed_until=lease).update(
        claimed_until=None, finished_at=now, **fields
    )
    if not done:
        return None  # our claim ran out and another took it: theirs is the record
    for name, value in fields.items():
        setattr(run, name, value)
    run.claimed_until, run.finished_at = None, now
    campaign = run.campaign
    if not campaign.runs.filter(state=CampaignRun.State.PLANNED).exists():
        plan_campaign(campaign, now=now)  # the next occurrence, for next_run_at
    else:
        _set_next_run(campaign)
    return run
