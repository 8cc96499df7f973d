"""Webhooks: registering endpoints, recording events into the outbox, posting them signed.

Recording is on the delivery path, so it is cheap: a process-local map of which tenants
subscribe to what (refreshed every SUBSCRIPTIONS_TTL seconds, and at once in the process
that changes an endpoint) turns most calls into a dictionary lookup; a subscribed batch
of deliveries becomes one multi-row INSERT in the transaction that recorded the batch.

Posting runs in its own task queue ("webhooks"). Each endpoint's events are grouped into
batches of up to WEBHOOKS_BATCH_SIZE, one signed POST each (Standard Webhooks). A failure
makes the endpoint rest with exponential backoff and full jitter; the batch that failed
is retried first, with the same webhook-id. An endpoint whose attempts all fail for
WEBHOOKS_DISABLE_AFTER_HOURS (or WEBHOOKS_DISABLE_AFTER_FAILURES times in a row) is
disabled with the reason; its undelivered events wait until someone enables it again.
"""

import base64
import hashlib
import hmac
import json
import logging
import random
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from api import metrics, outbound
from tenants.models import Tenant
from webhooks.models import TEST_EVENT, Attempt, Batch, Endpoint, Event, EventType, new_secret, rfc3339

log = logging.getLogger("herald.webhooks")

SUBSCRIPTIONS_TTL = 10.0  # seconds a worker may take to notice another process's endpoint change
CLAIM = timedelta(minutes=2)  # longer than one POST can take (3 s connect + 5 s read)
KICK_SECONDS = 2
BACKOFF_BASE_SECONDS = 5.0
BACKOFF_CAP_SECONDS = 2 * 3600.0


class WebhookError(Exception):
    """An endpoint that cannot be registered or changed as asked."""

    def __init__(self, message: str, *, code: str, field: str | None = None):
        super().__init__(message)
        self.code, self.field = code, field


# --- Which tenants listen --------------------------------------------------------------

_subscriptions: dict[int, dict[str, tuple[int, ...]]] = {}
_subscriptions_at = -1e9
_subscriptions_lock = threading.Lock()


def subscriptions() -> dict[int, dict[str, tuple[int, ...]]]:
    """{tenant pk: {event type: enabled endpoints receiving it}}, cached briefly per process."""
    global _subscriptions, _subscriptions_at
    if time.monotonic() - _subscriptions_at < SUBSCRIPTIONS_TTL:
        return _subscriptions
    with _subscriptions_lock:
        found: dict[int, dict[str, list[int]]] = {}
        for pk, tenant_id, types in (
            Endpoint.objects.enabled().order_by("pk").values_list("pk", "tenant_id", "event_types")
        ):
            for event_type in types or ():
                found.setdefault(tenant_id, {}).setdefault(event_type, []).append(pk)
        _subscriptions = {t: {k: tuple(v) for k, v in by_type.items()} for t, by_type in found.items()}
        _subscriptions_at = time.monotonic()
    return _subscriptions


def forget_subscriptions() -> None:
    global _subscriptions_at
    _subscriptions_at = -1e9


def subscribed_endpoints(tenant_id: int, event_type: str) -> tuple[int, ...]:
    return subscriptions().get(tenant_id, {}).get(event_type, ())


def is_subscribed(tenant_id: int, event_type: str) -> bool:
    return bool(subscribed_endpoints(tenant_id, event_type))


# --- Recording events ---------------------------------------------------------------------


def record_events(*, tenant_id: int, event_type: str, items: list[dict], at: datetime) -> int:
    """Write one outbox row per item for each enabled endpoint of the tenant that receives
    event_type, in the caller's transaction. Returns the rows written.

    One multi-row INSERT per 500 rows with the values as parameters: the ORM's per-object
    work in bulk_create was most of the cost, and this runs once per batch of deliveries.
    The endpoints come from the cached map; one deleted or disabled in the last seconds
    gets rows that are never sent and are pruned, and the caller never fails because of it.
    """
    endpoint_ids = subscribed_endpoints(tenant_id, event_type) if items else ()
    if not endpoint_ids:
        return 0
    table = connection.ops.quote_name(Event._meta.db_table)
    columns = ", ".join(
        connection.ops.quote_name(Event._meta.get_field(f).column)
        for f in ("endpoint", "type", "data", "created_at")
    )
    data_field = Event._meta.get_field("data")
    created = connection.ops.adapt_datetimefield_value(at)
    values = [data_field.get_db_prep_save(item, connection) for item in items]
    rows = [(pk, event_type, value, created) for pk in endpoint_ids for value in values]
    with connection.cursor() as cursor:
        for start in range(0, len(rows), 500):
            chunk = rows[start : start + 500]
            cursor.execute(
                f"INSERT INTO {table} ({columns}) VALUES "  # noqa: S608
                + ", ".join(["(%s, %s, %s, %s)"] * len(chunk)),
                [v for row in chunk for v in row],
            )

    def after_commit():  # counted once the rows exist: a rolled-back send records nothing
        metrics.WEBHOOK_EVENTS_RECORDED.labels(str(event_type), _tenant_label(tenant_id)).inc(len(rows))
        kick(endpoint_ids)

    transaction.on_commit(after_commit)
    return len(rows)


