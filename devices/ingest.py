"""Queued ingestion (EVENTS_INGEST=queue): POST /events appends to a Redis stream, a writer
stores the stream in batches.

Why: the synchronous write of an event costs the web process ~1.5 ms of CPU and PostgreSQL
~1 ms, and /events could not reach half of a bare Django view's throughput with it
(bench/README.md, issue 16). Queued, the request validates, authenticates, counts its rate
limits and appends the event in one Redis round trip (api.throttling.hit_unless),
and `manage.py herald_ingest` writes hundreds of events per transaction. A 200 then means
"queued": the event is as durable as Redis is.

**The entry.** One stream entry per accepted event, with the exact document the direct path
passes to herald_record_event (services.event_document), computed when the request was
accepted (so received_at and last_seen_at are the request's time, not the writer's), and
the tenant's pk on its own for an operator reading the stream. The same event sent twice
gets the same fingerprint on both paths.

**The writer.** Every consumer of the stream (herald_ingest, and a token refresh that
drains, below) reads and applies inside one database transaction that first takes the
ingest lock: a PostgreSQL transaction-scoped advisory lock (SQLite's IMMEDIATE transactions
admit one writer at a time anyway). So one consumer applies at a time, in stream order, and
whoever holds the lock knows that every entry still pending in the consumer group (read,
not acknowledged) is either applied and committed already (its consumer is between commit
and acknowledgement) or orphaned by a consumer that died before committing. It can take
them all over at once (XAUTOCLAIM with no idle time) and apply them in order with the new
ones: an orphaned entry is applied before anything newer, and an applied one is skipped,
because a document whose (tenant, fingerprint) event is stored already is skipped whole (a
re-delivered entry must not put an old device or user state back over a newer one). After
commit the consumer acknowledges and deletes the entries (XACK, XDEL) and fires what the
direct path fires on commit (metrics.EVENTS_RECORDED, devices.signals.event_recorded).
Several herald_ingest processes may run: one applies, the others wait on the lock, which
makes them stand-bys rather than extra throughput. The lock also keeps campaign matching
whole (campaigns/triggers.py): a queued event's received_at is the request's time, often
older than CAMPAIGN_EVENT_SETTLE_SECONDS by the time it is written, so the matcher's cursor
would pass a batch still uncommitted if another consumer committed higher ids meanwhile;
consumers commit one at a time, so queued events' ids commit in order.

A document that cannot be applied (not JSON, a field missing or of the wrong type, a tenant
deleted since, a value the database refuses) goes to the dead-letter stream with the reason,
and is logged by entry id and reason only (the entry holds a device token); the rest of the
batch is applied.

**Ordering with POST /devices/refresh-token**, which stays synchronous (its 404 and 409
depend on the device rows). The append also sets a marker, HSET herald:ingest:pending
"<tenant pk>:<token hash>" to the entry's id; a consumer removes a marker after acknowledging
its entry, only if it still names that entry (a newer event of the token keeps its own). A
refresh first reads the markers of its old and new token; if either has queued events, the
refresh consumes the stream itself (as a consumer, under the ingest lock, its own transaction)
until it has applied the newest of them, then does its write. So a new install's first event
still queued when the app rotates its token is stored before the rotation (the refresh does
not answer 404), and an old token's queued event cannot be applied after the rotation (which
would bring back a device for the retired token).

What remains: an event accepted while a refresh of its token is already past its check is
concurrent with the refresh, and either order can happen (as in direct mode, where the two
race for the token's lock). Entries read by a consumer that dies before committing are
applied by the next consumer to take the lock, before anything newer. Entries lost with
Redis (a Redis that restarts without its append-only file, or loses the last second of it
with appendfsync everysec) are lost: a 200 meant "queued". Without Redis (an error, the
circuit breaker open), a request writes its event directly, as in direct mode, and a refresh
does not wait for queued events it cannot read. A refresh waits at most
REFRESH_LOCK_TIMEOUT_MS for the ingest lock (a writer stopped while holding it must not hang
the API): past it, the refresh goes on and its tokens' queued events are written after it.
The stream is bounded (EVENTS_INGEST_MAX_QUEUED): when it is full, as when Redis is down, a
request writes its event directly, ahead of its device's older queued events.
"""

