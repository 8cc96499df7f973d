"""Writing devices, users and events: what POST /events and POST /devices/refresh-token do.

Both run in one transaction and are safe under concurrency on PostgreSQL. Every
transaction first takes a transaction-scoped advisory lock on each token it touches, in
one global order, so that work on one token is serialised and two requests can never
hold each other's locks (row locks alone deadlocked when a refresh and an event raced to
put the same new token into the unique index). Inserts that may still race (one user
named by two devices, a retried event) lean on the unique constraints (tenant +
app_user_id, tenant + event fingerprint) rather than on a check-then-insert. SQLite
needs no more: its IMMEDIATE transactions (see settings) admit one writer at a time.
"""

import hashlib
import json
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from api import metrics
from devices.models import AppUser, Device, Event, TokenRotation, hash_token
from devices.signals import (
    app_user_erasing,
    devices_deactivated,
    event_recorded,
    token_rotated,
    token_rotated_may_write,
)
from tenants.models import Tenant

# An event writes its device's and its user's last_seen_at only when the stored value is older
# than this (or when something else in the row changes): a device sending ten events a minute
# gets one new row version a minute instead of ten, each of which rewrote the device's index
# entries (last_seen_at is indexed, so the update is never HOT). Everything that reads
# last_seen_at asks in days (segments' first_seen/last_seen rules, dormancy, stale devices,
# campaign health) or shows it to the minute (the admin); the data API's seen_after and
# seen_before filters see it up to this much behind (README.md, "Data API").
LAST_SEEN_GRANULARITY = timedelta(seconds=60)


class DeviceError(Exception):
    """A refresh or registration that cannot be done as asked."""


class IdenticalTokens(DeviceError):
    pass


class DeviceNotFound(DeviceError):
    pass


class TokenOwnedByAnotherUser(DeviceError):
    pass


def anonymous_user_id(*, tenant: Tenant, token: str) -> str:
    """The id of a user the app did not name, derived from the device's first token.

    Deriving it (rather than drawing a random one) makes concurrent first events of one
    install agree on the same user; after a token rotation the device keeps its user, so
    the id stays stable for the device.
    """
    return "anon_" + hashlib.sha256(f"{tenant.pk}:{token}".encode()).hexdigest()[:24]


