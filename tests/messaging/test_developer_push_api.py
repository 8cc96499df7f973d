"""POST /developer/push, exactly as SmartAppPush answers it."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from messaging.models import Message

pytestmark = pytest.mark.usefixtures("immediate_tasks")

LATER = (timezone.now() + timedelta(days=1)).isoformat()


def push(client, **body):
    return client.post(
        "/developer/push",
        {"app_user_id": "user_1", "title": "Hi", "body": "There", "schedule_at": LATER, **body},
        format="json",
    )


def test_it_targets_every_permitted_device_of_the_user_and_answers_201(server, make_device, tenant):
    make_device("phone", user="user_1")
    make_device("tablet", user="user_1", platform="ios")
    make_device("muted", user="user_1", permission=False)
    make_device("someone-else", user="user_2")

    response = push(server, extra_data={"deep_link": "app://inbox"}, priority=8)

    assert response.status_code == 201
    assert response.json() == {"push_count": 2, "app_user_id": "user_1", "app_id": "acme"}
    message = Message.objects.get()
    assert (message.source, message.priority, message.data) == (
        "developer_push",
        8,
        {"deep_link": "app://inbox"},
    )
    assert message.audience_params == {"app_user_ids": ["user_1"]}


def test_a_user_without_a_permitted_device_is_a_404(server, make_device):
    make_device("muted", user="user_1", permission=False)

    response = push(server)

    assert response.status_code == 404
    assert response.json()["error"] == "no_targetable_device"
    assert Message.objects.count() == 0


def test_the_same_dedupe_key_within_ten_minutes_sends_once(server, make_device):
    make_device("phone")

    first = push(server, dedupe_key="order-42")
    again = push(server, dedupe_key="order-42")

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json()["push_count"] == 1
    assert Message.objects.count() == 1


def test_a_dedupe_key_older_than_ten_minutes_sends_again(server, make_device):
    make_device("phone")
    push(server, dedupe_key="order-42")
    Message.objects.update(created_at=timezone.now() - timedelta(minutes=11))

    push(server, dedupe_key="order-42")

    assert Message.objects.count() == 2


@pytest.mark.parametrize("headers", [{}, {"HTTP_X_SERVER_KEY": "hrld_srv_wrong"}])
def test_a_missing_or_bad_server_key_is_a_401(db, headers):
    client = APIClient()
    client.credentials(**headers)

    assert push(client).status_code == 401


def test_an_app_key_is_not_a_server_key(app_key, make_device):
    make_device("phone")
    client = APIClient()
    client.credentials(HTTP_X_SERVER_KEY=app_key)

    assert push(client).status_code == 401


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"app_user_id": None}, "app_user_id"),
        ({"title": ""}, "title"),
        ({"priority": 0}, "priority"),
        ({"priority": 11}, "priority"),
        ({"extra_data": {"n": 5}}, "extra_data"),
        ({"schedule_at": "soon"}, "schedule_at"),
    ],
)
def test_invalid_fields_are_a_400(server, make_device, body, field):
    make_device("phone")

    response = push(server, **body)

    assert response.status_code == 400
    assert response.json()["field"] == field


def test_over_the_rate_limit_it_answers_429_with_retry_after(server, make_device, settings, frozen_clock):
    settings.DEVELOPER_PUSH_RATE = "3/s"  # on a stopped clock a 1 s window cannot roll over
    make_device("phone")

    statuses = [push(server).status_code for _ in range(3)]
    limited = push(server)
    frozen_clock.shift(1)
    next_second = push(server)

    assert statuses == [201, 201, 201]
    assert limited.status_code == 429
    assert limited.json()["error"] == "rate_limited"
    assert limited.headers["Retry-After"] == "1"
    assert next_second.status_code == 201


def test_a_dedupe_key_belongs_to_one_app_user(server, make_device):
    make_device("alice-phone", user="alice")
    make_device("bob-phone", user="bob")

    alice = push(server, app_user_id="alice", dedupe_key="welcome")
    bob = push(server, app_user_id="bob", dedupe_key="welcome")

    assert (alice.status_code, bob.status_code) == (201, 201)
    assert "deduplicated" not in bob.json()
    assert sorted(m.audience_params["app_user_ids"][0] for m in Message.objects.all()) == ["alice", "bob"]


def test_a_suppressed_repeat_says_it_was_deduplicated(server, make_device):
    make_device("phone")

    first = push(server, dedupe_key="order-42")
    again = push(server, dedupe_key="order-42")

    assert first.json() == {"push_count": 1, "app_user_id": "user_1", "app_id": "acme"}
    assert again.json() == {"push_count": 1, "app_user_id": "user_1", "app_id": "acme", "deduplicated": True}


def test_extra_data_cannot_replace_the_pushs_title_or_body(server, make_device):
    from messaging.services import fcm_message

    make_device("phone")

    response = push(server, extra_data={"title": "from extra_data", "screen": "inbox"})

    assert response.status_code == 201
    data = fcm_message(push=Message.objects.get())["data"]
    assert (data["title"], data["body"], data["screen"]) == ("Hi", "There", "inbox")
