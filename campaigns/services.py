"""Campaigns: their lifecycle, their versions, and `dispatch`, the one path every send takes.

Lifecycle: Draft → Active ⇄ Paused → Archived (Archived is final), each step one conditional
UPDATE, so two staff clicking at once make one change and the other gets CampaignError.

`dispatch` turns "these users, for this occurrence" into one ordinary Message (source
"campaign", audience "recipients") after the limits that protect users, all in one
transaction and in set-based statements (a 1,000,000-user wave is a few dozen statements,
not a Python loop over users):

1. a CampaignRecipient row per user and occurrence, `ON CONFLICT DO NOTHING` on the unique
   (campaign, occurrence, user): a user this occurrence reached (or skipped) already drops
   out, whichever worker, wave or retry got there first;
2. cooldown: users this campaign reached within its cooldown (or ever, for "once") are
   skipped;
3. quiet hours: users whose local time is inside the tenant's quiet hours are deferred to
   their end (state "deferred", sent by `send_deferred`) or dropped, as the campaign says;
4. no device: users without an active device that allows pushes are skipped;
5. frequency cap: `messaging.limits.claim_marketing_slots` counts the push against each
   user's day; capped users are skipped;
6. cooldown claim and rotation: one upsert on CampaignLastSend per chunk, conditional on the
   cooldown, which gives each user their next variant; a concurrent send that got there
   first makes this one skip the user (cooldown) and give the cap slot back.

Who is left gets the Message, with a MessageRecipient row each (the variant), and a
CampaignSend recording the campaign version; its fan-out starts when the transaction commits.
"""

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Sum
from django.utils import timezone

from audiences import rules as rule_doc
from audiences import selectors as audience_selectors
from campaigns.models import (
    COOLDOWN_SECONDS,
    AudienceKind,
    Campaign,
    CampaignLastSend,
    CampaignRecipient,
    CampaignRun,
    CampaignSend,
    CampaignVersion,
    ContentMode,
    EventCursor,
    Kind,
    PendingTrigger,
    QuietHoursAction,
    SkipReason,
    Status,
)
from campaigns.signals import campaign_changed
from devices.models import AppUser, Device, Event
from messaging import content as message_content
from messaging import limits
from messaging.models import Audience, Delivery, Message, VariantMode
from messaging.services import MessageInput, create_message, send_message

log = logging.getLogger("herald.campaigns")

Recipient = CampaignRecipient
PENDING = "pending"  # a row's state inside dispatch's transaction only; never committed
CHUNK = 5000

# The settings that change what a campaign sends: editing any makes a new version.
SEND_FIELDS = (
    "kind",
    "content",
    "content_mode",
    "ab_test",
    "audience",
    "segment_id",
    "rules",
    "cooldown",
    "quiet_hours_action",
    "trigger_event",
    "trigger_params",
    "delay_seconds",
    "cancel_event",
    "schedule_kind",
    "send_time",
    "send_date",
    "weekdays",
    "month_days",
    "zone_mode",
    "zone",
)


class CampaignError(Exception):
    """A campaign cannot change as asked (an illegal transition, an archived campaign)."""


# --- Lifecycle ------------------------------------------------------------------------


def snapshot(campaign: Campaign) -> dict:
    """The campaign's sending settings as JSON: what a CampaignVersion keeps."""
    out = {"name": campaign.name}
    for name in SEND_FIELDS:
        value = getattr(campaign, name)
        out[name] = value.isoformat() if hasattr(value, "isoformat") else value
    return out


def create_campaign(*, tenant, fields: dict, created_by=None) -> Campaign:
    """A new Draft campaign with `fields` (validated by the API serializer or the admin form)
    and its version 1."""
    now = timezone.now()
    with transaction.atomic():
        campaign = Campaign(
            tenant=tenant, created_by=created_by, created_at=now, updated_at=now, version=1, **fields
        )
        campaign.save()
        CampaignVersion.objects.create(
            campaign=campaign, number=1, snapshot=snapshot(campaign), created_at=now, created_by=created_by
        )
    _changed(campaign, "created")
    return campaign