import json
import logging
import os
import socket
from dataclasses import dataclass
from datetime import datetime

import redis
from django.conf import settings
from django.db import DataError, IntegrityError, OperationalError, connection, transaction
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily

from api import metrics, throttling
from api.health import Unhealthy
from devices import services
from devices.models import Device, Event, Platform, hash_token
from devices.signals import event_recorded
from tenants.models import Tenant

log = logging.getLogger("herald.ingest")

STREAM = "herald:ingest:events"
GROUP = "herald-ingest"
DEAD_LETTERS = "herald:ingest:dead"
PENDING = "herald:ingest:pending"  # "<tenant pk>:<token hash>" -> the id of its newest queued entry

# The ingest lock's advisory-lock key: a constant far from the tokens' sha256-derived keys.
INGEST_LOCK_KEY = int.from_bytes(b"herald:i", "big", signed=True)
# How long a refresh waits for the ingest lock (a writer holds it for a batch, a few hundred ms
# at most): past it the refresh goes on, and the queued events of its tokens come after it.
REFRESH_LOCK_TIMEOUT_MS = 3000
# At most this many batches applied by a refresh before its own write (a writer that keeps up
# leaves under a second of arrivals queued: one or two batches).
REFRESH_MAX_BATCHES = 4
REFRESH_BATCH = 500
MAX_BATCH = 5000  # the acknowledgement script unpacks ids into one Redis command


def queue_enabled() -> bool:
    return settings.EVENTS_INGEST == "queue"


# --- The web side ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class QueuedEvent:
    """What POST /events answers and what it appends, for one accepted event."""

    fingerprint: str
    append: throttling.StreamAppend


def document_of(*, tenant: Tenant, event: services.EventInput, now: datetime) -> dict:
    """The document services.record_event would pass to the database for this event, accepted
    at `now`: what a stream entry carries (its fingerprint and token hash included)."""
    params = event.params or {}
    return services.event_document(
        tenant=tenant,
        event=event,
        params=params,
        fingerprint=services.fingerprint_of(tenant=tenant, event=event, params=params),
        now=now,
        token_hash=hash_token(event.device_token),
    )


def prepare(*, tenant: Tenant, event: services.EventInput) -> QueuedEvent:
    """The stream entry (and marker) of an accepted event, and its fingerprint: the document
    services.record_event would pass to the database, with now = this moment."""
    document = document_of(tenant=tenant, event=event, now=timezone.now())
    return QueuedEvent(
        fingerprint=document["fingerprint"],
        append=throttling.StreamAppend(
            stream=STREAM,
            fields=("t", str(tenant.pk), "d", json.dumps(document)),
            marker_hash=PENDING,
            marker_field=f"{tenant.pk}:{document['token_hash']}",
            max_length=settings.EVENTS_INGEST_MAX_QUEUED,
        ),
    )


def accepted(queued: QueuedEvent, entry_id: str | None, *, tenant: Tenant, event: services.EventInput) -> str:
    """The fingerprint to answer for an event whose entry was appended to the stream as entry_id.
    Not appended ('' when the stream held EVENTS_INGEST_MAX_QUEUED entries, None when Redis
    failed or is shunned), the event is written directly: an accepted event is never lost."""
    if entry_id == "":
        metrics.EVENTS_QUEUE_FULL.inc()
    elif entry_id is not None:
        metrics.EVENTS_QUEUED.inc()
        return queued.fingerprint
    return services.record_event(tenant=tenant, event=event).fingerprint


def accept_event(*, tenant: Tenant, event: services.EventInput) -> str:
    """Queue the event (one round trip to Redis) and return its fingerprint; without Redis
    (an error, the circuit breaker open) write it directly: an accepted event is never lost."""
    queued = prepare(tenant=tenant, event=event)
    return accepted(queued, throttling.append_to_stream(queued.append), tenant=tenant, event=event)


# --- Reading and applying the stream ---------------------------------------------------------------


def _stream_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