def _tenant_label(tenant_pk: int) -> str:
    """The metrics' tenant label (see api.metrics.tenant_label); a query only when it is on."""
    if not settings.METRICS_TENANT_LABEL:
        return ""
    return metrics.tenant_label(
        Tenant.objects.filter(pk=tenant_pk).values_list("tenant_id", flat=True).first() or ""
    )


def kick(endpoint_ids) -> None:
    """Queue a sender for each endpoint, unless one was queued moments ago and has not
    started yet (the sender clears the mark when it starts, so nothing waits)."""
    from webhooks import tasks

    for pk in endpoint_ids:
        if cache.add(f"webhooks:kick:{pk}", 1, timeout=KICK_SECONDS):
            try:
                tasks.enqueue_delivery(pk)
            except Exception:  # a queue that refuses must not fail what recorded the event
                log.exception("could not queue webhook delivery", extra={"endpoint": pk})


# --- Registering endpoints ------------------------------------------------------------------


def check_endpoint_url(url: str, *, resolver=None) -> str:
    """Refuse a URL Herald must not post to (see api.outbound); a host whose DNS is not
    live yet passes, since every POST checks again."""
    try:
        outbound.check_url(
            url,
            allow_http=settings.WEBHOOKS_ALLOW_HTTP,
            allow_private=settings.WEBHOOKS_ALLOW_PRIVATE_ADDRESSES,
            resolver=resolver,
            require_resolution=False,
        )
    except outbound.UnsafeUrl as exc:
        raise WebhookError(str(exc), code=exc.code, field="url") from None
    return url


def check_event_types(event_types) -> list[str]:
    valid = set(EventType.values)
    if not isinstance(event_types, list | tuple) or not event_types:
        raise WebhookError("Choose at least one event type.", code="invalid_field", field="event_types")
    unknown = [t for t in event_types if t not in valid]
    if unknown:
        raise WebhookError(
            f"Unknown event type {unknown[0]!r}; choose from {', '.join(sorted(valid))}.",
            code="invalid_field",
            field="event_types",
        )
    return sorted(set(event_types))


def create_endpoint(
    *, tenant: Tenant, url: str, event_types: list[str], description: str = ""
) -> tuple[Endpoint, str]:
    """Register an endpoint. Returns it with its signing secret, which is never shown again."""
    check_endpoint_url(url)
    types = check_event_types(event_types)
    if Endpoint.objects.filter(tenant=tenant).count() >= settings.WEBHOOKS_MAX_ENDPOINTS:
        raise WebhookError(
            f"A tenant may have at most {settings.WEBHOOKS_MAX_ENDPOINTS} webhook endpoints.",
            code="too_many_endpoints",
        )
    secret = new_secret()
    endpoint = Endpoint(tenant=tenant, url=url, event_types=types, description=description)
    endpoint.set_secret(secret)
    endpoint.save()
    forget_subscriptions()
    return endpoint, secret


def update_endpoint(
    *,
    endpoint: Endpoint,
    url: str | None = None,
    event_types: list[str] | None = None,
    description: str | None = None,
    enabled: bool | None = None,
) -> Endpoint:
    """Change an endpoint. Enabling a disabled one clears its failures and sends what waited."""
    if url is not None:
        endpoint.url = check_endpoint_url(url)
    if event_types is not None:
        endpoint.event_types = check_event_types(event_types)
    if description is not None:
        endpoint.description = description
    if enabled is True and not endpoint.is_enabled:
        endpoint.disabled_at, endpoint.disabled_reason = None, ""
        endpoint.consecutive_failures, endpoint.failing_since, endpoint.retry_at = 0, None, None
        transaction.on_commit(lambda: kick([endpoint.pk]))
    elif enabled is False and endpoint.is_enabled:
        endpoint.disabled_at, endpoint.disabled_reason = timezone.now(), "Disabled by hand."
    endpoint.save()
    forget_subscriptions()
    return endpoint


