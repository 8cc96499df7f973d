"""Turning what the lower apps announce into outbox rows, in the transaction that announced it.

Each receiver first asks the cached subscription map whether anyone listens: for a tenant
without a subscribed endpoint, a batch of deliveries costs one dictionary lookup.
"""

import logging

from django.core.cache import cache
from django.db.models import signals as model_signals
from django.dispatch import receiver

from devices.models import AppUser, Device
from devices.signals import devices_deactivated, token_rotated, writes_on_token_rotated_when
from messaging.models import Delivery, Message, derived_tracking_token
from messaging.signals import beat, deliveries_recorded, message_completed, push_opened
from webhooks import tasks
from webhooks.models import Endpoint, EventType, rfc3339
from webhooks.services import forget_subscriptions, is_subscribed, record_events, resume_due, subscriptions

log = logging.getLogger("herald.webhooks")


@receiver(deliveries_recorded)
def on_deliveries_recorded(sender, *, message, sent, failed, at, **kwargs):
    tenant_id = message.tenant_id
    wanted = [(EventType.DELIVERY_SENT, sent), (EventType.DELIVERY_FAILED, failed)]
    wanted = [(kind, rows) for kind, rows in wanted if rows and is_subscribed(tenant_id, kind)]
    if not wanted:
        return
    user_ids = {d.device.user_id for _, rows in wanted for d in rows if d.device_id and d.device}
    app_user_ids = dict(AppUser.objects.filter(pk__in=user_ids).values_list("pk", "app_user_id"))

    def common(d: Delivery) -> dict:
        device = d.device if d.device_id else None
        return {
            "message_id": message.pk,
            "delivery_id": d.pk,
            "tracking_token": d.tracking_token,
            "device_id": d.device_id,
            "platform": device.platform if device else None,
            "app_user_id": app_user_ids.get(device.user_id) if device else None,
        }

    when = rfc3339(at)
    for kind, rows in wanted:
        if kind == EventType.DELIVERY_SENT:
            items = [{**common(d), "sent_at": when, "fcm_message_name": d.fcm_message_name} for d in rows]
        else:
            items = [
                {
                    **common(d),
                    "failed_at": when,
                    "error_code": d.error_code,
                    "error_detail": d.error_detail[:500],
                    "attempts": d.attempts,
                }
                for d in rows
            ]
        record_events(tenant_id=tenant_id, event_type=kind, items=items, at=at)


@receiver(push_opened)
def on_push_opened(sender, *, tenant_id, delivery_id, at, **kwargs):
    if not is_subscribed(tenant_id, EventType.PUSH_OPENED):
        return
    row = (
        Delivery.objects.filter(pk=delivery_id)
        .values(
            "message_id",
            "stored_tracking_token",
            "device_id",
            "device__platform",
            "device__user__app_user_id",
        )
        .first()
    )
    if row is None:
        return
    record_events(
        tenant_id=tenant_id,
        event_type=EventType.PUSH_OPENED,
        at=at,
        items=[
            {
                "message_id": row["message_id"],
                "delivery_id": delivery_id,
                "tracking_token": row["stored_tracking_token"] or derived_tracking_token(delivery_id),
                "device_id": row["device_id"],
                "platform": row["device__platform"],
                "app_user_id": row["device__user__app_user_id"],
                "opened_at": rfc3339(at),
            }
        ],
    )


@receiver(devices_deactivated)
def on_devices_deactivated(sender, *, tenant_id, device_ids, reason, at, **kwargs):
    tenants = [t for t, by_type in subscriptions().items() if EventType.DEVICE_DEACTIVATED in by_type]
    if tenant_id is not None:
        tenants = [t for t in tenants if t == tenant_id]
    if not tenants:
        return
    # Exactly the devices this change deactivated: the same moment and reason.
    devices = Device.objects.filter(
        tenant_id__in=tenants, is_active=False, deactivated_at=at, deactivation_reason=reason
    )
    if device_ids is not None:
        devices = devices.filter(pk__in=device_ids)
    by_tenant: dict[int, list[dict]] = {}
    for row in devices.values("pk", "tenant_id", "platform", "user__app_user_id").order_by("pk").iterator():
        by_tenant.setdefault(row["tenant_id"], []).append(
            {
                "device_id": row["pk"],
                "platform": row["platform"],
                "app_user_id": row["user__app_user_id"],
                "reason": reason,
                "deactivated_at": rfc3339(at),
            }
        )
    for tenant, items in by_tenant.items():
        record_events(tenant_id=tenant, event_type=EventType.DEVICE_DEACTIVATED, items=items, at=at)


@receiver(token_rotated)
@writes_on_token_rotated_when(lambda tenant_id: is_subscribed(tenant_id, EventType.DEVICE_TOKEN_ROTATED))
def on_token_rotated(sender, *, device, at, **kwargs):
    if not is_subscribed(device.tenant_id, EventType.DEVICE_TOKEN_ROTATED):
        return
    # Tokens themselves never leave Herald in a webhook: the device id names the install.
    record_events(
        tenant_id=device.tenant_id,
        event_type=EventType.DEVICE_TOKEN_ROTATED,
        at=at,
        items=[
            {
                "device_id": device.pk,
                "platform": device.platform,
                "app_user_id": device.user.app_user_id,
                "rotated_at": rfc3339(at),
            }
        ],
    )


@receiver(message_completed)
def on_message_completed(sender, *, message_id, tenant_id, status, at, **kwargs):
    if not is_subscribed(tenant_id, EventType.MESSAGE_COMPLETED):
        return
    row = (
        Message.objects.filter(pk=message_id)
        .values("targeted_count", "sent_count", "failed_count", "opened_count", "dry_run")
        .first()
    )
    if row is None:
        return
    record_events(
        tenant_id=tenant_id,
        event_type=EventType.MESSAGE_COMPLETED,
        at=at,
        items=[
            {
                "message_id": message_id,
                "status": status,
                "targeted": row["targeted_count"],
                "sent": row["sent_count"],
                "failed": row["failed_count"],
                "opened": row["opened_count"],
                "dry_run": row["dry_run"],
                "completed_at": rfc3339(at),
            }
        ],
    )


@receiver(beat)
def on_beat(sender, **kwargs):
    """Queue senders for due retries and lost work (queries only: posting is the tasks'),
    and an hourly prune."""
    try:
        resume_due()
        if cache.add("webhooks:pruned", 1, timeout=3600):
            tasks.prune_webhooks.enqueue()
    except Exception:  # herald_beat's other work must go on (e.g. a backend without the queue)
        log.exception("webhooks beat failed")


@receiver([model_signals.post_save, model_signals.post_delete], sender=Endpoint)
def on_endpoint_changed(sender, **kwargs):
    forget_subscriptions()