def update_campaign(*, campaign: Campaign, fields: dict, updated_by=None) -> Campaign:
    """Change a campaign's settings. Anything that changes what it sends makes a new version
    (+1), which every later send records; sends already made keep theirs. Raises
    CampaignError for an archived campaign."""
    now = timezone.now()
    with transaction.atomic():
        locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if locked.status == Status.ARCHIVED:
            raise CampaignError("An archived campaign cannot be changed.")
        before = snapshot(locked)
        for name, value in fields.items():
            setattr(locked, name, value)
        locked.updated_at = now
        after = snapshot(locked)
        if any(before[k] != after[k] for k in SEND_FIELDS):
            locked.version += 1
            CampaignVersion.objects.create(
                campaign=locked, number=locked.version, snapshot=after, created_at=now, created_by=updated_by
            )
        locked.save()
    _changed(locked, "updated")
    return locked


def _transition(campaign: Campaign, *, to: str, allowed: tuple, verb: str, now=None, **values) -> Campaign:
    now = now or timezone.now()
    changed = Campaign.objects.filter(pk=campaign.pk, status__in=allowed).update(
        status=to, updated_at=now, **values
    )
    campaign.refresh_from_db()
    if not changed:
        raise CampaignError(f"A {campaign.get_status_display().lower()} campaign cannot be {verb}.")
    return campaign


def activate(campaign: Campaign, *, now: datetime | None = None) -> Campaign:
    """Draft → Active. A triggered campaign reacts to events recorded from now on."""
    now = now or timezone.now()
    with transaction.atomic():
        _transition(
            campaign,
            to=Status.ACTIVE,
            allowed=(Status.DRAFT,),
            verb="activated",
            now=now,
            activated_at=now,
            live_since=now,
            status_reason="",
        )
        if campaign.kind == Kind.TRIGGERED:
            start_event_cursor(tenant=campaign.tenant, now=now)
    _changed(campaign, "activated")
    return campaign


def pause(campaign: Campaign, *, reason: str = "", now: datetime | None = None) -> Campaign:
    """Active → Paused: no new sends from now on; every setting is kept. Triggers and
    deferred sends that fall due while paused are skipped ("paused"), not kept for later."""
    now = now or timezone.now()
    _transition(
        campaign,
        to=Status.PAUSED,
        allowed=(Status.ACTIVE,),
        verb="paused",
        now=now,
        paused_at=now,
        status_reason=reason[:200],
    )
    _changed(campaign, "paused")
    return campaign


def resume(campaign: Campaign, *, now: datetime | None = None) -> Campaign:
    """Paused → Active, without a burst: what fell due while paused is skipped ("paused"),
    events recorded while paused trigger nothing; triggers still waiting for their delay,
    and sends deferred past now, go out when due."""
    now = now or timezone.now()
    with transaction.atomic():
        _transition(
            campaign,
            to=Status.ACTIVE,
            allowed=(Status.PAUSED,),
            verb="resumed",
            now=now,
            live_since=now,
            status_reason="",
        )
        _skip_due_while_paused(campaign, now=now, due_by=now)
        if campaign.kind == Kind.TRIGGERED:
            start_event_cursor(tenant=campaign.tenant, now=now)
    _changed(campaign, "resumed")
    return campaign


def archive(campaign: Campaign, *, reason: str = "", now: datetime | None = None) -> Campaign:
    """Draft, Active or Paused → Archived, for good: waiting triggers and deferred sends are
    skipped ("paused")."""
    now = now or timezone.now()
    with transaction.atomic():
        _transition(
            campaign,
            to=Status.ARCHIVED,
            allowed=(Status.DRAFT, Status.ACTIVE, Status.PAUSED),
            verb="archived",
            now=now,
            archived_at=now,
            status_reason=reason[:200],
        )
        _skip_due_while_paused(campaign, now=now, due_by=None)
    _changed(campaign, "archived")
    return campaign


def _skip_due_while_paused(campaign: Campaign, *, now: datetime, due_by: datetime | None) -> None:
    """Skip (reason "paused") the campaign's waiting triggers and deferred sends due by
    `due_by` (all of them when None)."""
    triggers = PendingTrigger.objects.filter(campaign=campaign, state=PendingTrigger.State.PENDING)
    deferred = Recipient.objects.filter(campaign=campaign, state=Recipient.State.DEFERRED)
    if due_by is not None:
        triggers, deferred = triggers.filter(due_at__lte=due_by), deferred.filter(due_at__lte=due_by)
    skip_triggers(campaign, list(triggers.values_list("pk", "user_id", "event_id")), SkipReason.PAUSED, now)
    triggers.update(state=PendingTrigger.State.DONE, claim="", claimed_until=None)
    deferred.update(state=Recipient.State.SKIPPED, reason=SkipReason.PAUSED)


