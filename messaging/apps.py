from django.apps import AppConfig


class MessagingConfig(AppConfig):
    name = "messaging"

    def ready(self):
        from messaging import receivers, tasks  # noqa: F401  (listen to signals of audiences and services)
