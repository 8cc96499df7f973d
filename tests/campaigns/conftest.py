"""Small helpers for campaign tests: users with devices, campaigns made through the services."""

from datetime import UTC, datetime

import pytest

from campaigns import services
from devices.models import AppUser, Device
from tests.messaging.conftest import sandbox_server  # noqa: F401  (a fixture the worker tests use)

START = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # a Monday, noon UTC


@pytest.fixture(autouse=True)
def _fresh_campaign_queues():
    from campaigns import tasks

    tasks.forget_queued()
    yield
    tasks.forget_queued()


@pytest.fixture
def no_sending(settings):
    """Tasks are recorded, not run: the tests call the services themselves."""
    settings.TASKS = {"default": {"BACKEND": "django.tasks.backends.dummy.DummyBackend"}}


def make_user(tenant, app_user_id, *, timezone="", devices=1, language="", permission=True):
    user = AppUser.objects.create(
        tenant=tenant, app_user_id=app_user_id, timezone=timezone, language=language
    )
    for k in range(devices):
        Device.objects.create(
            tenant=tenant,
            user=user,
            token=f"tok-{app_user_id}-{k}",
            platform="android",
            push_permission=permission,
        )
    return user


def content(*titles, language="en"):
    return {
        "language": language,
        "variants": [{"title": t, "body": f"{t} body"} for t in titles or ("Hello",)],
    }


def make_campaign(tenant, *, activate=True, now=START, **fields):
    defaults = {
        "name": fields.pop("name", "Cart reminder"),
        "kind": "triggered",
        "content": content(),
        "trigger_event": "cart_abandoned",
        "cooldown": "5m",
    }
    campaign = services.create_campaign(tenant=tenant, fields={**defaults, **fields})
    if activate:
        services.activate(campaign, now=now)
    return campaign


def event(tenant, key, *, user, name="cart_abandoned", at=START, token=None, timezone="UTC", **params):
    """POST /events for `user` (their device token is tok-<user>-0, as make_user makes it)."""
    from rest_framework.test import APIClient

    body = {
        "tenant_id": tenant.tenant_id,
        "api_key": key,
        "app_user_id": user,
        "event_name": name,
        "event_time": at.isoformat(),
        "device_token": token or f"tok-{user}-0",
        "platform": "android",
        "push_permission_granted": True,
        "timezone": timezone,
        "language": "en",
        "country": "TR",
        "session_id": "s1",
        "params": params,
    }
    response = APIClient().post("/events", body, format="json")
    assert response.status_code == 200, response.content
    return response


# The messaging tests' fixtures: an API client with a server key, devices, the FCM sandbox.
from tests.messaging.conftest import (  # noqa: E402, F401
    immediate_tasks,
    inbox,
    make_device,
    sandbox,
    server,
)
