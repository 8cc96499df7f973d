"""Reads for CSV exports of a message's deliveries."""

from collections.abc import Iterable

from django.db.models.functions import Right

from messaging.models import Delivery, Message

DELIVERY_EXPORT_COLUMNS = [
    "delivery_id",
    "device_id",
    "token_suffix",
    "app_user_id",
    "platform",
    "status",
    "attempts",
    "error_code",
    "error_detail",
    "sent_at",
    "opened_at",
]
EXPORT_CHUNK = 2000


def delivery_export_rows(message: Message) -> Iterable[tuple]:
    """DELIVERY_EXPORT_COLUMNS for each delivery of a message, streamed in chunks. Tokens
    show only their last 12 characters, as in the admin; a removed device leaves them empty."""
    return (
        Delivery.objects.filter(message=message)
        .order_by("pk")
        .annotate(token_suffix=Right("device__token", 12))
        .values_list(
            "pk",
            "device_id",
            "token_suffix",
            "device__user__app_user_id",
            "device__platform",
            "status",
            "attempts",
            "error_code",
            "error_detail",
            "sent_at",
            "opened_at",
        )
        .iterator(chunk_size=EXPORT_CHUNK)
    )