def event_fingerprint(
    *,
    tenant: Tenant,
    app_user_id: str,
    device_token: str,
    event_name: str,
    event_time: datetime,
    session_id: str,
    params: dict,
) -> str:
    """A stable id of an event: the same event sent twice (a retry) gets the same one."""
    canonical = _CANONICAL_JSON.encode(
        [
            tenant.pk,
            app_user_id,
            device_token,
            event_name,
            event_time.astimezone(timezone.UTC).isoformat(),
            session_id,
            params,
        ]
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


# What json.dumps(…, sort_keys=True, separators=(",", ":"), ensure_ascii=False) writes, with
# the encoder built once: json.dumps builds one per call when given options.
_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _upsert_user(
    *, tenant: Tenant, app_user_id: str, now: datetime, anonymous: bool = False, **profile
) -> AppUser:
    """Create the user or update its profile: one INSERT … ON CONFLICT DO UPDATE.

    The unique constraint (tenant, app_user_id) arbitrates concurrent first sightings of
    one user, so they end with one row and neither fails. Only the primary key of the
    returned object is to be trusted (an existing row keeps its first_seen_at).
    """
    user = AppUser(
        tenant=tenant,
        app_user_id=app_user_id,
        is_anonymous=anonymous,
        first_seen_at=now,
        last_seen_at=now,
        **profile,
    )
    AppUser.objects.bulk_create(
        [user],
        update_conflicts=True,
        unique_fields=["tenant", "app_user_id"],
        update_fields=[*profile, "last_seen_at"],
    )
    return user


def _get_or_create_user(*, tenant: Tenant, app_user_id: str) -> AppUser:
    # get_or_create inserts inside a savepoint and re-reads on IntegrityError, which is
    # what makes concurrent first sightings of one user end with one row.
    user, _ = AppUser.objects.get_or_create(tenant=tenant, app_user_id=app_user_id)
    return user


def _lock_keys(*, tenant: Tenant, token_hashes: list[str]) -> list[int]:
    """The advisory-lock keys of these tokens, in the one global order locks are taken in."""
    return sorted(
        {
            int.from_bytes(hashlib.sha256(f"{tenant.pk}:{h}".encode()).digest()[:8], "big", signed=True)
            for h in token_hashes
        }
    )


def _lock_keys_literal(*, tenant: Tenant, token_hashes: list[str]) -> str:
    """_lock_keys as PostgreSQL's array literal, for a ``%s::bigint[]`` parameter: psycopg adapts
    a Python list through its generic array dumper, ~27 µs of client CPU per call on the
    one-round-trip paths (/events, the refresh), against a string's ~0."""
    return "{" + ",".join(map(str, _lock_keys(tenant=tenant, token_hashes=token_hashes))) + "}"


# Takes the advisory locks in array order: callers pass _lock_keys() (sorted).
LOCK_SQL = "SELECT pg_advisory_xact_lock(k) FROM unnest(%(lock_keys)s::bigint[]) AS k"


def _lock_tokens(*, tenant: Tenant, token_hashes: list[str]) -> None:
    """Serialise transactions that touch the same tokens (PostgreSQL advisory locks)."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(LOCK_SQL, {"lock_keys": _lock_keys(tenant=tenant, token_hashes=token_hashes)})


def _locked_device(*, tenant: Tenant, token_hash: str) -> Device | None:
    return (
        Device.objects.select_for_update(of=("self",))
        .select_related("user")
        .filter(tenant=tenant, token_hash=token_hash)
        .first()
    )


@dataclass(frozen=True, kw_only=True)
class EventInput:
    event_name: str
    event_time: datetime
    device_token: str
    platform: str
    push_permission_granted: bool
    timezone: str
    language: str
    country: str
    session_id: str
    app_user_id: str = ""
    params: dict | None = None
    token_kind: str = Device.TokenKind.REGISTRATION


def fingerprint_of(*, tenant: Tenant, event: EventInput, params: dict) -> str:
    """event_fingerprint of an EventInput (`params`: its params, {} for none): what POST /events
    answers, whether it writes the event (record_event) or queues it (devices/ingest.py)."""
    return event_fingerprint(
        tenant=tenant,
        app_user_id=event.app_user_id,
        device_token=event.device_token,
        event_name=event.event_name,
        event_time=event.event_time,
        session_id=event.session_id,
        params=params,
    )


def record_event(*, tenant: Tenant, event: EventInput) -> Event:
    """Store an event and, in the same transaction, create or update its user and device.

    A new token creates the device; a known token updates it (user, platform, permission,
    session) and brings it back to life if it had been deactivated. Sending the same
    event twice stores it once and returns the same fingerprint.
    """
    now = timezone.now()
    params = event.params or {}
    fingerprint = fingerprint_of(tenant=tenant, event=event, params=params)
    if connection.vendor == "postgresql":
        stored = _record_event_postgresql(
            tenant=tenant, event=event, params=params, fingerprint=fingerprint, now=now
        )
    else:
        stored = _record_event_portable(
            tenant=tenant, event=event, params=params, fingerprint=fingerprint, now=now
        )
    transaction.on_commit(metrics.EVENTS_RECORDED.inc)
    if event_recorded.receivers:
        transaction.on_commit(lambda: event_recorded.send(Event, tenant_id=tenant.pk, name=event.event_name))
    return stored


# POST /events on PostgreSQL: one round trip, one transaction. The function (migrations
# devices 0006 and 0008) takes the token's advisory lock, then reads the device, writes the
# user and the device only where the event changes them (or their last_seen_at is older than
# LAST_SEEN_GRANULARITY) and inserts the event; in READ COMMITTED each statement reads what
# the last holder of the lock committed, exactly as the statements of _record_event_portable
# do. Its arguments travel as one jsonb document.
RECORD_EVENT_SQL = "SELECT recorded_device, recorded_user FROM herald_record_event(%s::bigint[], %s::jsonb)"


def event_document(
    *, tenant: Tenant, event: EventInput, params: dict, fingerprint: str, now: datetime, token_hash: str
) -> dict:
    """The arguments of herald_record_event for this event, as one JSON-able document: what
    POST /events writes, computed at the time `now` the request was accepted. Queued
    ingestion (devices/ingest.py) stores exactly this document in its stream."""
    return {
        "tenant": tenant.pk,
        "token_hash": token_hash,
        "app_user_id": event.app_user_id or anonymous_user_id(tenant=tenant, token=event.device_token),
        "anonymous": not event.app_user_id,
        "language": event.language,
        "country": event.country,
        "timezone": event.timezone,
        "now": now.isoformat(),
        "seen_since": (now - LAST_SEEN_GRANULARITY).isoformat(),
        "token": event.device_token,
        "token_kind": event.token_kind,
        "platform": event.platform,
        "permission": event.push_permission_granted,
        "session_id": event.session_id,
        "name": event.event_name,
        "occurred_at": event.event_time.isoformat(),
        "params": params,
        "fingerprint": fingerprint,
    }


def _record_event_postgresql(
    *, tenant: Tenant, event: EventInput, params: dict, fingerprint: str, now: datetime
) -> Event:
    token_hash = hash_token(event.device_token)
    arguments = event_document(
        tenant=tenant, event=event, params=params, fingerprint=fingerprint, now=now, token_hash=token_hash
    )
    with connection.cursor() as cursor:
        cursor.execute(
            RECORD_EVENT_SQL,
            [_lock_keys_literal(tenant=tenant, token_hashes=[token_hash]), json.dumps(arguments)],
        )
        device_id, user_id = cursor.fetchone()
    # Positional arguments, in the fields' order: Model.__init__ takes keywords (and a related
    # object) at twice the cost, a measurable share of this path.
    values = {
        "id": None,
        "tenant_id": tenant.pk,
        "user_id": user_id,
        "device_id": device_id,
        "name": event.event_name,
        "occurred_at": event.event_time,
        "received_at": now,
        "session_id": event.session_id,
        "params": params,
        "fingerprint": fingerprint,
    }
    return Event(*(values[name] for name in _EVENT_ATTNAMES))


_EVENT_ATTNAMES = [field.attname for field in Event._meta.concrete_fields]


def _record_event_portable(
    *, tenant: Tenant, event: EventInput, params: dict, fingerprint: str, now: datetime
) -> Event:
    """record_event through the ORM, for SQLite: its IMMEDIATE transactions admit one writer."""
    token_hash = hash_token(event.device_token)
    profile = {"language": event.language, "country": event.country, "timezone": event.timezone}
    seen_since = now - LAST_SEEN_GRANULARITY
    with transaction.atomic():
        _lock_tokens(tenant=tenant, token_hashes=[token_hash])
        device = _locked_device(tenant=tenant, token_hash=token_hash)
        if device is not None and event.app_user_id in ("", device.user.app_user_id):
            user = device.user
        else:
            app_user_id = event.app_user_id or anonymous_user_id(tenant=tenant, token=event.device_token)
            user = AppUser.objects.filter(tenant=tenant, app_user_id=app_user_id).first()
            if user is None:
                user = _upsert_user(
                    tenant=tenant,
                    app_user_id=app_user_id,
                    anonymous=not event.app_user_id,
                    now=now,
                    **profile,
                )
        if user.last_seen_at != now and _differs(user, profile, seen_since):
            AppUser.objects.filter(pk=user.pk).update(last_seen_at=now, **profile)

        if device is None:
            device = _create_device(tenant=tenant, user=user, event=event, now=now)
        changes = {
            "user_id": user.pk,
            "platform": event.platform,
            "push_permission": event.push_permission_granted,
            "token_kind": event.token_kind,
            "last_session_id": event.session_id,
            "is_active": True,
            "deactivated_at": None,
            "deactivation_reason": "",
        }
        # An existing row (or one a concurrent request made) that the event changes or that
        # was last seen over LAST_SEEN_GRANULARITY ago: one UPDATE of those fields.
        if device.last_seen_at != now and _differs(device, changes, seen_since):
            Device.objects.filter(pk=device.pk).update(last_seen_at=now, **changes)
            device.user = user

        stored = Event(
            tenant=tenant,
            user=user,
            device=device,
            name=event.event_name,
            occurred_at=event.event_time,
            session_id=event.session_id,
            params=params,
            fingerprint=fingerprint,
            received_at=now,
        )
        # The same event again (a client retry) is stored already: ON CONFLICT DO NOTHING.
        Event.objects.bulk_create([stored], ignore_conflicts=True)
    return stored


def _differs(row, values: dict, seen_since: datetime) -> bool:
    """Whether writing these values and a new last_seen_at would change the row (see
    LAST_SEEN_GRANULARITY): a value differs, or last_seen_at is older than seen_since."""
    return row.last_seen_at < seen_since or any(getattr(row, k) != v for k, v in values.items())


def _create_device(*, tenant: Tenant, user: AppUser, event: EventInput, now: datetime) -> Device:
    """Insert the device, or lock the one a concurrent request inserted a moment ago."""
    device = Device(
        tenant=tenant,
        user=user,
        token=event.device_token,
        token_kind=event.token_kind,
        platform=event.platform,
        push_permission=event.push_permission_granted,
        last_session_id=event.session_id,
        created_at=now,
        last_seen_at=now,
        token_updated_at=now,
    )
    try:
        with transaction.atomic():
            device.save()
        return device
    except IntegrityError:
        return _locked_device(tenant=tenant, token_hash=hash_token(event.device_token))


def refresh_token(
    *,
    tenant: Tenant,
    old_token: str,
    new_token: str,
    app_user_id: str = "",
    platform: str = "",
    queued_entries: list[str] | None = None,
) -> Device:
    """Swap a rotated FCM token in place: the same device row now holds new_token.

    The old token goes into the device's history and can no longer be targeted.

    When another row already holds new_token, it is the same phone seen twice (for
    instance, the app sent an event with the new token before refreshing). The rule:

    * the requester is the user named by app_user_id, or else the device's own user;
    * if the row holding new_token belongs to a *known* (not anonymous) user other
      than a known requester: TokenOwnedByAnotherUser (HTTP 409), nothing changes;
    * otherwise that row is merged into the old token's row (its events and history
      move over, it is deleted), and the device belongs to the requester if known,
      else to the other row's known user, else stays anonymous.

    Repeating a refresh that already happened (a client retry) succeeds again.

    In queued ingestion, the queued events of both tokens are stored first; queued_entries, when
    the caller read them already (the ids of their newest entries), saves asking Redis again.
    """
    if old_token == new_token:
        raise IdenticalTokens
    if settings.EVENTS_INGEST == "queue":
        # Queued events of either token are stored before the swap (devices/ingest.py, "Ordering
        # with POST /devices/refresh-token"); imported here because ingest imports this module.
        from devices import ingest

        ingest.write_queued_events_of(tenant=tenant, tokens=[old_token, new_token], queued=queued_entries)
    if connection.vendor == "postgresql":
        # A transaction of its own only when a receiver of token_rotated may write for the tenant
        # (a webhook's outbox row), so that what it writes commits or rolls back with the
        # rotation; otherwise the swap is one statement in autocommit: one round trip, no BEGIN
        # and COMMIT.
        atomic = transaction.atomic() if token_rotated_may_write(tenant.pk) else nullcontext()
        with atomic:
            device = _refresh_token_postgresql(
                tenant=tenant,
                old_token=old_token,
                new_token=new_token,
                app_user_id=app_user_id,
                platform=platform,
            )
            if device is not None:
                transaction.on_commit(metrics.TOKEN_ROTATIONS.inc)
                token_rotated.send(sender=Device, device=device, at=device.token_updated_at)
                return device
    with transaction.atomic():
        return _refresh_token(
            tenant=tenant,
            old_token=old_token,
            new_token=new_token,
            app_user_id=app_user_id,
            platform=platform,
        )


# The common refresh on PostgreSQL in one round trip, sent and run as RECORD_EVENT_SQL is (the
# function is in migration devices 0006): the device holding old_token takes new_token, when no
# row holds new_token yet and the named user (if any) exists. Anything else (a merge, a retry,
# a 404 or 409, a user seen for the first time) changes nothing here and goes through
# _refresh_token.
_DEVICE_COLUMNS = [field.column for field in Device._meta.concrete_fields]
REFRESH_TOKEN_SQL = (
    "SELECT " + ", ".join(_DEVICE_COLUMNS) + " FROM herald_refresh_token(%s::bigint[], %s::jsonb)"
)


def _refresh_token_postgresql(*, tenant, old_token, new_token, app_user_id, platform) -> Device | None:
    old_hash, new_hash = hash_token(old_token), hash_token(new_token)
    arguments = {
        "tenant": tenant.pk,
        "old_hash": old_hash,
        "new_hash": new_hash,
        "old_token": old_token,
        "new_token": new_token,
        "app_user_id": app_user_id,
        "platform": platform,
        "now": timezone.now().isoformat(),
    }
    with connection.cursor() as cursor:
        cursor.execute(
            REFRESH_TOKEN_SQL,
            [_lock_keys_literal(tenant=tenant, token_hashes=[old_hash, new_hash]), json.dumps(arguments)],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    return Device.from_db(connection.alias, [f.attname for f in Device._meta.concrete_fields], row)


def _refresh_token(*, tenant, old_token, new_token, app_user_id, platform) -> Device:
    old_hash, new_hash = hash_token(old_token), hash_token(new_token)
    _lock_tokens(tenant=tenant, token_hashes=[old_hash, new_hash])
    rows = list(
        Device.objects.select_for_update(of=("self",))
        .select_related("user")
        .filter(tenant=tenant, token_hash__in=[old_hash, new_hash])
        .order_by("pk")
    )
    device = next((d for d in rows if d.token_hash == old_hash), None)
    holder = next((d for d in rows if d.token_hash == new_hash), None)

    if device is None:
        if holder is not None and holder.rotations.filter(old_token_hash=old_hash).exists():
            return holder  # this very swap was made already; the client is retrying
        raise DeviceNotFound

    requester = _get_or_create_user(tenant=tenant, app_user_id=app_user_id) if app_user_id else device.user
    owner = requester
    now = timezone.now()
    if holder is not None:
        if not holder.user.is_anonymous and not requester.is_anonymous and holder.user_id != requester.pk:
            raise TokenOwnedByAnotherUser
        if requester.is_anonymous and not holder.user.is_anonymous:
            owner = holder.user
        if holder.last_seen_at > device.last_seen_at:
            device.push_permission = holder.push_permission
            device.last_session_id = holder.last_session_id
        Event.objects.filter(device=holder).update(device=device)
        TokenRotation.objects.filter(device=holder).update(device=device)
        holder.delete()

    TokenRotation.objects.create(
        device=device, old_token=old_token, old_token_hash=old_hash, new_token=new_token, rotated_at=now
    )
    transaction.on_commit(metrics.TOKEN_ROTATIONS.inc)
    device.set_token(new_token)
    device.user = owner
    if platform:
        device.platform = platform
    if not device.is_active:
        device.reactivate()
    device.last_seen_at = now
    device.save()
    token_rotated.send(sender=Device, device=device, at=now)
    return device


def deactivate_devices(*, device_ids: list[int], reason: str) -> int:
    """Stop targeting these devices (FCM said their tokens are dead). One UPDATE."""
    if not device_ids:
        return 0
    now = timezone.now()
    changed = Device.objects.filter(pk__in=device_ids).deactivate(reason=reason, now=now)
    if changed:
        devices_deactivated.send(
            sender=Device, tenant_id=None, device_ids=device_ids, reason=reason[:64], at=now
        )
    return changed


def deactivate_stale_devices(*, tenant: Tenant | None = None, days: int) -> int:
    """Deactivate devices not seen for `days` days; FCM expires such tokens anyway."""
    now = timezone.now()
    devices = Device.objects.filter(is_active=True, last_seen_at__lt=now - timedelta(days=days))
    if tenant is not None:
        devices = devices.filter(tenant=tenant)
    changed = devices.deactivate(reason="STALE", now=now)
    if changed:
        devices_deactivated.send(
            sender=Device, tenant_id=tenant.pk if tenant else None, device_ids=None, reason="STALE", at=now
        )
    return changed


def erase_app_user(*, tenant: Tenant, app_user_id: str) -> dict[str, int]:
    """Delete a user, their devices, events and token history; return what went, by kind.

    Idempotent: an unknown (or already erased) user removes nothing and every count is 0.
    One transaction, holding the user's token locks (as events and refreshes do), so a
    concurrent event of the user's phone waits rather than deadlocks. Before deleting,
    ``app_user_erasing`` lets the rooms above remove what they hold (messaging anonymises
    deliveries); their counts join the answer.
    """
    counts = dict.fromkeys(ERASED_KINDS, 0)
    with transaction.atomic():
        hashes = list(
            Device.objects.filter(tenant=tenant, user__app_user_id=app_user_id).values_list(
                "token_hash", flat=True
            )
        )
        _lock_tokens(tenant=tenant, token_hashes=hashes)
        user = AppUser.objects.select_for_update().filter(tenant=tenant, app_user_id=app_user_id).first()
        if user is None:
            return counts
        device_ids = list(Device.objects.filter(user=user).values_list("pk", flat=True))
        tokens = set(Device.objects.filter(pk__in=device_ids).values_list("token", flat=True))
        for old, new in TokenRotation.objects.filter(device_id__in=device_ids).values_list(
            "old_token", "new_token"
        ):
            tokens.update((old, new))
        for _, removed in app_user_erasing.send(
            sender=AppUser, tenant=tenant, app_user_id=app_user_id, device_ids=device_ids, tokens=tokens
        ):
            for kind, n in (removed or {}).items():
                counts[kind] = counts.get(kind, 0) + n
        counts["token_rotations"] = _delete(TokenRotation.objects.filter(device_id__in=device_ids))
        counts["events"] = _delete(Event.objects.filter(user=user))
        counts["devices"] = _delete(Device.objects.filter(pk__in=device_ids))
        counts["app_users"] = _delete(AppUser.objects.filter(pk=user.pk))
    return counts


ERASED_KINDS = ("app_users", "devices", "events", "token_rotations")


def _delete(queryset) -> int:
    _, per_model = queryset.delete()
    return per_model.get(queryset.model._meta.label, 0)
