from django.apps import AppConfig


class MessagingConfig(AppConfig):
    name = "messaging"

    def ready(self):
        from api.metrics import register_scrape_collector
        from messaging import (
            receivers,  # noqa: F401  (listens to the signals of audiences and services)
            tasks,  # noqa: F401  (queues the work services announce)
            user_data,  # noqa: F401 - connects its app_user_erasing receiver
        )
        from messaging.metrics import collector

        register_scrape_collector(collector)
