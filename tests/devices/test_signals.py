"""The signals /events and the token refresh send (cached per sender: they fire on every
request) still reach receivers connected or disconnected between requests."""

from devices.models import Device
from devices.signals import event_recorded, token_rotated


def test_a_receiver_connected_after_events_were_recorded_hears_the_next_one(
    register, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        register(event_name="before")
    heard = []

    def receiver(sender, *, tenant_id, name, **kwargs):
        heard.append(name)

    event_recorded.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            register(event_name="after")
    finally:
        event_recorded.disconnect(receiver)
    with django_capture_on_commit_callbacks(execute=True):
        register(event_name="gone")

    assert heard == ["after"]


def test_a_receiver_connected_after_a_rotation_hears_the_next_one(register, api):
    register(device_token="t0")
    assert api("/devices/refresh-token", {"old_token": "t0", "new_token": "t1"}).status_code == 200
    heard = []

    def receiver(sender, *, device, at, **kwargs):
        heard.append(device.token)

    token_rotated.connect(receiver, sender=Device)
    try:
        assert api("/devices/refresh-token", {"old_token": "t1", "new_token": "t2"}).status_code == 200
    finally:
        token_rotated.disconnect(receiver, sender=Device)
    assert api("/devices/refresh-token", {"old_token": "t2", "new_token": "t3"}).status_code == 200

    assert heard == ["t2"]
