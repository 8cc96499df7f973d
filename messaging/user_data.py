"""A user's data on request: what Herald holds about one app user, and what erasing them
means for messaging.

Erasure itself is ``devices.services.erase_app_user``; messaging hears of it through
``app_user_erasing`` and anonymises the user's deliveries: each keeps its message, status
and times but no longer points at a device, so the message's totals (counters stored on
Message) stay exactly as they were. Messages whose audience named the user or one of
their tokens lose that entry.
"""

import logging

from django.db.models import Q
from django.dispatch import receiver

from devices.models import AppUser
from devices.services import erase_app_user as erase_app_user_rows
from devices.signals import app_user_erasing
from messaging.models import Audience, Delivery, Message
from tenants.models import Tenant

log = logging.getLogger("herald.privacy")

RECENT_ROWS = 100
# What an erasure answers, in this order.
ERASED_KINDS = (
    "app_users",
    "devices",
    "events",
    "token_rotations",
    "deliveries_anonymised",
    "messages_scrubbed",
)


class AppUserNotFound(Exception):
    pass


def app_user_data(*, tenant: Tenant, app_user_id: str, recent: int = RECENT_ROWS) -> dict:
    """The user, their devices, their most recent events and pushes, and how many of each
    there are. Raises AppUserNotFound."""
    user = AppUser.objects.filter(tenant=tenant, app_user_id=app_user_id).first()
    if user is None:
        raise AppUserNotFound
    devices = list(user.devices.order_by("pk"))
    events = user.events.order_by("-received_at", "-pk")
    deliveries = Delivery.objects.filter(device__in=devices).select_related("message").order_by("-pk")
    return {
        "user": user,
        "devices": devices,
        "event_count": events.count(),
        "events": list(events[:recent]),
        "delivery_count": deliveries.count(),
        "deliveries": list(deliveries[:recent]),
    }


def erase_app_user(*, tenant: Tenant, app_user_id: str) -> dict[str, int]:
    """Delete everything Herald holds about one app user; return the counts by kind.

    Idempotent: a second call (or an unknown user, or another tenant's) removes nothing and
    answers zeros. All of it happens in one transaction.
    """
    counts = {kind: 0 for kind in ERASED_KINDS} | erase_app_user_rows(tenant=tenant, app_user_id=app_user_id)
    if counts["app_users"]:
        # The counts, never the id: the log must not keep what was just erased.
        log.info("app user erased", extra={"tenant": tenant.tenant_id, **counts})
    return counts


@receiver(app_user_erasing, dispatch_uid="messaging.anonymise_deliveries")
def anonymise_deliveries(sender, *, tenant, app_user_id, device_ids, tokens, **kwargs) -> dict[str, int]:
    """Detach the user's deliveries from their devices; scrub them from message audiences."""
    anonymised = Delivery.objects.filter(device_id__in=device_ids).update(device=None)
    return {
        "deliveries_anonymised": anonymised,
        "messages_scrubbed": _scrub_audiences(tenant=tenant, app_user_id=app_user_id, tokens=tokens),
    }


def _scrub_audiences(*, tenant: Tenant, app_user_id: str, tokens: set[str]) -> int:
    """Take the user's id and tokens out of the audiences of the tenant's messages."""
    # A substring match finds candidates in the database; the lists are checked exactly here.
    candidates = Q(audience=Audience.USERS, audience_params__app_user_ids__icontains=app_user_id)
    for token in tokens:
        candidates |= Q(audience=Audience.TOKENS, audience_params__tokens__icontains=token)
    scrubbed = 0
    for message in Message.objects.filter(candidates, tenant=tenant).only("pk", "audience_params"):
        params = dict(message.audience_params)
        for key, gone in (("app_user_ids", {app_user_id}), ("tokens", tokens)):
            if isinstance(params.get(key), list):
                params[key] = [value for value in params[key] if value not in gone]
        if params != message.audience_params:
            Message.objects.filter(pk=message.pk).update(audience_params=params)
            scrubbed += 1
    return scrubbed
