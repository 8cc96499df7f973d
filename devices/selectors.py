"""Reads of app users for lists and exports."""

from collections.abc import Iterable
from datetime import datetime

from django.db.models import Count, Exists, IntegerField, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from devices.models import AppUser, Device
from tenants.models import Tenant

USER_EXPORT_COLUMNS = [
    "app_user_id",
    "is_anonymous",
    "language",
    "country",
    "timezone",
    "first_seen_at",
    "last_seen_at",
    "devices",
    "targetable_devices",
]
EXPORT_CHUNK = 2000


def filtered_app_users(
    *,
    tenant: Tenant,
    country: str = "",
    language: str = "",
    platform: str = "",
    anonymous: bool | None = None,
    seen_after: datetime | None = None,
    seen_before: datetime | None = None,
) -> QuerySet[AppUser]:
    """A tenant's users matching every filter given (platform: has a device of that platform)."""
    users = AppUser.objects.filter(tenant=tenant)
    if country:
        users = users.filter(country=country)
    if language:
        users = users.filter(language=language)
    if platform:
        users = users.filter(Exists(Device.objects.filter(user=OuterRef("pk"), platform=platform)))
    if anonymous is not None:
        users = users.filter(is_anonymous=anonymous)
    if seen_after is not None:
        users = users.filter(last_seen_at__gte=seen_after)
    if seen_before is not None:
        users = users.filter(last_seen_at__lt=seen_before)
    return users


def user_export_rows(users: QuerySet[AppUser]) -> Iterable[tuple]:
    """USER_EXPORT_COLUMNS for each user, streamed from the database in chunks."""

    def count(devices):
        return Coalesce(
            Subquery(
                devices.filter(user=OuterRef("pk"))
                .order_by()
                .values("user")
                .annotate(n=Count("pk"))
                .values("n")[:1],
                output_field=IntegerField(),
            ),
            Value(0),
        )

    return (
        users.order_by("pk")
        .annotate(device_total=count(Device.objects.all()), targetable=count(Device.objects.targetable()))
        .values_list(
            "app_user_id",
            "is_anonymous",
            "language",
            "country",
            "timezone",
            "first_seen_at",
            "last_seen_at",
            "device_total",
            "targetable",
        )
        .iterator(chunk_size=EXPORT_CHUNK)
    )
