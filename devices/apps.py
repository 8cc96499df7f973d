from django.apps import AppConfig


class DevicesConfig(AppConfig):
    name = "devices"

    def ready(self):
        # Queued ingestion's backlog, in /healthz and /metrics (only in queue mode).
        from api import health, metrics
        from devices import ingest

        health.register_check("ingest", ingest.backlog_health, applies=ingest.queue_enabled)
        metrics.register_scrape_collector(ingest.BacklogGauges())