def skip_triggers(campaign: Campaign, rows, reason: str, now: datetime) -> None:
    """Ledger rows (skipped, `reason`) for triggers [(pk, user_id, event_id)]."""
    Recipient.objects.bulk_create(
        [
            Recipient(
                campaign=campaign,
                user_id=user_id,
                occurrence=trigger_occurrence(pk, event_id),
                state=Recipient.State.SKIPPED,
                reason=reason,
                version=campaign.version,
                created_at=now,
            )
            for pk, user_id, event_id in rows
        ],
        ignore_conflicts=True,
        batch_size=1000,
    )


def trigger_occurrence(trigger_id: int, event_id: int | None) -> str:
    """A trigger occurrence's name in the ledger: its event ("e123"), so that the same event
    seen twice (a client retry, two workers) is one occurrence."""
    return f"e{event_id}" if event_id is not None else f"t{trigger_id}"


def start_event_cursor(*, tenant, now: datetime) -> None:
    """Make sure the trigger matcher has a cursor for the tenant; a new one starts at the
    tenant's latest event (what came before the campaign triggers nothing)."""
    if EventCursor.objects.filter(tenant=tenant).exists():
        return
    last = Event.objects.filter(tenant=tenant).order_by("-pk").values_list("pk", flat=True).first() or 0
    EventCursor.objects.get_or_create(tenant=tenant, defaults={"last_event_id": last, "updated_at": now})


def pause_tenant_campaigns(*, tenant, reason: str) -> int:
    """Pause every active campaign of a tenant (it was deactivated), saying why."""
    paused = 0
    for campaign in Campaign.objects.filter(tenant_id=tenant.pk, status=Status.ACTIVE):
        try:
            pause(campaign, reason=reason)
        except CampaignError:
            continue
        paused += 1
    return paused


def _changed(campaign: Campaign, what: str) -> None:
    transaction.on_commit(lambda: campaign_changed.send(Campaign, campaign=campaign, what=what))


# --- The audience ------------------------------------------------------------------------


def audience_users(campaign: Campaign, *, now: datetime) -> QuerySet[AppUser]:
    """The tenant's users in the campaign's audience at `now` (a deleted segment: nobody;
    stored rules that cannot be used: nobody, and a warning logged)."""
    users = AppUser.objects.filter(tenant_id=campaign.tenant_id)
    if campaign.audience == AudienceKind.ALL:
        return users
    try:
        if campaign.audience == AudienceKind.SEGMENT:
            rules = audience_selectors.segment_rules(tenant=campaign.tenant, segment_id=campaign.segment_id)
        else:
            rules = rule_doc.stored(campaign.rules)
    except rule_doc.RuleError as exc:
        log.warning(
            "campaign audience: stored rules cannot be used",
            extra={"campaign_id": campaign.pk, "audience": campaign.audience, "fault": str(exc)},
        )
        return users.none()
    if rules is None:
        return users.none()
    return audience_selectors.users_matching(campaign.tenant, rules, now)


# --- Dispatch ----------------------------------------------------------------------------


@dataclass
class DispatchResult:
    sent: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    deferred: int = 0
    message: Message | None = None


def dispatch(
    *,
    campaign: Campaign,
    user_ids,
    occurrence: str | None,
    now: datetime,
    run: CampaignRun | None = None,
    queue: bool = True,
) -> DispatchResult:
    """Send the campaign to `user_ids` (ids or a QuerySet of AppUser ids) for `occurrence`
    (a scheduled occurrence's ISO local date; or None when `user_ids` are (user_id,
    occurrence) pairs, as triggers give them). One Message for everyone sent; see the module
    docstring for the steps. Returns what was sent, skipped (by reason) and deferred.
    `queue=False`: no fan-out task is queued; the caller fans the message out itself after
    the commit (herald_beat's recovery does, should it die first)."""
    with transaction.atomic():
        message = _new_message(campaign)
        _stage(campaign, message, user_ids, occurrence, now)
        return _finish(campaign, message, now=now, run=run, quiet=True, queue=queue)


