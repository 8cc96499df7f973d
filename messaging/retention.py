"""Retention: delete events, deliveries and token history older than each tenant keeps them.

Each kind of row goes in batches of RETENTION_BATCH_SIZE ids, each batch its own short
transaction: one statement never locks a table for minutes, and the API writing new rows
meanwhile waits at most for one batch. A tenant's own days (fields on Tenant) override
the RETENTION_*_DAYS settings; 0 keeps rows forever.

Deliveries go only for finished messages, and a message keeps what its deliveries said:
its counters (targeted, sent, failed, opened) are stored on the message and do not
change, and the failures by error code of the removed deliveries are added to
``Message.pruned_error_counts`` in the same transaction that deletes them.
"""

import logging
import time
from collections import Counter
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from devices.models import Event, TokenRotation
from messaging.models import Delivery, Message
from tenants.models import Tenant

log = logging.getLogger("herald.retention")


def apply_retention(*, tenant: Tenant, now: datetime | None = None) -> dict:
    """Delete the tenant's rows older than its retention; record and return what went.

    The report (also stored on the tenant, shown on its admin page) counts the rows
    deleted of each kind, the batches (DELETE statements) it took and the cut-offs.
    """
    now = now or timezone.now()
    started = time.monotonic()
    batch = max(1, settings.RETENTION_BATCH_SIZE)
    days = tenant.retention_days()
    cutoffs = {kind: now - timedelta(days=n) for kind, n in days.items() if n}
    report = {"events": 0, "deliveries": 0, "token_rotations": 0, "messages_pruned": 0, "batches": 0}

    if "events" in cutoffs:
        rows = Event.objects.filter(tenant=tenant, received_at__lt=cutoffs["events"])
        report["events"], n = _delete_in_batches(Event, rows, "received_at", batch)
        report["batches"] += n
    if "token_rotations" in cutoffs:
        rows = TokenRotation.objects.filter(device__tenant=tenant, rotated_at__lt=cutoffs["token_rotations"])
        report["token_rotations"], n = _delete_in_batches(TokenRotation, rows, "rotated_at", batch)
        report["batches"] += n
    if "deliveries" in cutoffs:
        messages = (
            Message.objects.filter(
                tenant=tenant,
                status__in=Message.FINAL,
                completed_at__lt=cutoffs["deliveries"],
                deliveries_pruned_at__isnull=True,
            )
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        for message_id in messages.iterator(chunk_size=500):
            deleted, n = _prune_deliveries(message_id=message_id, batch=batch, now=now)
            report["deliveries"] += deleted
            report["batches"] += n
            report["messages_pruned"] += 1

    report["cutoffs"] = {kind: cutoff.isoformat() for kind, cutoff in cutoffs.items()}
    report["seconds"] = round(time.monotonic() - started, 3)
    Tenant.objects.filter(pk=tenant.pk).update(retention_ran_at=now, retention_report=report)
    tenant.retention_ran_at, tenant.retention_report = now, report
    log.info(
        "retention", extra={"tenant": tenant.tenant_id, **{k: v for k, v in report.items() if k != "cutoffs"}}
    )
    return report


def apply_retention_everywhere(*, now: datetime | None = None) -> dict[str, dict]:
    """Retention for every tenant (the daily task). Returns each tenant's report."""
    return {
        tenant.tenant_id: apply_retention(tenant=tenant, now=now) for tenant in Tenant.objects.order_by("pk")
    }


def _delete_in_batches(model, rows, time_field: str, batch: int) -> tuple[int, int]:
    """Delete `rows` a batch of ids at a time, oldest first. Returns (rows deleted, batches).

    Each round starts its index range where the last one stopped, so it does not wade
    through the entries of rows it already deleted.
    """
    deleted = batches = 0
    since = None
    while True:
        page = rows if since is None else rows.filter(**{f"{time_field}__gte": since})
        found = list(page.order_by(time_field).values_list("pk", time_field)[:batch])
        if not found:
            return deleted, batches
        with transaction.atomic():
            _, per_model = model.objects.filter(pk__in=[pk for pk, _ in found]).delete()
        deleted += per_model.get(model._meta.label, 0)
        batches += 1
        since = found[-1][1]
        if len(found) < batch:
            return deleted, batches


def _prune_deliveries(*, message_id: int, batch: int, now: datetime) -> tuple[int, int]:
    """Delete a finished message's deliveries in batches, keeping their failures by code."""
    deleted = batches = 0
    while True:
        with transaction.atomic():
            message = Message.objects.select_for_update().only("pk", "pruned_error_counts").get(pk=message_id)
            found = list(
                Delivery.objects.filter(message_id=message_id)
                .order_by()
                .values_list("pk", "status", "error_code")[:batch]
            )
            if not found:
                Message.objects.filter(pk=message_id).update(deliveries_pruned_at=now)
                return deleted, batches
            failures = Counter(
                code or "UNKNOWN" for _, status, code in found if status == Delivery.Status.FAILED
            )
            if failures:
                kept = Counter(message.pruned_error_counts or {})
                kept.update(failures)
                Message.objects.filter(pk=message_id).update(pruned_error_counts=dict(kept))
            _, per_model = Delivery.objects.filter(pk__in=[pk for pk, _, _ in found]).delete()
        deleted += per_model.get(Delivery._meta.label, 0)
        batches += 1
