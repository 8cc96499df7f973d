"""The triggered engine: events in, one send per trigger occurrence out, off the request path.

1. **Matching.** `/events` only announces, after its transaction commits, that a tenant
   recorded an event (`devices.signals.event_recorded`); a web process queues at most one
   `match_events` task per tenant per CAMPAIGN_MATCH_DEBOUNCE and only for event names an
   active triggered campaign waits for. The task reads the tenant's events past its
   EventCursor, in id order, and makes a PendingTrigger per (campaign, event) whose name and
   param filters match (the same filters and operators as segment rules, in SQL), recorded
   after the campaign went live, due after the campaign's delay. `herald_beat` runs the same
   matching every pass, as a backstop for lost tasks.
   The cursor only moves past events older than CAMPAIGN_EVENT_SETTLE_SECONDS: ids are
   handed out before commit, so a slow transaction can commit an id below one already read;
   recent events are read again next time, and the unique (campaign, event) makes that free
   of duplicates.
2. **Firing.** Due triggers are claimed in batches with a conditional UPDATE that sets a
   lease (`claimed_until`, CAMPAIGN_TRIGGER_CLAIM_SECONDS); a worker killed mid-batch leaves
   the lease to run out and another worker takes the batch again. Per campaign, in one
   transaction: a paused or archived campaign's triggers are skipped ("paused"); those whose
   cancel event happened within the delay are skipped ("cancelled"); those whose user left
   the audience are skipped ("audience"); the rest go to `services.dispatch` with occurrence
   "e<event id>", and the triggers are marked done in the same transaction. The ledger's
   unique (campaign, occurrence, user) is the last word: a batch processed twice (a lease
   that ran out on a slow worker, a retry) sends nothing the second time.
"""

import logging
import secrets
import time
from collections import defaultdict
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from audiences.selectors import param_filters
from campaigns import services
from campaigns.models import Campaign, EventCursor, Kind, PendingTrigger, SkipReason, Status
from devices.models import Event

log = logging.getLogger("herald.campaigns")

MATCH_BATCH = 5000

# Per process: which event names each tenant's active triggered campaigns wait for, read
# at most every NAMES_TTL seconds (a campaign activated meanwhile is found by the beat).
NAMES_TTL = 2.0
_names: dict[int, tuple[float, frozenset[str]]] = {}


def trigger_names(tenant_id: int) -> frozenset[str]:
    """The event names the tenant's active triggered campaigns wait for (cached briefly)."""
    now = time.monotonic()
    cached = _names.get(tenant_id)
    if cached is not None and cached[0] > now:
        return cached[1]
    names = frozenset(
        Campaign.objects.filter(tenant_id=tenant_id, status=Status.ACTIVE, kind=Kind.TRIGGERED).values_list(
            "trigger_event", flat=True
        )
    )
    _names[tenant_id] = (now + NAMES_TTL, names)
    return names


def forget_trigger_names(tenant_id: int | None = None) -> None:
    if tenant_id is None:
        _names.clear()
    else:
        _names.pop(tenant_id, None)


def due_at(*, occurred_at: datetime, received_at: datetime, delay: timedelta) -> datetime:
    """When a trigger's send is due: its event's time plus the delay, but never before the
    event arrived (an app that reports late fires at once) nor later than arrival plus the
    delay (a device clock in the future does not postpone it)."""
    return min(max(occurred_at + delay, received_at), received_at + delay)


