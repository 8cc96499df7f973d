"""Limits that protect users from marketing pushes: a tenant's daily frequency cap and quiet hours.

Both apply to campaign sends and to staff messages (admin, API, `send_push`) that are not
transactional; `/developer/push` and API messages flagged `transactional` are exempt, and so
are dry runs and topic or condition audiences (FCM fans those out; Herald sees no user).

- **Frequency cap** (`Tenant.marketing_daily_cap`): at most N marketing pushes per user per
  local day (the user's `timezone`, else the tenant's). A message counts once per user,
  however many devices or fan-out chunks reach them. The ledger is two tables:
  MarketingPush (message, user) says the message was counted for the user, MarketingDay
  (user, day) holds the count, raised by one conditional upsert per batch (`... ON CONFLICT
  DO UPDATE SET count = count + 1 WHERE count < cap`): on PostgreSQL two transactions
  granting a user's last slot at once serialize on the row, and the second sees the cap.
- **Quiet hours** (`quiet_hours_start`, `quiet_hours_end`, local times; the window may span
  midnight): a push due inside them waits until they end in the user's zone.
"""

import zoneinfo
from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta

from django.db import connection
from django.db.models import F
from django.utils import timezone

from devices.models import AppUser
from messaging.models import MarketingDay, MarketingPush, Message
from tenants.models import Tenant

# Skip reasons counted on Message.skipped for staff messages.
FREQUENCY_CAP = "frequency_cap"
QUIET_HOURS_DEFERRED = "quiet_hours_deferred"


def zone_for(*, tenant: Tenant, zone_name: str) -> zoneinfo.ZoneInfo:
    """A user's zone: their IANA `timezone` when Herald knows it, else the tenant's."""
    for name in (zone_name, tenant.time_zone, "UTC"):
        if not name:
            continue
        try:
            return zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            continue
    return zoneinfo.ZoneInfo("UTC")


def has_quiet_hours(tenant: Tenant) -> bool:
    return (
        tenant.quiet_hours_start is not None
        and tenant.quiet_hours_end is not None
        and tenant.quiet_hours_start != tenant.quiet_hours_end
    )


def _local(day: date, at: time, zone) -> datetime:
    # A wall-clock time a DST gap skips is read with the offset before the gap (fold=0),
    # which lands just after the gap: the quiet hours end no earlier than they say.
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


def quiet_until(*, tenant: Tenant, zone_name: str, now: datetime) -> datetime | None:
    """When the tenant's quiet hours end for a user in `zone_name` (the tenant's zone if
    blank or unknown), if `now` falls inside them; None otherwise."""
    if not has_quiet_hours(tenant):
        return None
    zone = zone_for(tenant=tenant, zone_name=zone_name)
    local = now.astimezone(zone)
    start, end, clock = tenant.quiet_hours_start, tenant.quiet_hours_end, local.time()
    today = local.date()
    if start < end:
        return _local(today, end, zone) if start <= clock < end else None
    # Spans midnight: 22:00–08:00.
    if clock >= start:
        return _local(today + timedelta(days=1), end, zone)
    if clock < end:
        return _local(today, end, zone)
    return None


def quiet_zones(*, tenant: Tenant, zone_names, now: datetime) -> dict[str, datetime]:
    """{zone name: when the quiet hours end} for the names (users' raw `timezone` values, ""
    included) whose users are inside the quiet hours at `now`."""
    if not has_quiet_hours(tenant):
        return {}
    out = {}
    for name in zone_names:
        until = quiet_until(tenant=tenant, zone_name=name, now=now)
        if until is not None:
            out[name] = until
    return out


def local_days(*, tenant: Tenant, zone_names, now: datetime) -> dict[date, list[str]]:
    """The users' raw `timezone` values grouped by the local date each puts `now` on (two or
    three dates at any instant, so a few statements cover any number of users)."""
    days: dict[date, list[str]] = defaultdict(list)
    for name in zone_names:
        days[now.astimezone(zone_for(tenant=tenant, zone_name=name)).date()].append(name)
    return dict(days)


def is_marketing(message: Message) -> bool:
    """Whether the marketing limits apply to a staff message (campaign sends apply their own)."""
    from messaging.models import Audience

    return not (
        message.transactional
        or message.dry_run
        or message.source in (Message.Source.DEVELOPER_PUSH, Message.Source.CAMPAIGN)
        or message.audience in (Audience.TOPIC, Audience.CONDITION)
    )


def applies(tenant: Tenant) -> bool:
    """Whether the tenant has any marketing limit set."""
    return tenant.marketing_daily_cap is not None or has_quiet_hours(tenant)


def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def claim_marketing_slots(*, tenant: Tenant, user_ids, message_id: int, now: datetime) -> set[int]:
    """Count message `message_id` against each user's local day and return the users still
    under the tenant's cap (all of them when there is no cap).

    Idempotent per (message, user): a user the message was counted for already is returned
    again without counting twice (another device, another chunk, a re-run after a crash).
    Race-proof: the counter is raised by a conditional upsert, so of two transactions giving
    a user's last slot, the second waits for the first and finds the cap reached.
    """
    user_ids = list(dict.fromkeys(user_ids))
    if tenant.marketing_daily_cap is None or not user_ids:
        return set(user_ids)
    if tenant.marketing_daily_cap == 0:
        return set()
    zones = defaultdict(list)
    for pk, name in AppUser.objects.filter(pk__in=user_ids).values_list("pk", "timezone"):
        zones[name].append(pk)
    granted: set[int] = set()
    for day, names in local_days(tenant=tenant, zone_names=zones, now=now).items():
        ids = [pk for name in names for pk in zones[name]]
        granted |= _claim_day(tenant=tenant, user_ids=ids, message_id=message_id, day=day)
    return granted


