from django.apps import AppConfig


class SandboxConfig(AppConfig):
    """A stand-in for Google's FCM and OAuth endpoints, so Herald runs with no Google account."""

    name = "fcm_sandbox"
    label = "fcm_sandbox"
    verbose_name = "FCM sandbox"
    default_auto_field = "django.db.models.BigAutoField"