def match_events(*, tenant_id: int, now: datetime | None = None) -> int:
    """Make PendingTriggers for the tenant's events past its cursor. Returns how many
    events matched a campaign (made again for events read before: no duplicates)."""
    now = now or timezone.now()
    campaigns = list(
        Campaign.objects.filter(tenant_id=tenant_id, status=Status.ACTIVE, kind=Kind.TRIGGERED).exclude(
            trigger_event=""
        )
    )
    if not campaigns:
        return 0
    by_name = defaultdict(list)
    for campaign in campaigns:
        by_name[campaign.trigger_event].append(campaign)
    settled = now - timedelta(seconds=settings.CAMPAIGN_EVENT_SETTLE_SECONDS)
    matched = 0
    with transaction.atomic():
        # One matcher per tenant at a time: a second waits here, then reads what is left.
        cursor = EventCursor.objects.select_for_update().filter(tenant_id=tenant_id).first()
        if cursor is None:
            services.start_event_cursor(tenant=campaigns[0].tenant, now=now)
            cursor = EventCursor.objects.select_for_update().get(tenant_id=tenant_id)
        last = safe = cursor.last_event_id
        while True:
            rows = list(
                Event.objects.filter(tenant_id=tenant_id, pk__gt=last)
                .order_by("pk")
                .values_list("pk", "name", "received_at")[:MATCH_BATCH]
            )
            if not rows:
                break
            ids_by_name = defaultdict(list)
            young = False
            for pk, name, received_at in rows:
                if name in by_name:
                    ids_by_name[name].append(pk)
                if not young and received_at <= settled:
                    safe = pk
                else:
                    young = True
            for name, ids in ids_by_name.items():
                for campaign in by_name[name]:
                    matched += _match(campaign, ids)
            last = rows[-1][0]
            if len(rows) < MATCH_BATCH:
                break
        if safe > cursor.last_event_id:
            EventCursor.objects.filter(tenant_id=tenant_id, last_event_id__lt=safe).update(
                last_event_id=safe, updated_at=now
            )
    return matched


def _match(campaign: Campaign, event_ids: list[int]) -> int:
    events = Event.objects.filter(pk__in=event_ids, name=campaign.trigger_event)
    if campaign.live_since is not None:
        events = events.filter(received_at__gte=campaign.live_since)
    if campaign.trigger_params:
        events = events.filter(param_filters(campaign.trigger_params))
    delay = timedelta(seconds=campaign.delay_seconds)
    triggers = [
        PendingTrigger(
            campaign_id=campaign.pk,
            user_id=user_id,
            event_id=pk,
            event_at=occurred_at,
            version=campaign.version,
            due_at=due_at(occurred_at=occurred_at, received_at=received_at, delay=delay),
            created_at=received_at,
        )
        for pk, user_id, occurred_at, received_at in events.values_list(
            "pk", "user_id", "occurred_at", "received_at"
        )
    ]
    PendingTrigger.objects.bulk_create(triggers, ignore_conflicts=True, batch_size=1000)
    return len(triggers)


def match_everywhere(*, now: datetime | None = None) -> int:
    """The beat's backstop: match every tenant with an active triggered campaign."""
    tenants = (
        Campaign.objects.filter(status=Status.ACTIVE, kind=Kind.TRIGGERED, tenant__is_active=True)
        .values_list("tenant_id", flat=True)
        .distinct()
    )
    return sum(match_events(tenant_id=tenant_id, now=now) for tenant_id in list(tenants))


def next_due(*, tenant_id: int | None = None) -> datetime | None:
    """When the soonest waiting trigger falls due."""
    triggers = PendingTrigger.objects.filter(state=PendingTrigger.State.PENDING)
    if tenant_id is not None:
        triggers = triggers.filter(campaign__tenant_id=tenant_id)
    return triggers.order_by("due_at").values_list("due_at", flat=True).first()


def fire_due(
    *,
    now: datetime | None = None,
    batch: int | None = None,
    max_batches: int = 100,
    messages: list | None = None,
) -> int:
    """Claim and fire due triggers, a batch at a time. Returns how many were processed;
    the ids of the messages made are appended to `messages` when given."""
    batch = batch or settings.CAMPAIGN_TRIGGER_BATCH
    done = 0
    for _ in range(max_batches):
        moment = now or timezone.now()
        claimed = _claim(moment, batch)
        if claimed is None:
            break
        token, triggers = claimed
        by_campaign = defaultdict(list)
        for trigger in triggers:
            by_campaign[trigger.campaign_id].append(trigger)
        for campaign_id, group in by_campaign.items():
            message_id = _fire(campaign_id, group, token=token, now=moment, queue=messages is None)
            if message_id is not None and messages is not None:
                messages.append(message_id)
        done += len(triggers)
    return done