def _claim_day(*, tenant: Tenant, user_ids: list[int], message_id: int, day: date) -> set[int]:
    cap = tenant.marketing_daily_cap
    push, counter = _table(MarketingPush), _table(MarketingDay)
    granted: set[int] = set()
    step = 5000
    with connection.cursor() as cursor:
        for start in range(0, len(user_ids), step):
            ids = user_ids[start : start + step]
            # First the (message, user) row: the rows this statement inserts are this
            # transaction's to count; a user whose row exists was counted already.
            rows = ", ".join(["(%s, %s, %s)"] * len(ids))
            cursor.execute(
                f"INSERT INTO {push} (user_id, message_id, day) VALUES {rows} "  # noqa: S608
                "ON CONFLICT (message_id, user_id) DO NOTHING RETURNING user_id",
                [v for pk in ids for v in (pk, message_id, day)],
            )
            new = [row[0] for row in cursor.fetchall()]
            granted |= set(ids) - set(new)
            if not new:
                continue
            values = ", ".join(["(%s, %s, %s, 1)"] * len(new))
            cursor.execute(
                f"INSERT INTO {counter} (tenant_id, user_id, day, count) VALUES {values} "  # noqa: S608
                f"ON CONFLICT (user_id, day) DO UPDATE SET count = {counter}.count + 1 "
                f"WHERE {counter}.count < %s RETURNING user_id",
                [v for pk in new for v in (tenant.pk, pk, day)] + [cap],
            )
            won = {row[0] for row in cursor.fetchall()}
            granted |= won
            if capped := [pk for pk in new if pk not in won]:
                MarketingPush.objects.filter(message_id=message_id, user_id__in=capped).delete()
    return granted


def release_marketing_slots(*, message_id: int, user_ids) -> None:
    """Give back the slots `message_id` took for these users (they were not sent after all)."""
    user_ids = list(user_ids)
    for start in range(0, len(user_ids), 5000):
        pushes = MarketingPush.objects.filter(
            message_id=message_id, user_id__in=user_ids[start : start + 5000]
        )
        for user_id, day in list(pushes.values_list("user_id", "day")):
            MarketingDay.objects.filter(user_id=user_id, day=day, count__gt=0).update(count=F("count") - 1)
        pushes.delete()


def hold_back(*, message: Message, rows, assigned: list[tuple], now: datetime) -> list[tuple[datetime, list]]:
    """A staff marketing message's chunk under the tenant's limits: the assigned
    (device_id, variant, language) rows grouped by when they may be sent, without the
    devices of capped users. Devices in the quiet hours wait until they end (and count
    against the day they are sent on). What was held back is added to Message.skipped.

    `rows` are the chunk's (device_id, user_id, ...) rows, `assigned` what fan-out chose."""
    tenant = message.tenant
    user_of = {row[0]: row[1] for row in rows}
    users = {user_of[a[0]] for a in assigned}
    zone_of_user = dict(AppUser.objects.filter(pk__in=users).values_list("pk", "timezone"))
    quiet = quiet_zones(tenant=tenant, zone_names=set(zone_of_user.values()), now=now)
    due_of_user = {pk: quiet.get(zone_of_user.get(pk, ""), now) for pk in users}
    by_due: dict[datetime, list[int]] = defaultdict(list)
    for pk, due in due_of_user.items():
        by_due[due].append(pk)
    granted: set[int] = set()
    for due, ids in by_due.items():
        granted |= claim_marketing_slots(tenant=tenant, user_ids=ids, message_id=message.pk, now=due)
    groups: dict[datetime, list] = defaultdict(list)
    capped = deferred = 0
    for row in assigned:
        user = user_of[row[0]]
        if user not in granted:
            capped += 1
            continue
        due = due_of_user[user]
        deferred += due != now
        groups[due].append(row)
    if capped or deferred:
        counts = dict(Message.objects.filter(pk=message.pk).values_list("skipped", flat=True).get() or {})
        for reason, n in ((FREQUENCY_CAP, capped), (QUIET_HOURS_DEFERRED, deferred)):
            if n:
                counts[reason] = counts.get(reason, 0) + n
        Message.objects.filter(pk=message.pk).update(skipped=counts)
    return sorted(groups.items(), key=lambda item: item[0])


def prune_ledger(*, now: datetime | None = None) -> int:
    """Delete ledger rows of days that ended everywhere (older than two days)."""
    now = now or timezone.now()
    cutoff = (now - timedelta(days=2)).date()
    pushes, _ = MarketingPush.objects.filter(day__lt=cutoff).delete()
    days, _ = MarketingDay.objects.filter(day__lt=cutoff).delete()
    return pushes + days