_DOCUMENT_FIELDS = {
    "tenant": int,
    "token_hash": str,
    "app_user_id": str,
    "anonymous": bool,
    "language": str,
    "country": str,
    "timezone": str,
    "now": str,
    "seen_since": str,
    "token": str,
    "token_kind": str,
    "platform": str,
    "permission": bool,
    "session_id": str,
    "name": str,
    "occurred_at": str,
    "params": dict,
    "fingerprint": str,
}


class Malformed(Exception):
    """A stream entry that is no event document; its message is a short reason (never data)."""


def parse_entry(fields: dict) -> tuple[dict, str]:
    """(the document, its raw JSON) of a stream entry, or Malformed."""
    raw = fields.get(b"d")
    if raw is None:
        raise Malformed("no document")
    try:
        text = raw.decode()
        document = json.loads(text)
    except (UnicodeDecodeError, ValueError):
        raise Malformed("not JSON") from None
    if not isinstance(document, dict):
        raise Malformed("not a JSON object")
    for name, kind in _DOCUMENT_FIELDS.items():
        value = document.get(name)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise Malformed(f"{name}: missing or not a {kind.__name__}")
    if document["token_hash"] != hash_token(document["token"]):
        raise Malformed("token_hash does not match the token")
    if document["platform"] not in Platform.values or document["token_kind"] not in Device.TokenKind.values:
        raise Malformed("platform or token_kind unknown")
    try:
        for name in ("now", "seen_since", "occurred_at"):
            if datetime.fromisoformat(document[name]).tzinfo is None:
                raise Malformed(f"{name}: no offset")
    except ValueError:
        raise Malformed("a time is not ISO 8601") from None
    return document, text


@dataclass(kw_only=True)
class Entry:
    id: str
    document: dict | None = None
    raw: str = ""
    fields: dict | None = None  # the entry as read, for the dead-letter stream
    problem: str = ""  # why it goes to the dead-letter stream
    applied: bool = False

    @property
    def marker(self) -> str | None:
        if self.document is None:
            return None
        return f"{self.document['tenant']}:{self.document['token_hash']}"


# XACK and XDEL the entries, then remove each marker that still names its entry: one round trip.
# KEYS: the stream, the marker hash. ARGV: the group, n, n entry ids, then (marker, entry id) pairs.
ACK_SCRIPT = """
local n = tonumber(ARGV[2])
if n > 0 then
    local ids = {}
    for i = 3, n + 2 do ids[#ids + 1] = ARGV[i] end
    redis.call('XACK', KEYS[1], ARGV[1], unpack(ids))
    redis.call('XDEL', KEYS[1], unpack(ids))
end
for i = n + 3, #ARGV, 2 do
    if redis.call('HGET', KEYS[2], ARGV[i]) == ARGV[i + 1] then redis.call('HDEL', KEYS[2], ARGV[i]) end
end
return n
"""


def consumer_name(role: str = "writer") -> str:
    return f"{role}-{socket.gethostname()}-{os.getpid()}"


def ensure_group(client: redis.Redis) -> None:
    """Create the consumer group (and the stream) unless they exist."""
    try:
        client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


