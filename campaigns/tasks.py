"""Campaign background work, through Django's tasks API (thin calls into services)."""

import logging
from datetime import datetime

from django.dispatch import receiver
from django.tasks import task
from django.utils import timezone

from campaigns import scheduler
from messaging.signals import beat

log = logging.getLogger("herald.campaigns")


@task()
def run_campaign_wave(run_id: int, lease: str) -> None:
    """Send one wave of a scheduled campaign that herald_beat claimed until `lease`."""
    scheduler.run_wave(run_id=run_id, lease=datetime.fromisoformat(lease), now=timezone.now())


@task()
def run_scheduled_campaigns() -> dict:
    """One pass of the scheduled-campaign engine (herald_beat runs it on every beat)."""
    return scheduled_campaigns_pass(now=timezone.now())


def scheduled_campaigns_pass(*, now: datetime) -> dict:
    """Plan waves, skip those of paused campaigns, claim the due ones and queue a task for
    each claim. Light work (the sends happen in the tasks), safe to run in two beats."""
    counts = {
        "planned": scheduler.plan_due_campaigns(now=now),
        "skipped": scheduler.skip_inactive_runs(now=now),
        "queued": 0,
    }
    for run_id, lease in scheduler.claim_due_runs(now=now):
        try:
            run_campaign_wave.enqueue(run_id, lease.isoformat())
        except Exception:
            # The queue is down: give the claim back for the next beat.
            log.exception("could not queue wave %s", run_id)
            scheduler.release(run_id=run_id, lease=lease)
        else:
            counts["queued"] += 1
    return counts


@receiver(beat)
def run_scheduled_campaigns_on_beat(sender, now, **kwargs) -> None:
    # herald_beat's other work must go on whatever goes wrong here.
    try:
        counts = scheduled_campaigns_pass(now=now)
    except Exception:
        log.exception("scheduled campaigns pass failed")
        return
    if any(counts.values()):
        log.info("scheduled campaigns %s", counts)