def send_deferred(*, now: datetime, limit_campaigns: int = 100) -> int:
    """Send what quiet hours deferred and is now due: one Message per campaign, through the
    same limits (cooldown, device, cap) as any send. A paused or archived campaign's are
    skipped ("paused"). Two beats at once: the second's claim finds nothing. Returns the
    number of users sent to."""
    sent = 0
    campaign_ids = list(
        Recipient.objects.filter(state=Recipient.State.DEFERRED, due_at__lte=now)
        .values_list("campaign_id", flat=True)
        .distinct()[:limit_campaigns]
    )
    for campaign in Campaign.objects.filter(pk__in=campaign_ids).select_related("tenant"):
        with transaction.atomic():
            due = Recipient.objects.filter(campaign=campaign, state=Recipient.State.DEFERRED, due_at__lte=now)
            if campaign.status != Status.ACTIVE or not campaign.tenant.is_active:
                due.update(state=Recipient.State.SKIPPED, reason=SkipReason.PAUSED)
                continue
            message = _new_message(campaign)
            # The claim: of two passes, the second's UPDATE waits, then matches nothing.
            if not due.update(state=PENDING, message=message, due_at=None):
                message.delete()
                continue
            sent += _finish(campaign, message, now=now, run=None, quiet=False).sent
    return sent


def _new_message(campaign: Campaign) -> Message:
    """A draft Message with the campaign's current content, to be sent to its recipients."""
    spec = message_input(campaign)
    message, _ = create_message(tenant=campaign.tenant, spec=spec, source=Message.Source.CAMPAIGN, send=False)
    return message


def message_input(campaign: Campaign) -> MessageInput:
    """The campaign's content as a message (its variants, languages and push options)."""
    doc = campaign.content or {}
    variants = [
        message_content.VariantInput(
            content=message_content.Content(
                title=v.get("title", ""),
                body=v.get("body", ""),
                image_url=v.get("image_url", "") or "",
                click_link=v.get("click_link", "") or "",
            ),
            localizations={
                lang: message_content.Content(
                    title=c.get("title", ""),
                    body=c.get("body", ""),
                    image_url=c.get("image_url", "") or "",
                    click_link=c.get("click_link", "") or "",
                )
                for lang, c in (v.get("localizations") or {}).items()
            },
        )
        for v in doc.get("variants") or []
    ] or [message_content.VariantInput(content=message_content.Content(title="", body=""))]
    first = variants[0]
    mode = VariantMode.AB_TEST if campaign.content_mode == ContentMode.AB_TEST else VariantMode.SPLIT
    spec = MessageInput(
        **first.content.as_dict(),
        localizations=first.localizations,
        variants=variants if len(variants) > 1 else [],
        variant_mode=mode,
        ab_test=(campaign.ab_test or None) if mode == VariantMode.AB_TEST else None,
        audience=Audience.RECIPIENTS,
        audience_params={"campaign_id": campaign.pk},
        language=doc.get("language", ""),
    )
    for name in ("data", "priority", "data_only", "options", "ttl_seconds"):
        if doc.get(name) is not None:
            setattr(spec, name, doc[name])
    return spec


def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _stage(campaign: Campaign, message: Message, user_ids, occurrence: str | None, now: datetime) -> None:
    """Step 1: a pending ledger row per (user, occurrence) not reached yet."""
    table = _table(Recipient)
    columns = "campaign_id, user_id, occurrence, state, reason, version, message_id, created_at"
    at = connection.ops.adapt_datetimefield_value(now)
    with connection.cursor() as cursor:
        if isinstance(user_ids, QuerySet):
            users = AppUser.objects.filter(pk__in=user_ids).values("pk")
            sql, params = users.query.sql_with_params()
            appuser = _table(AppUser)
            cursor.execute(
                f"INSERT INTO {table} ({columns}) SELECT %s, u.id, %s, %s, '', %s, %s, %s "  # noqa: S608
                f"FROM {appuser} u WHERE u.tenant_id = %s AND u.id IN ({sql}) ON CONFLICT DO NOTHING",
                [
                    campaign.pk,
                    occurrence,
                    PENDING,
                    campaign.version,
                    message.pk,
                    at,
                    campaign.tenant_id,
                    *params,
                ],
            )
            return
        rows = list(user_ids) if occurrence is None else [(pk, occurrence) for pk in user_ids]
        for start in range(0, len(rows), 1000):
            batch = rows[start : start + 1000]
            values = ", ".join(["(%s, %s, %s, %s, '', %s, %s, %s)"] * len(batch))
            cursor.execute(
                f"INSERT INTO {table} ({columns}) VALUES {values} ON CONFLICT DO NOTHING",  # noqa: S608
                [
                    v
                    for user_id, occ in batch
                    for v in (campaign.pk, user_id, occ, PENDING, campaign.version, message.pk, at)
                ],
            )