class Consumer:
    """One consumer of the stream: `consume()` applies one batch (see the module's docstring)."""

    def __init__(self, *, client: redis.Redis, name: str, batch: int = 500, lock_timeout_ms: int = 0):
        self.client = client
        self.name = name
        self.lock_timeout_ms = lock_timeout_ms  # 0: wait for the ingest lock as long as it takes
        self.batch = max(1, min(batch, MAX_BATCH))
        self._ack_script = client.register_script(ACK_SCRIPT)
        self._group_ready = False

    def consume(self) -> tuple[list[Entry], str | None]:
        """Apply the next batch in one transaction; after commit, acknowledge it and fire the
        signals. Returns the entries handled and the newest id in the stream before the read
        (for wait()); raises on a database or Redis failure, leaving the batch to be taken
        over by the next consumer (nothing acknowledged)."""
        if not self._group_ready:
            ensure_group(self.client)
            self._group_ready = True
        with transaction.atomic():
            _take_ingest_lock(timeout_ms=self.lock_timeout_ms)
            entries, newest = self._read()
            if entries:
                _apply(entries)
        if entries:
            self._acknowledge(entries)
            _announce(entry for entry in entries if entry.applied)
        return entries, newest

    def _read(self) -> tuple[list[Entry], str | None]:
        pipe = self.client.pipeline(transaction=True)
        pipe.xrevrange(STREAM, count=1)
        # Under the ingest lock every pending entry is committed or orphaned: take them all.
        pipe.xautoclaim(STREAM, GROUP, self.name, min_idle_time=0, start_id="0-0", count=self.batch)
        pipe.xreadgroup(GROUP, self.name, {STREAM: ">"}, count=self.batch)
        try:
            newest_rows, claimed, fresh = pipe.execute()
        except redis.ResponseError as exc:
            if "NOGROUP" in str(exc):  # the stream was deleted meanwhile
                self._group_ready = False
            raise
        newest = newest_rows[0][0].decode() if newest_rows else None
        rows = list(claimed[1]) + [row for _, stream_rows in (fresh or []) for row in stream_rows]
        seen: dict[str, Entry] = {}
        for entry_id, fields in rows:
            entry_id = entry_id.decode()
            if entry_id in seen:
                continue
            entry = seen[entry_id] = Entry(id=entry_id, fields=fields)
            if fields is None:  # deleted meanwhile
                entry.problem = "deleted"
                continue
            try:
                entry.document, entry.raw = parse_entry(fields)
            except Malformed as exc:
                entry.problem = str(exc)
        entries = sorted(seen.values(), key=lambda entry: _stream_id(entry.id))[: self.batch]
        # Beyond the batch (a long pending list after a crash): left in this consumer's pending
        # list, where the next XAUTOCLAIM takes them up first, in order.
        return entries, newest

    def _acknowledge(self, entries: list[Entry]) -> None:
        pipe = self.client.pipeline(transaction=True)
        for entry in entries:
            if entry.problem and entry.problem != "deleted":
                log.warning(
                    "ingest: entry %s moved to %s: %s",
                    entry.id,
                    DEAD_LETTERS,
                    entry.problem,
                    extra={"entry": entry.id, "reason": entry.problem},
                )
                pipe.xadd(
                    DEAD_LETTERS,
                    {"entry": entry.id, "reason": entry.problem, **_decoded(entry.fields or {})},
                )
        markers = [value for entry in entries if entry.marker for value in (entry.marker, entry.id)]
        ids = [entry.id for entry in entries]
        self._ack_script(keys=[STREAM, PENDING], args=[GROUP, len(ids), *ids, *markers], client=pipe)
        pipe.execute()

    def wait(self, *, after: str | None, block_ms: int) -> None:
        """Return when an entry newer than `after` arrives, or after block_ms."""
        self.client.xread({STREAM: after or "0-0"}, count=1, block=max(1, block_ms))


def _decoded(fields: dict) -> dict:
    return {
        (k.decode(errors="replace") if isinstance(k, bytes) else k): (
            v.decode(errors="replace") if isinstance(v, bytes) else v
        )
        for k, v in fields.items()
    }


