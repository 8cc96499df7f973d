"""last_seen_at is kept to the minute: an event rewrites its device's and user's rows only when
it changes something in them or their last_seen_at is a minute old (each new row version of a
device rewrote all its index entries). Every event is stored all the same."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection

from devices.models import AppUser, Device, Event
from devices.services import LAST_SEEN_GRANULARITY

START = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture
def at():
    """Run what follows at START plus this many seconds."""

    def at(seconds):
        return time_machine.travel(START + timedelta(seconds=seconds), tick=False)

    return at


def seen(app_user_id="user_123"):
    device, user = Device.objects.get(), AppUser.objects.get(app_user_id=app_user_id)
    return device.last_seen_at, user.last_seen_at


def test_an_unchanged_device_seen_again_within_the_minute_keeps_its_last_seen(register, at):
    with at(0):
        register()
    with at(30):
        register(event_name="screen_viewed")

    assert seen() == (START, START)
    assert Event.objects.count() == 2


def test_an_event_a_minute_after_the_last_seen_moves_it(register, at):
    with at(0):
        register()
    with at(30):
        register(event_name="screen_viewed")
    with at(61):
        register(event_name="purchase_completed")

    later = START + timedelta(seconds=61)
    assert seen() == (later, later)
    assert Event.objects.count() == 3
    assert LAST_SEEN_GRANULARITY == timedelta(seconds=60)


def test_a_change_within_the_minute_is_written_at_once_with_its_time(register, at):
    with at(0):
        register()
    with at(10):
        register(push_permission_granted=False, language="en")

    device, user = Device.objects.get(), AppUser.objects.get()
    later = START + timedelta(seconds=10)
    assert (device.push_permission, device.last_seen_at) == (False, later)
    assert (user.language, user.last_seen_at) == ("en", later)


def test_an_unnamed_event_on_a_known_device_keeps_its_users_last_seen_within_the_minute(register, at):
    with at(0):
        register(app_user_id="")
    with at(20):
        register(app_user_id="", event_name="screen_viewed")
    with at(70):
        register(app_user_id="", event_name="purchase_completed")

    device = Device.objects.get()
    later = START + timedelta(seconds=70)
    assert (device.last_seen_at, device.user.last_seen_at) == (later, later)
    assert Event.objects.filter(user=device.user).count() == 3


def test_a_deactivated_device_comes_back_with_an_event_within_the_minute(register, at):
    with at(0):
        register()
        Device.objects.get().deactivate(reason="UNREGISTERED")
    with at(5):
        register(event_name="screen_viewed")

    device = Device.objects.get()
    assert (device.is_active, device.deactivated_at, device.deactivation_reason) == (True, None, "")


def _row_versions():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT ctid::text FROM devices_device), (SELECT ctid::text FROM devices_appuser)"
        )
        return cursor.fetchone()


@pytest.mark.postgres
def test_an_unchanged_event_within_the_minute_writes_no_new_row_version_on_postgresql(
    postgres_only, register, at
):
    with at(0):
        register()
    before = _row_versions()
    with at(30):
        register(event_name="screen_viewed")

    assert _row_versions() == before
    assert Event.objects.count() == 2