def _finish(
    campaign: Campaign, message: Message, *, now: datetime, run, quiet: bool, queue: bool = True
) -> DispatchResult:
    """Steps 2 to 6 over the message's pending rows, then the send (or, nobody left, no message)."""
    tenant = campaign.tenant
    pending = Recipient.objects.filter(message=message, state=PENDING)

    def skip(queryset, reason: str) -> None:
        queryset.update(state=Recipient.State.SKIPPED, reason=reason)

    # 2. Cooldown (a read; the claim in step 6 settles races).
    seconds = COOLDOWN_SECONDS.get(campaign.cooldown)
    recent = CampaignLastSend.objects.filter(campaign=campaign, user_id=OuterRef("user_id"))
    if seconds is not None:
        recent = recent.filter(sent_at__gt=now - timedelta(seconds=seconds))
    skip(pending.filter(Exists(recent)), SkipReason.COOLDOWN)

    # 3. Quiet hours, by the users' zones (a few distinct names, one UPDATE each).
    deferred = 0
    if quiet and limits.has_quiet_hours(tenant):
        names = set(
            AppUser.objects.filter(pk__in=pending.values("user_id")).values_list("timezone", flat=True)
        )
        for name, until in limits.quiet_zones(tenant=tenant, zone_names=names, now=now).items():
            inside = pending.filter(
                user_id__in=AppUser.objects.filter(tenant_id=tenant.pk, timezone=name).values("pk")
            )
            if campaign.quiet_hours_action == QuietHoursAction.DROP:
                skip(inside, SkipReason.QUIET_HOURS)
            else:
                deferred += inside.update(state=Recipient.State.DEFERRED, due_at=until, message=None)

    # 4. No device that allows pushes.
    skip(
        pending.filter(~Exists(Device.objects.targetable().filter(user_id=OuterRef("user_id")))),
        SkipReason.NO_DEVICE,
    )

    # 5 and 6, a chunk of users at a time: the frequency cap, then the cooldown claim and rotation.
    rotate = campaign.content_mode == ContentMode.ROTATE
    variants = max(message.variant_count, 1)
    last = 0
    while True:
        ids = list(
            pending.filter(user_id__gt=last).order_by("user_id").values_list("user_id", flat=True)[:CHUNK]
        )
        if not ids:
            break
        last = ids[-1]
        granted = limits.claim_marketing_slots(tenant=tenant, user_ids=ids, message_id=message.pk, now=now)
        if capped := [pk for pk in ids if pk not in granted]:
            skip(pending.filter(user_id__in=capped), SkipReason.FREQUENCY_CAP)
        chosen = _claim_cooldown(
            campaign, message, [pk for pk in ids if pk in granted], now, seconds, variants
        )
        if lost := [pk for pk in ids if pk in granted and pk not in chosen]:
            # A concurrent send reached them first: their cooldown runs; give the slot back.
            skip(pending.filter(user_id__in=lost), SkipReason.COOLDOWN)
            limits.release_marketing_slots(message_id=message.pk, user_ids=lost)
        _mark_sent(message, chosen if rotate else dict.fromkeys(chosen))

    result = DispatchResult(deferred=deferred)
    for state, reason, n in (
        Recipient.objects.filter(message=message)
        .values_list("state", "reason")
        .annotate(n=Count("pk"))
        .order_by()
    ):
        if state == Recipient.State.SENT:
            result.sent += n
        elif state == Recipient.State.SKIPPED:
            result.skipped[reason] = result.skipped.get(reason, 0) + n
    if not result.sent:
        Recipient.objects.filter(message=message).update(message=None)
        message.delete()
        return result
    _insert_message_recipients(message)
    CampaignSend.objects.create(
        campaign=campaign, message=message, version=campaign.version, run=run, created_at=now
    )
    result.message = send_message(message=message, queue=queue)
    log.info(
        "campaign send",
        extra={
            "campaign_id": campaign.pk,
            "message_id": message.pk,
            "sent": result.sent,
            "skipped": result.skipped,
        },
    )
    return result


def _claim_cooldown(campaign, message, user_ids: list[int], now, seconds, variants: int) -> dict[int, int]:
    """Step 6: move each user's CampaignLastSend on, unless within the cooldown (a row a
    concurrent send just wrote counts: the upsert waits for it). {user_id: variant}."""
    if not user_ids:
        return {}
    table, pending = _table(CampaignLastSend), _table(Recipient)
    if seconds is None:
        condition, params = "false", []
    else:
        condition, params = (
            f"{table}.sent_at <= %s",
            [connection.ops.adapt_datetimefield_value(now - timedelta(seconds=seconds))],
        )
    at = connection.ops.adapt_datetimefield_value(now)
    marks = ", ".join(["%s"] * len(user_ids))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (campaign_id, user_id, sent_at, variant, sends) "  # noqa: S608
            f"SELECT %s, r.user_id, %s, 0, 1 FROM {pending} r "
            f"WHERE r.message_id = %s AND r.state = %s AND r.user_id IN ({marks}) "
            f"ON CONFLICT (campaign_id, user_id) DO UPDATE SET sent_at = EXCLUDED.sent_at, "
            f"variant = ({table}.variant + 1) %% %s, sends = {table}.sends + 1 "
            f"WHERE {condition} RETURNING user_id, variant",
            [campaign.pk, at, message.pk, PENDING, *user_ids, variants, *params],
        )
        return {user_id: variant % variants for user_id, variant in cursor.fetchall()}