def _take_ingest_lock(*, timeout_ms: int = 0) -> None:
    """One consumer at a time, until its transaction ends (SQLite: its IMMEDIATE transaction).
    With a timeout, every lock the transaction waits for (this one, its tokens') is waited for at
    most that long (then OperationalError)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            if timeout_ms:
                cursor.execute(f"SET LOCAL lock_timeout = {int(timeout_ms)}")
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [INGEST_LOCK_KEY])


def _apply(entries: list[Entry]) -> None:
    """Store the documents of these entries, in order, in the current transaction; mark each
    entry applied (stored now) or give it a problem (to the dead-letter stream)."""
    candidates = [entry for entry in entries if not entry.problem]
    tenants = Tenant.objects.in_bulk({entry.document["tenant"] for entry in candidates})
    for entry in candidates:
        if entry.document["tenant"] not in tenants:
            entry.problem = "unknown tenant"
    candidates = [entry for entry in candidates if not entry.problem]
    if not candidates:
        return
    if connection.vendor == "postgresql":
        _apply_postgresql(candidates, tenants)
    else:
        for entry in candidates:
            _apply_one_portable(entry, tenants)


# The batch on PostgreSQL: one round trip (migrations devices 0009, 0010). It takes every token lock
# of the batch up front, in the one global order, then applies the documents in order (0010: as
# herald_record_event would one by one, with a fixed number of statements per batch).
RECORD_EVENTS_SQL = "SELECT applied FROM herald_record_events(%s::bigint[], %s::jsonb) AS applied"


def _lock_keys(candidates: list[Entry], tenants: dict) -> list[int]:
    keys: set[int] = set()
    for entry in candidates:
        tenant = tenants[entry.document["tenant"]]
        keys.update(services._lock_keys(tenant=tenant, token_hashes=[entry.document["token_hash"]]))
    return sorted(keys)


def _apply_postgresql(candidates: list[Entry], tenants: dict) -> None:
    lock_keys = _lock_keys(candidates, tenants)
    documents = "[" + ",".join(entry.raw for entry in candidates) + "]"
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(RECORD_EVENTS_SQL, [lock_keys, documents])
            applied = {row[0] for row in cursor.fetchall()}
    except (DataError, IntegrityError):
        # A document the database refuses: take the locks (all of them first, in order, as the
        # function does), then apply one document at a time to find it.
        with connection.cursor() as cursor:
            cursor.execute(services.LOCK_SQL, {"lock_keys": lock_keys})
        for entry in candidates:
            try:
                with transaction.atomic(), connection.cursor() as cursor:
                    cursor.execute(RECORD_EVENTS_SQL, [[], "[" + entry.raw + "]"])
                    entry.applied = bool(cursor.fetchall())
            except (DataError, IntegrityError) as exc:
                entry.problem = f"refused by the database ({type(exc).__name__})"
        return
    for position, entry in enumerate(candidates):
        entry.applied = position in applied


def _apply_one_portable(entry: Entry, tenants: dict) -> None:
    """services._record_event_portable for one document (SQLite), with the writer's skip rule."""
    document = entry.document
    tenant = tenants[document["tenant"]]
    if Event.objects.filter(tenant=tenant, fingerprint=document["fingerprint"]).exists():
        return  # stored already: a re-delivered entry, or a client's retry
    event = services.EventInput(
        event_name=document["name"],
        event_time=datetime.fromisoformat(document["occurred_at"]),
        device_token=document["token"],
        platform=document["platform"],
        push_permission_granted=document["permission"],
        timezone=document["timezone"],
        language=document["language"],
        country=document["country"],
        session_id=document["session_id"],
        app_user_id="" if document["anonymous"] else document["app_user_id"],
        params=document["params"],
        token_kind=document["token_kind"],
    )
    try:
        with transaction.atomic():
            services._record_event_portable(
                tenant=tenant,
                event=event,
                params=document["params"],
                fingerprint=document["fingerprint"],
                now=datetime.fromisoformat(document["now"]),
            )
    except (DataError, IntegrityError) as exc:
        entry.problem = f"refused by the database ({type(exc).__name__})"
        return
    entry.applied = True


def _announce(entries) -> None:
    """What the direct path does on commit, per stored event."""
    for entry in entries:
        metrics.EVENTS_RECORDED.inc()
        if event_recorded.receivers:
            try:
                event_recorded.send(Event, tenant_id=entry.document["tenant"], name=entry.document["name"])
            except Exception:  # the events are stored and acknowledged; a receiver's failure stays its own
                log.exception("ingest: an event_recorded receiver failed")


# --- Ordering with token refreshes ------------------------------------------------------------------


def marker_fields(*, tenant: Tenant, tokens: list[str]) -> list[str]:
    """The fields of these tokens' pending markers in PENDING."""
    return [f"{tenant.pk}:{hash_token(token)}" for token in tokens]


