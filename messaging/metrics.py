"""Gauges read from the database when Prometheus scrapes: the delivery queue and messages.

Registered with ``api.metrics`` by the app's ready(). Each is one indexed query (the
partial index on unfinished deliveries, the message status index), so a scrape every
15 seconds costs little even with a large queue.
"""

from django.db.models import Count
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily

from api.metrics import DatabaseGauges
from messaging.models import Delivery, Message

UNFINISHED = (Delivery.Status.PENDING, Delivery.Status.RETRYING)


class DeliveryQueueCollector(DatabaseGauges):
    """Queue depth, the age of the oldest due delivery, and messages by status."""

    up_name = "herald_metrics_database_up"
    up_help = "1 when the scrape could read the queue gauges from the database."

    def read(self):
        now = timezone.now()
        depth = GaugeMetricFamily(
            "herald_delivery_queue_depth",
            "Deliveries not finished yet, by status (pending, retrying).",
            labels=["status"],
        )
        counts = dict(
            Delivery.objects.filter(status__in=UNFINISHED)
            .values_list("status")
            .annotate(n=Count("id"))
            .order_by()
        )
        for status in UNFINISHED:
            depth.add_metric([status], counts.get(status, 0))

        oldest = None
        for status in UNFINISHED:  # one index range each: (status, next_attempt_at)
            due = (
                Delivery.objects.filter(status=status, next_attempt_at__lte=now)
                .order_by("next_attempt_at")
                .values_list("next_attempt_at", flat=True)
                .first()
            )
            if due is not None and (oldest is None or due < oldest):
                oldest = due
        age = GaugeMetricFamily(
            "herald_delivery_queue_oldest_due_seconds",
            "Seconds the longest-waiting due delivery has waited past its attempt time (0: none due).",
        )
        age.add_metric([], (now - oldest).total_seconds() if oldest else 0.0)

        messages = GaugeMetricFamily("herald_messages", "Messages by status.", labels=["status"])
        by_status = dict(Message.objects.values_list("status").annotate(n=Count("id")).order_by())
        for status in Message.Status.values:
            messages.add_metric([status], by_status.get(status, 0))
        return [depth, age, messages]


collector = DeliveryQueueCollector()