def _mark_sent(message: Message, variants: dict[int, int | None]) -> None:
    """The chunk's chosen users are sent, each with their variant (None: the message's split)."""
    if not variants:
        return
    by_variant: dict = {}
    for user_id, variant in variants.items():
        by_variant.setdefault(variant, []).append(user_id)
    for variant, ids in by_variant.items():
        Recipient.objects.filter(message=message, state=PENDING, user_id__in=ids).update(
            state=Recipient.State.SENT, variant=variant
        )


def _insert_message_recipients(message: Message) -> None:
    from messaging.models import MessageRecipient

    table, ledger = _table(MessageRecipient), _table(Recipient)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (message_id, user_id, variant) "  # noqa: S608
            f"SELECT message_id, user_id, variant FROM {ledger} WHERE message_id = %s AND state = %s",
            [message.pk, Recipient.State.SENT],
        )


# --- Statistics --------------------------------------------------------------------------


def campaign_stats(campaign: Campaign, since: datetime | None = None) -> dict:
    """What a campaign did (since `since`): users sent, deferred and skipped by reason (from
    the ledger); deliveries sent, failed and opened (from its messages); the same per variant
    and per scheduled run."""
    ledger = Recipient.objects.filter(campaign=campaign)
    sends = CampaignSend.objects.filter(campaign=campaign)
    deliveries = Delivery.objects.filter(message__campaign_send__campaign=campaign)
    if since is not None:
        ledger = ledger.filter(created_at__gte=since)
        sends = sends.filter(created_at__gte=since)
        deliveries = deliveries.filter(message__campaign_send__created_at__gte=since)
    tally = Counter()
    skipped: Counter = Counter()
    for state, reason, n in ledger.values_list("state", "reason").annotate(n=Count("pk")).order_by():
        tally[state] += n
        if state == Recipient.State.SKIPPED:
            skipped[reason] += n
    totals = sends.aggregate(
        messages=Count("pk"),
        delivered=Sum("message__sent_count"),
        failed=Sum("message__failed_count"),
        opened=Sum("message__opened_count"),
        targeted=Sum("message__targeted_count"),
    )
    per_variant = [
        {"variant": row["variant"], "sent": row["sent"], "failed": row["failed"], "opened": row["opened"]}
        for row in deliveries.values("variant")
        .annotate(
            sent=Count("pk", filter=Q(status=Delivery.Status.SENT)),
            failed=Count("pk", filter=Q(status=Delivery.Status.FAILED)),
            opened=Count("pk", filter=Q(opened_at__isnull=False)),
        )
        .order_by("variant")
    ]
    runs = CampaignRun.objects.filter(campaign=campaign)
    if since is not None:
        runs = runs.filter(due_at__gte=since)
    per_run = [
        {
            "id": run.pk,
            "occurrence": run.occurrence.isoformat(),
            "due_at": run.due_at,
            "state": run.state,
            "zones": run.zones,
            "recipients": run.recipients,
            "skipped": run.skipped,
        }
        for run in runs.order_by("due_at")[:500]
    ]
    delivered = totals["delivered"] or 0
    return {
        "users_sent": tally[Recipient.State.SENT],
        "users_deferred": tally[Recipient.State.DEFERRED],
        "users_skipped": sum(skipped.values()),
        "skipped": dict(skipped),
        "messages": totals["messages"],
        "targeted": totals["targeted"] or 0,
        "sent": delivered,
        "failed": totals["failed"] or 0,
        "opened": totals["opened"] or 0,
        "open_rate": (totals["opened"] or 0) / delivered if delivered else None,
        "per_variant": per_variant,
        "per_run": per_run,
        "pending_triggers": PendingTrigger.objects.filter(
            campaign=campaign, state=PendingTrigger.State.PENDING
        ).count(),
    }