def write_queued_events_of(*, tenant: Tenant, tokens: list[str], queued: list[str] | None = None) -> int:
    """Before a token refresh: apply the queued events of these tokens (and every entry queued
    before them), consuming the stream as a consumer of its own. Returns the entries handled.
    `queued`: the ids in the tokens' markers, when the caller has read them (in its rate limits'
    round trip); else they are read here. Without Redis, nothing (the queued events cannot be
    read; the refresh goes on)."""
    if queued is not None and not queued:
        return 0
    client = throttling.redis_client()
    if client is None or throttling.breaker.is_open():
        return 0
    try:
        if queued is None:
            fields = marker_fields(tenant=tenant, tokens=tokens)
            queued = [value.decode() for value in client.hmget(PENDING, fields) if value]
        if not queued:
            return 0
        newest = max(queued, key=_stream_id)
        consumer = Consumer(
            client=client,
            name=consumer_name("web"),
            batch=REFRESH_BATCH,
            lock_timeout_ms=REFRESH_LOCK_TIMEOUT_MS,
        )
        handled = 0
        for _ in range(REFRESH_MAX_BATCHES):
            entries, _ = consumer.consume()
            handled += len(entries)
            if not entries or _stream_id(entries[-1].id) >= _stream_id(newest):
                return handled
        # A backlog this long means no writer is keeping up: the refresh is not to become the
        # writer for all of it (a request bounded by the backlog, not by itself).
        log.warning(
            "ingest: queued events of a refreshed token not written first: over %s entries before them",
            REFRESH_MAX_BATCHES * consumer.batch,
            extra={"handled": handled},
        )
        return handled
    except redis.RedisError as exc:
        throttling.breaker.trip()
        log.warning(
            "ingest: queued events of a refreshed token not written first: Redis failed (%s)",
            type(exc).__name__,
            extra={"error": type(exc).__name__},
        )
        return 0
    except OperationalError as exc:  # the ingest lock not had within REFRESH_LOCK_TIMEOUT_MS
        log.warning(
            "ingest: queued events of a refreshed token not written first: %s",
            type(exc).__name__,
            extra={"error": type(exc).__name__},
        )
        return 0


# --- Operations --------------------------------------------------------------------------------------


def backlog(client: redis.Redis | None = None) -> dict:
    """The stream's backlog: entries not yet written (queued or being written), the age in
    seconds of the oldest (by Redis's clock), and entries in the dead-letter stream."""
    client = client or throttling.redis_client()
    pipe = client.pipeline(transaction=False)
    pipe.xlen(STREAM)
    pipe.xrange(STREAM, count=1)
    pipe.time()
    pipe.xlen(DEAD_LETTERS)
    queued, oldest, (seconds, micros), dead = pipe.execute()
    age = 0.0
    if oldest:
        age = max(0.0, seconds + micros / 1e6 - _stream_id(oldest[0][0].decode())[0] / 1000)
    return {"queued": queued, "oldest_seconds": round(age, 1), "dead_letters": dead}


def backlog_health() -> dict:
    """/healthz's check in queue mode: degraded when the oldest queued event has waited longer
    than EVENTS_INGEST_STALE_SECONDS (is herald_ingest running?)."""
    figures = backlog()
    if figures["oldest_seconds"] > settings.EVENTS_INGEST_STALE_SECONDS:
        raise Unhealthy(
            f"the oldest queued event has waited {figures['oldest_seconds']:.0f}s: is herald_ingest running?"
        )
    return figures


class BacklogGauges:
    """Scrape-time gauges of the ingest stream (queue mode): read from Redis once per scrape."""

    def collect(self):
        if not queue_enabled():
            return []
        up = GaugeMetricFamily("herald_ingest_up", "Whether the ingest stream's figures could be read.")
        try:
            figures = backlog()
        except redis.RedisError:
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        return [
            up,
            GaugeMetricFamily(
                "herald_ingest_queued", "Events queued and not yet written.", value=figures["queued"]
            ),
            GaugeMetricFamily(
                "herald_ingest_oldest_seconds",
                "Age of the oldest event queued and not yet written.",
                value=figures["oldest_seconds"],
            ),
            GaugeMetricFamily(
                "herald_ingest_dead_letters",
                "Entries in the dead-letter stream (herald:ingest:dead), to inspect and replay or delete.",
                value=figures["dead_letters"],
            ),
        ]
