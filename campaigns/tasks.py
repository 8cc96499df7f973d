"""Campaign background work, through Django's tasks API (thin calls into services).

The one place campaign work is queued: after an event a trigger may match (the debounced
`match_events` task), when delayed triggers fall due, when a scheduled campaign's wave is
due, and on every `herald_beat` pass.
"""

import logging
import threading
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.dispatch import receiver
from django.tasks import task
from django.utils import timezone

from campaigns import scheduler, services, triggers
from campaigns.signals import campaign_changed
from devices.signals import event_recorded
from messaging import services as messaging
from messaging.signals import beat

log = logging.getLogger("herald.campaigns")


@task()
def match_events_task(tenant_id: int) -> int:
    """Match the tenant's new events, fire what is due now, and queue the next due ones."""
    matched = triggers.match_events(tenant_id=tenant_id)
    if matched:
        made: list[int] = []
        triggers.fire_due(messages=made)
        if (soonest := triggers.next_due(tenant_id=tenant_id)) is not None:
            queue_fire(soonest)
        send_now(made)
    return matched


def send_now(message_ids: list[int]) -> None:
    """Fan out and send small trigger sends here, not three queue hops later: a zero-delay
    trigger's push leaves with the task that matched it, and no task is queued for it (a
    send of one chunk is sent here; herald_beat's recovery queues what a crash leaves
    unsent). Bigger sends are queued by their fan-out as usual."""
    for message_id in message_ids:
        try:
            for first, last in messaging.fan_out(message_id=message_id, send_here=True):
                messaging.send_deliveries(message_id=message_id, first_device_id=first, last_device_id=last)
        except Exception:
            # herald_beat's recovery takes the message up; the others still go now.
            log.exception("campaign send %s left to recovery", message_id)


@task()
def fire_due_triggers_task() -> int:
    return triggers.fire_due()


def _enqueue(task_, *args, run_after=None, or_now: bool = False) -> bool:
    """Queue the task to run after `run_after`; where the backend cannot defer (the
    immediate backend of tests), run it now if `or_now`, else leave it to herald_beat."""
    if run_after is not None and run_after > timezone.now():
        if task_.get_backend().supports_defer:
            task_ = task_.using(run_after=run_after)
        elif not or_now:
            return False
    task_.enqueue(*args)
    return True


# Per process: the tenants whose match task is queued (until when), and the seconds a fire
# task is queued for: at most one of each per tenant per debounce window, per second.
_lock = threading.Lock()
_match_queued: dict[int, float] = {}
_fire_queued: set[int] = set()


def queue_match(tenant_id: int) -> None:
    """Queue the tenant's match task unless this process queued one that has not run yet."""
    debounce = settings.CAMPAIGN_MATCH_DEBOUNCE
    now = time.monotonic()
    with _lock:
        if _match_queued.get(tenant_id, 0.0) > now:
            return
        _match_queued[tenant_id] = now + debounce
    # It runs after the window: every event this process announces meanwhile has committed.
    _enqueue(
        match_events_task, tenant_id, run_after=timezone.now() + timedelta(seconds=debounce), or_now=True
    )


def forget_queued() -> None:
    """Forget what this process queued (tests start each with a clean slate)."""
    with _lock:
        _match_queued.clear()
        _fire_queued.clear()
    triggers.forget_trigger_names()


def queue_fire(at) -> None:
    second = int(at.timestamp())
    with _lock:
        if second in _fire_queued:
            return
        if len(_fire_queued) > 10_000:
            _fire_queued.clear()
        _fire_queued.add(second)
    _enqueue(fire_due_triggers_task, run_after=at)


@receiver(event_recorded, dispatch_uid="herald-campaigns-event-recorded")
def _event_recorded(sender, *, tenant_id: int, name: str, **kwargs) -> None:
    # Cheap on purpose (/events waits for it): a cached set lookup, then at most one enqueue
    # per tenant per debounce window.
    if name in triggers.trigger_names(tenant_id):
        queue_match(tenant_id)


@receiver(campaign_changed, dispatch_uid="herald-campaigns-changed")
def _campaign_changed(sender, *, campaign, **kwargs) -> None:
    # This process sees a campaign it activated, paused or edited at once; others within NAMES_TTL.
    triggers.forget_trigger_names(campaign.tenant_id)


@receiver(beat, dispatch_uid="herald-campaigns-beat")
def _beat(sender, *, now, **kwargs) -> None:
    """herald_beat's pass: the backstop for lost match tasks, due triggers, deferred sends."""
    triggers.match_everywhere()
    triggers.fire_due()
    services.send_deferred(now=timezone.now())
    triggers.forget_done(now=timezone.now())


# --- Scheduled campaigns ----------------------------------------------------------------


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


@receiver(beat, dispatch_uid="herald-campaigns-scheduled-beat")
def run_scheduled_campaigns_on_beat(sender, now, **kwargs) -> None:
    # herald_beat's other work must go on whatever goes wrong here.
    try:
        counts = scheduled_campaigns_pass(now=now)
    except Exception:
        log.exception("scheduled campaigns pass failed")
        return
    if any(counts.values()):
        log.info("scheduled campaigns %s", counts)