def rotate_secret(*, endpoint: Endpoint, now: datetime | None = None) -> str:
    """A new signing secret; the old one keeps signing for WEBHOOKS_SECRET_GRACE_HOURS."""
    secret = new_secret()
    endpoint.set_secret(
        secret, keep_previous_for=timedelta(hours=settings.WEBHOOKS_SECRET_GRACE_HOURS), now=now
    )
    endpoint.save(
        update_fields=["encrypted_secret", "encrypted_previous_secret", "previous_secret_expires_at"]
    )
    return secret


def delete_endpoint(*, endpoint: Endpoint) -> None:
    endpoint.delete()
    forget_subscriptions()


# --- Signing -------------------------------------------------------------------------------


def sign(*, secrets: list[str], webhook_id: str, timestamp: int, body: bytes) -> str:
    """The webhook-signature header: "v1,<base64 HMAC-SHA256 of id.timestamp.body>" per secret."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1,"
        + base64.b64encode(
            hmac.new(base64.b64decode(s.removeprefix("whsec_")), signed, hashlib.sha256).digest()
        ).decode("ascii")
        for s in secrets
    )


# --- Posting ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PostResult:
    ok: bool
    status_code: int | None
    latency_ms: int
    error: str
    detail: str


def _post(url: str, *, body: bytes, headers: dict[str, str]) -> PostResult:
    try:
        answer = outbound.post(
            url,
            body=body,
            headers=headers,
            allow_http=settings.WEBHOOKS_ALLOW_HTTP,
            allow_private=settings.WEBHOOKS_ALLOW_PRIVATE_ADDRESSES,
            connect_timeout=settings.WEBHOOKS_CONNECT_TIMEOUT,
            read_timeout=settings.WEBHOOKS_READ_TIMEOUT,
        )
    except outbound.UnsafeUrl as exc:
        error = "dns" if exc.code == "unresolvable_host" else "unsafe_url"
        return PostResult(False, None, 0, error, str(exc)[:300])
    except outbound.RequestFailed as exc:
        result = PostResult(False, None, exc.latency_ms, exc.error_class, str(exc)[:300])
    else:
        if 200 <= answer.status < 300:
            result = PostResult(True, answer.status, answer.latency_ms, "", "")
        else:
            detail = f"HTTP {answer.status}"
            if 300 <= answer.status < 400:
                detail += ": a redirect, which Herald does not follow"
            result = PostResult(False, answer.status, answer.latency_ms, "http_status", detail)
    # Timed only when the POST went out (a refused URL above never left Herald).
    metrics.WEBHOOK_LATENCY.labels(result.error or "ok").observe(result.latency_ms / 1000)
    return result


def post_batch(*, batch: Batch, now: datetime | None = None, trigger: str = Attempt.Trigger.AUTO) -> Attempt:
    """POST a batch's events, signed, and log the attempt. A success marks the batch
    delivered; the endpoint's failure bookkeeping is the sender's (see deliver_endpoint)."""
    now = now or timezone.now()
    endpoint = batch.endpoint
    events = list(batch.events.order_by("id"))
    body = json.dumps(
        {"type": "batch", "timestamp": rfc3339(now), "data": [e.as_payload() for e in events]},
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    timestamp = int(now.timestamp())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Herald-Webhooks/1",
        "webhook-id": batch.webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(
            secrets=endpoint.signing_secrets(now=now),
            webhook_id=batch.webhook_id,
            timestamp=timestamp,
            body=body,
        ),
    }
    result = _post(endpoint.url, body=body, headers=headers)
    changes = {"attempts": batch.attempts + 1, "claimed_until": None}
    if result.ok:
        changes.update(status=Batch.Status.DELIVERED, delivered_at=now)
    with transaction.atomic():  # one write transaction per POST
        attempt = Attempt.objects.create(
            endpoint=endpoint,
            batch=batch,
            attempted_at=now,
            trigger=trigger,
            event_count=len(events),
            ok=result.ok,
            status_code=result.status_code,
            latency_ms=result.latency_ms,
            error=result.error,
            detail=result.detail,
        )
        Batch.objects.filter(pk=batch.pk).update(**changes)
    metrics.WEBHOOK_ATTEMPTS.labels(result.error or "ok", _tenant_label(endpoint.tenant_id)).inc()
    for name, value in changes.items():
        setattr(batch, name, value)
    log.info(
        "webhook attempt",
        extra={
            "endpoint": endpoint.pk,
            "tenant": endpoint.tenant_id,
            "webhook_id": batch.webhook_id,
            "events": len(events),
            "ok": result.ok,
            "status": result.status_code,
            "error": result.error,
            "latency_ms": result.latency_ms,
        },
    )
    return attempt


def backoff(failures: int) -> timedelta:
    """How long an endpoint rests after `failures` failures in a row: exponential, capped
    at two hours, with jitter (between half and all of it) so endpoints do not stampede."""
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, failures - 1))
    return timedelta(seconds=random.uniform(ceiling / 2, ceiling))


def _record_outcome(endpoint: Endpoint, attempt: Attempt, now: datetime) -> Endpoint:
    """Reset the endpoint after a success; after a failure, back off or disable it."""
    if attempt.ok and not (endpoint.consecutive_failures or endpoint.failing_since or endpoint.retry_at):
        # The common case, once per batch: a single UPDATE, no lock.
        Endpoint.objects.filter(pk=endpoint.pk).update(last_success_at=now)
        endpoint.last_success_at = now
        return endpoint
    with transaction.atomic():
        endpoint = Endpoint.objects.select_for_update().get(pk=endpoint.pk)
        if attempt.ok:
            endpoint.consecutive_failures, endpoint.failing_since, endpoint.retry_at = 0, None, None
            endpoint.last_success_at = now
        else:
            endpoint.consecutive_failures += 1
            endpoint.failing_since = endpoint.failing_since or now
            endpoint.retry_at = now + backoff(endpoint.consecutive_failures)
            reason = _disable_reason(endpoint, attempt, now)
            if reason and endpoint.is_enabled:
                endpoint.disabled_at, endpoint.disabled_reason = now, reason
                log.warning(
                    "webhook endpoint disabled",
                    extra={"endpoint": endpoint.pk, "tenant": endpoint.tenant_id, "reason": reason},
                )
                transaction.on_commit(forget_subscriptions)
        endpoint.save(
            update_fields=[
                "consecutive_failures",
                "failing_since",
                "retry_at",
                "last_success_at",
                "disabled_at",
                "disabled_reason",
            ]
        )
    return endpoint


def _disable_reason(endpoint: Endpoint, attempt: Attempt, now: datetime) -> str:
    """Why a failing endpoint must be disabled now, or "" while it may go on trying."""
    last = attempt.detail or attempt.error
    limit, hours = settings.WEBHOOKS_DISABLE_AFTER_FAILURES, settings.WEBHOOKS_DISABLE_AFTER_HOURS
    if now - endpoint.failing_since >= timedelta(hours=hours):
        return (
            f"Every attempt failed for {hours:g} hours ({endpoint.consecutive_failures} attempts; "
            f"the last: {last})."
        )
    if limit and endpoint.consecutive_failures >= limit:
        return f"{limit} attempts in a row failed (the last: {last})."
    return ""


def _claim_batch(endpoint: Endpoint, now: datetime) -> Batch | None:
    """The batch to post next: the oldest pending one (a failed batch is retried first,
    with its webhook-id), else a new one of the oldest unbatched events. Claimed with a
    conditional UPDATE, so two senders never post the same batch at once."""
    free = Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)
    pending = Batch.objects.filter(endpoint=endpoint, status=Batch.Status.PENDING)
    oldest = pending.filter(free).order_by("id").values_list("pk", flat=True).first()
    if oldest is not None:
        if pending.filter(free, pk=oldest).update(claimed_until=now + CLAIM):
            return Batch.objects.select_related("endpoint").get(pk=oldest)
        return None
    ids = list(
        Event.objects.filter(endpoint=endpoint, batch__isnull=True)
        .order_by("id")
        .values_list("pk", flat=True)[: settings.WEBHOOKS_BATCH_SIZE]
    )
    if not ids:
        return None
    with transaction.atomic():
        batch = Batch.objects.create(endpoint=endpoint, created_at=now, claimed_until=now + CLAIM)
        if not Event.objects.filter(pk__in=ids, batch__isnull=True).update(batch=batch):
            batch.delete()  # another sender took them
            return None
    batch.endpoint = endpoint
    return batch


def deliver_endpoint(*, endpoint_id: int, now: datetime | None = None, max_batches: int = 1000) -> int:
    """Post an endpoint's waiting events, a batch per POST, until none is left or a POST
    fails. Returns the batches delivered. `now` fixes the clock (tests)."""
    from webhooks import tasks

    cache.delete(f"webhooks:kick:{endpoint_id}")
    delivered = 0
    for _ in range(max_batches):
        at = now or timezone.now()
        endpoint = Endpoint.objects.filter(pk=endpoint_id).first()
        if endpoint is None or not endpoint.is_enabled:
            return delivered
        if endpoint.retry_at and endpoint.retry_at > at:
            tasks.enqueue_delivery(endpoint.pk, run_after=endpoint.retry_at)
            return delivered
        batch = _claim_batch(endpoint, at)
        if batch is None:
            return delivered
        attempt = post_batch(batch=batch, now=at)
        endpoint = _record_outcome(endpoint, attempt, at)
        if not attempt.ok:
            if endpoint.is_enabled:
                tasks.enqueue_delivery(endpoint.pk, run_after=endpoint.retry_at)
            return delivered
        delivered += 1
    tasks.enqueue_delivery(endpoint_id)  # more than one run's worth: carry on in a fresh task
    return delivered


def endpoints_with_due_work(*, now: datetime | None = None) -> list[int]:
    """Enabled endpoints done resting that have unbatched events or unclaimed pending batches."""
    now = now or timezone.now()
    ready = Endpoint.objects.enabled().filter(Q(retry_at__isnull=True) | Q(retry_at__lte=now))
    unbatched = Event.objects.filter(batch__isnull=True).values("endpoint_id")
    waiting = (
        Batch.objects.filter(status=Batch.Status.PENDING)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .values("endpoint_id")
    )
    return list(ready.filter(Q(pk__in=unbatched) | Q(pk__in=waiting)).values_list("pk", flat=True))


def resume_due(*, now: datetime | None = None) -> int:
    """herald_beat's pass: queue a sender for every endpoint with due work (a retry whose
    time came, or events whose task was lost). Returns the endpoints nudged."""
    endpoint_ids = endpoints_with_due_work(now=now)
    kick(endpoint_ids)
    return len(endpoint_ids)


def prune(*, now: datetime | None = None, chunk: int = 5000) -> dict[str, int]:
    """Delete delivered batches (with their events) and attempts older than
    WEBHOOKS_KEEP_DAYS, and events of deleted endpoints, a chunk at a time."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.WEBHOOKS_KEEP_DAYS)
    removed = {"batches": 0, "attempts": 0, "orphans": 0}
    for key, queryset in (
        ("attempts", Attempt.objects.filter(attempted_at__lt=cutoff)),
        ("batches", Batch.objects.filter(status=Batch.Status.DELIVERED, delivered_at__lt=cutoff)),
        # Rows recorded for an endpoint deleted at that very moment (see Event.endpoint).
        ("orphans", Event.objects.exclude(endpoint_id__in=Endpoint.objects.values("pk"))),
    ):
        while ids := list(queryset.order_by("pk").values_list("pk", flat=True)[:chunk]):
            queryset.model.objects.filter(pk__in=ids).delete()
            removed[key] += len(ids)
    return removed


