"""Races on PostgreSQL, with real concurrent connections (one per thread)."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from rest_framework.test import APIClient

from devices.models import AppUser, Device, Event, TokenRotation
from tests.devices.conftest import EVENT

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def race(requests: list[tuple[str, dict]]) -> list[int]:
    """POST every (path, body) at once, each from its own thread and connection."""
    barrier = threading.Barrier(len(requests))

    def one(path_body):
        path, body = path_body
        client = APIClient()
        try:
            barrier.wait(timeout=10)
            return client.post(path, body, format="json").status_code
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        return list(pool.map(one, requests))


def credentials(tenant, key):
    return {"tenant_id": tenant.tenant_id, "api_key": key}


def test_twenty_concurrent_refreshes_of_one_token_give_exactly_one_success(postgres_only, tenant, app_key):
    APIClient().post("/events", {**EVENT, **credentials(tenant, app_key)}, format="json")
    bodies = [
        (
            "/devices/refresh-token",
            {**credentials(tenant, app_key), "old_token": EVENT["device_token"], "new_token": f"new-{i}"},
        )
        for i in range(20)
    ]

    statuses = race(bodies)

    assert sorted(statuses) == [200] + [404] * 19
    device = Device.objects.get()
    winner = TokenRotation.objects.get()
    assert device.token == winner.new_token
    assert device.token.startswith("new-")


def test_concurrent_first_events_of_one_install_create_one_device_and_one_user(
    postgres_only, tenant, app_key
):
    bodies = [
        (
            "/events",
            {
                **EVENT,
                **credentials(tenant, app_key),
                "app_user_id": "",
                "device_token": "fresh-install",
                "session_id": f"s{i}",
            },
        )
        for i in range(20)
    ]

    statuses = race(bodies)

    assert statuses == [200] * 20
    assert Device.objects.count() == 1
    assert AppUser.objects.count() == 1
    assert Event.objects.count() == 20


def test_concurrent_events_naming_one_new_user_create_that_user_once(postgres_only, tenant, app_key):
    bodies = [
        (
            "/events",
            {
                **EVENT,
                **credentials(tenant, app_key),
                "app_user_id": "dana",
                "device_token": f"token-{i % 4}",
                "session_id": f"s{i}",
            },
        )
        for i in range(20)
    ]

    assert race(bodies) == [200] * 20
    assert AppUser.objects.filter(app_user_id="dana").count() == 1
    assert Device.objects.count() == 4


def test_identical_retried_events_racing_each_other_are_stored_once(postgres_only, tenant, app_key):
    body = {**EVENT, **credentials(tenant, app_key)}

    assert race([("/events", body)] * 10) == [200] * 10
    assert Event.objects.count() == 1


def test_refreshes_racing_events_for_the_new_token_never_fail_or_duplicate(postgres_only, tenant, app_key):
    APIClient().post("/events", {**EVENT, **credentials(tenant, app_key)}, format="json")
    refresh = (
        "/devices/refresh-token",
        {**credentials(tenant, app_key), "old_token": EVENT["device_token"], "new_token": "rotated"},
    )
    event = (
        "/events",
        {**EVENT, **credentials(tenant, app_key), "device_token": "rotated", "session_id": "after-rotation"},
    )

    statuses = race([refresh, event] * 5)

    assert all(s == 200 or s == 404 for s in statuses)
    assert statuses.count(200) >= 6  # every event, and at least the first refresh
    assert Device.objects.count() == 1
    assert Device.objects.get().token == "rotated"


def test_refreshes_crossing_each_others_tokens_do_not_deadlock(postgres_only, tenant, app_key):
    creds = credentials(tenant, app_key)
    for token in ("t1", "t2"):
        APIClient().post("/events", {**EVENT, **creds, "device_token": token}, format="json")
    swaps = [
        ("/devices/refresh-token", {**creds, "old_token": "t1", "new_token": "t2"}),
        ("/devices/refresh-token", {**creds, "old_token": "t2", "new_token": "t1"}),
    ] * 5

    statuses = race(swaps)

    assert all(s in (200, 404) for s in statuses), statuses
    assert Device.objects.count() == 1
