"""Token hygiene: devices silent for too long stop being targeted."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from devices.models import AppUser, Device


@pytest.fixture
def device_seen(tenant):
    user = AppUser.objects.create(tenant=tenant, app_user_id="u")

    def device_seen(token, days_ago):
        return Device.objects.create(
            tenant=tenant,
            user=user,
            token=token,
            platform="android",
            push_permission=True,
            last_seen_at=timezone.now() - timedelta(days=days_ago),
        )

    return device_seen


def test_devices_not_seen_for_270_days_are_deactivated_by_default(device_seen):
    old, recent = device_seen("old", 271), device_seen("recent", 269)
    out = StringIO()

    call_command("deactivate_stale_devices", stdout=out)

    old.refresh_from_db()
    recent.refresh_from_db()
    assert (old.is_active, old.deactivation_reason) == (False, "STALE")
    assert recent.is_active
    assert "Deactivated 1 device(s) not seen for 270 days; 1 active device(s) remain." in out.getvalue()


def test_the_period_is_configurable(device_seen):
    device_seen("month-old", 31)

    call_command("deactivate_stale_devices", "--days", "30", stdout=StringIO())

    assert Device.objects.targetable().count() == 0


def test_an_unknown_tenant_is_an_error(db):
    with pytest.raises(CommandError, match="No tenant"):
        call_command("deactivate_stale_devices", "--tenant", "ghost")


def test_herald_beat_queues_token_hygiene(device_seen, settings):
    settings.TASKS = {"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"}}
    old = device_seen("old", 300)

    call_command("herald_beat", "--once")

    old.refresh_from_db()
    assert (old.is_active, old.deactivation_reason) == (False, "STALE")