# --- Buttons: test events and replays ---------------------------------------------------------


def send_test_event(*, endpoint: Endpoint, now: datetime | None = None) -> Attempt:
    """POST a webhook.test event now, whatever the endpoint's state; the endpoint's
    failure count is not touched."""
    now = now or timezone.now()
    batch = Batch.objects.create(endpoint=endpoint, created_at=now, claimed_until=now + CLAIM)
    Event.objects.create(
        endpoint=endpoint,
        batch=batch,
        type=TEST_EVENT,
        created_at=now,
        data={"endpoint_id": endpoint.pk, "note": "A test event sent from Herald."},
    )
    batch.endpoint = endpoint
    return post_batch(batch=batch, now=now, trigger=Attempt.Trigger.TEST)


def replay_batch(*, batch: Batch, now: datetime | None = None) -> Attempt:
    """POST a batch again now, with its webhook-id (receivers may deduplicate on it)."""
    return post_batch(batch=batch, now=now, trigger=Attempt.Trigger.REPLAY)


def replay_event(*, event: Event, now: datetime | None = None) -> Attempt:
    """POST an event again now, as a new event (a new id) with the same type and data."""
    now = now or timezone.now()
    batch = Batch.objects.create(endpoint=event.endpoint, created_at=now, claimed_until=now + CLAIM)
    Event.objects.create(
        endpoint=event.endpoint, batch=batch, type=event.type, data=event.data, created_at=now
    )
    batch.endpoint = event.endpoint
    return post_batch(batch=batch, now=now, trigger=Attempt.Trigger.REPLAY)
