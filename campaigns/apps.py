from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "campaigns"
    verbose_name = "Campaigns"

    def ready(self) -> None:
        # Receivers (tenant deactivation, recorded events) and the tasks that enqueue work.
        from campaigns import receivers, tasks  # noqa: F401
