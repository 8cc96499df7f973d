"""Gauges read from the database when Prometheus scrapes: the webhook outbox and endpoints.

Registered with ``api.metrics`` by the app's ready(). Every query stays on an index: the
unbatched events on the event's batch index (``batch_id IS NULL``), the pending batches on
their partial index, the head of each enabled endpoint's queue on the sender's own
(endpoint, batch, id) index, one probe per endpoint. Endpoints are few; they are counted.
"""

from django.db.models import Count, Min, OuterRef, Q, Subquery
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily

from api.metrics import DatabaseGauges
from webhooks.models import Batch, Endpoint, Event


class WebhookOutboxCollector(DatabaseGauges):
    """Events waiting to be posted, the age of the oldest, and endpoints by state."""

    up_name = "herald_webhook_metrics_database_up"
    up_help = "1 when the scrape could read the webhook gauges from the database."

    def read(self):
        now = timezone.now()
        pending = Q(batch__status=Batch.Status.PENDING)
        outbox = GaugeMetricFamily(
            "herald_webhook_outbox_events",
            "Webhook events not delivered yet: unbatched (waiting for a sender) or in a pending batch "
            "(being posted, or failed and waiting for its retry). Disabled endpoints' events included.",
            labels=["state"],
        )
        outbox.add_metric(["unbatched"], Event.objects.filter(batch__isnull=True).count())
        outbox.add_metric(["pending_batch"], Event.objects.filter(pending).count())

        # The next event each enabled endpoint's sender will post: its oldest pending batch's
        # events, else its oldest unbatched event. A disabled endpoint's backlog waits for a
        # person, not a worker: herald_webhook_endpoints{state="disabled"} tells of it.
        enabled = Q(endpoint__disabled_at__isnull=True)
        head = Event.objects.filter(endpoint=OuterRef("pk"), batch__isnull=True).order_by("id")
        heads = [
            at
            for at in Endpoint.objects.enabled()
            .annotate(head=Subquery(head.values("created_at")[:1]))
            .order_by()
            .values_list("head", flat=True)
            if at
        ]
        retrying = Event.objects.filter(pending, enabled).aggregate(at=Min("created_at"))["at"]
        oldest = min([*heads, *([retrying] if retrying else [])], default=None)
        age = GaugeMetricFamily(
            "herald_webhook_outbox_oldest_seconds",
            "Seconds the oldest event waiting for an enabled endpoint has waited since it was recorded "
            "(0: none waiting).",
        )
        age.add_metric([], max(0.0, (now - oldest).total_seconds()) if oldest else 0.0)

        counts = Endpoint.objects.aggregate(
            total=Count("pk"),
            disabled=Count("pk", filter=Q(disabled_at__isnull=False)),
            backing_off=Count("pk", filter=Q(disabled_at__isnull=True, retry_at__gt=now)),
        )
        endpoints = GaugeMetricFamily(
            "herald_webhook_endpoints",
            "Webhook endpoints by state: enabled (ready to post), backing_off (resting after a failure), "
            "disabled (failed too long; waits for someone to enable it).",
            labels=["state"],
        )
        endpoints.add_metric(["enabled"], counts["total"] - counts["disabled"] - counts["backing_off"])
        endpoints.add_metric(["backing_off"], counts["backing_off"])
        endpoints.add_metric(["disabled"], counts["disabled"])
        return [outbox, age, endpoints]


collector = WebhookOutboxCollector()
