"""Reads: which devices a message reaches."""

from django.db.models import QuerySet

from devices.models import Device, hash_token
from messaging.models import Audience, Message


def audience_devices(*, tenant, audience: str, params: dict) -> QuerySet[Device]:
    """The targetable devices of an audience (none for topics and conditions: FCM fans those out)."""
    devices = Device.objects.targetable().filter(tenant=tenant)
    if audience in (Audience.TOPIC, Audience.CONDITION):
        return devices.none()
    if audience == Audience.USERS:
        devices = devices.filter(user__app_user_id__in=params.get("app_user_ids") or [])
    elif audience == Audience.TOKENS:
        devices = devices.filter(token_hash__in=[hash_token(t) for t in params.get("tokens") or []])
    if params.get("platforms"):
        devices = devices.filter(platform__in=params["platforms"])
    if params.get("countries"):
        devices = devices.filter(user__country__in=params["countries"])
    if params.get("languages"):
        devices = devices.filter(user__language__in=params["languages"])
    return devices


def message_devices(message: Message) -> QuerySet[Device]:
    return audience_devices(tenant=message.tenant, audience=message.audience, params=message.audience_params)


def audience_size(*, tenant, audience: str, params: dict) -> int | None:
    """How many devices an audience reaches now; None when FCM decides (topic, condition)."""
    if audience in (Audience.TOPIC, Audience.CONDITION):
        return None
    return audience_devices(tenant=tenant, audience=audience, params=params).count()


def error_breakdown(message: Message) -> dict[str, int]:
    """Failed deliveries of a message counted by FCM error code."""
    from django.db.models import Count

    rows = (
        message.deliveries.filter(status="failed").values("error_code").annotate(n=Count("id")).order_by("-n")
    )
    counts = dict(message.pruned_error_counts or {})  # of deliveries retention removed
    for row in rows:
        code = row["error_code"] or "UNKNOWN"
        counts[code] = counts.get(code, 0) + row["n"]
    return dict(sorted(counts.items(), key=lambda item: -item[1]))
