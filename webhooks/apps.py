from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"

    def ready(self):
        from api.metrics import register_scrape_collector
        from webhooks import receivers  # noqa: F401  (listens to messaging's and devices' signals)
        from webhooks.metrics import collector

        register_scrape_collector(collector)