def _claim(now: datetime, batch: int) -> tuple[str, list[PendingTrigger]] | None:
    unclaimed = Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)
    due = PendingTrigger.objects.filter(state=PendingTrigger.State.PENDING, due_at__lte=now).filter(unclaimed)
    ids = list(due.order_by("due_at", "pk").values_list("pk", flat=True)[:batch])
    if not ids:
        return None
    token = secrets.token_hex(16)
    lease = now + timedelta(seconds=settings.CAMPAIGN_TRIGGER_CLAIM_SECONDS)
    # The claim: of two workers racing for a row, one matches it.
    PendingTrigger.objects.filter(pk__in=ids, state=PendingTrigger.State.PENDING).filter(unclaimed).update(
        claim=token, claimed_until=lease
    )
    # By primary key: the claim column has no index (read by it alone, every pending trigger).
    claimed = PendingTrigger.objects.filter(pk__in=ids, claim=token, state=PendingTrigger.State.PENDING)
    return token, list(claimed)


def _fire(
    campaign_id: int, triggers: list[PendingTrigger], *, token: str, now: datetime, queue: bool = True
) -> int | None:
    """Fire one campaign's share of a claimed batch; the id of the message it made, if any."""
    message_id = None
    with transaction.atomic():
        campaign = Campaign.objects.select_related("tenant").get(pk=campaign_id)
        rows = [(t.pk, t.user_id, t.event_id) for t in triggers]
        ids = [t.pk for t in triggers]
        if campaign.status != Status.ACTIVE or not campaign.tenant.is_active:
            services.skip_triggers(campaign, rows, SkipReason.PAUSED, now)
        else:
            live = rows
            if campaign.cancel_event:
                cancel = Event.objects.filter(
                    tenant_id=campaign.tenant_id,
                    user_id=OuterRef("user_id"),
                    name=campaign.cancel_event,
                    occurred_at__gte=OuterRef("event_at"),
                    occurred_at__lte=OuterRef("due_at"),
                ).exclude(pk=OuterRef("event_id"))
                cancelled = set(
                    PendingTrigger.objects.filter(pk__in=ids)
                    .filter(Exists(cancel))
                    .values_list("pk", flat=True)
                )
                services.skip_triggers(
                    campaign, [r for r in rows if r[0] in cancelled], SkipReason.CANCELLED, now
                )
                live = [r for r in rows if r[0] not in cancelled]
            if live:
                members = set(
                    services.audience_users(campaign, now=now)
                    .filter(pk__in={r[1] for r in live})
                    .values_list("pk", flat=True)
                )
                services.skip_triggers(
                    campaign, [r for r in live if r[1] not in members], SkipReason.AUDIENCE, now
                )
                live = [r for r in live if r[1] in members]
            if live:
                result = services.dispatch(
                    campaign=campaign,
                    user_ids=_one_per_user(live),
                    occurrence=None,
                    now=now,
                    queue=queue,
                )
                message_id = result.message.pk if result.message is not None else None
                # A user's other triggers in this batch: the cooldown (at least 5 minutes) holds them.
                services.skip_triggers(campaign, live, SkipReason.COOLDOWN, now)
        PendingTrigger.objects.filter(pk__in=ids, claim=token).update(
            state=PendingTrigger.State.DONE, claim="", claimed_until=None
        )
    return message_id


def _one_per_user(rows) -> list[tuple[int, str]]:
    """(user_id, occurrence) for each user's earliest trigger of the batch."""
    first: dict[int, str] = {}
    for pk, user_id, event_id in sorted(rows, key=lambda r: r[0]):
        first.setdefault(user_id, services.trigger_occurrence(pk, event_id))
    return list(first.items())


def forget_done(*, now: datetime, keep: timedelta = timedelta(days=2), limit: int = 5000) -> int:
    """Delete fired triggers older than `keep` (their ledger rows stay), a batch per call.
    Kept that long, a re-read of their events (the settle window, the beat) finds them."""
    old = PendingTrigger.objects.filter(state=PendingTrigger.State.DONE, due_at__lt=now - keep)
    ids = list(old.values_list("pk", flat=True)[:limit])
    return PendingTrigger.objects.filter(pk__in=ids).delete()[0] if ids else 0
