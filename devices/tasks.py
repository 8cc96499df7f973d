"""Background work of the devices app."""

from django.conf import settings
from django.tasks import task

from devices.services import deactivate_stale_devices


@task()
def deactivate_stale_devices_task() -> int:
    """Token hygiene: herald_beat queues this once a day."""
    return deactivate_stale_devices(days=settings.DEVICE_STALE_AFTER_DAYS)
