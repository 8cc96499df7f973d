"""How many SQL statements an event and a token refresh take: a behaviour of the service (each
round trip to the database costs CPU on both ends), not a timing. The API key is remembered
after the first request, and its last use written at most once a minute, so later requests
carry no statement of authentication."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from devices.models import Device, Event, TokenRotation
from tests.devices.conftest import EVENT

# SQLite (the portable path): the device read, the user upsert, the device update, the event
# insert, and the savepoint around them (its two statements).
PORTABLE_EVENT_STATEMENTS = 6


@pytest.fixture
def known_device(register):
    register()  # the key is read, its use written, the device and user created


@pytest.mark.postgres
def test_an_event_for_a_known_device_is_one_statement_on_postgresql(
    postgres_only, known_device, api, django_assert_max_num_queries
):
    with django_assert_max_num_queries(1):
        assert api("/events", {**EVENT, "session_id": "s2"}).status_code == 200

    assert Event.objects.count() == 2


@pytest.mark.postgres
def test_an_event_from_a_new_install_is_one_statement_on_postgresql(
    postgres_only, known_device, api, django_assert_max_num_queries
):
    with django_assert_max_num_queries(1):
        assert api("/events", {**EVENT, "app_user_id": "", "device_token": "fresh"}).status_code == 200

    assert Device.objects.get(token="fresh").user.is_anonymous


def test_an_event_takes_a_bounded_number_of_statements_on_any_database(
    known_device, api, django_assert_max_num_queries
):
    with django_assert_max_num_queries(PORTABLE_EVENT_STATEMENTS):
        assert api("/events", {**EVENT, "session_id": "s2"}).status_code == 200


@pytest.mark.postgres
def test_a_token_refresh_is_one_statement_on_postgresql(
    postgres_only, known_device, api, django_assert_max_num_queries
):
    body = {"old_token": EVENT["device_token"], "new_token": "rotated", "app_user_id": EVENT["app_user_id"]}

    with CaptureQueriesContext(connection) as queries:
        assert api("/devices/refresh-token", body).status_code == 200

    # One statement of work, in a transaction of its own (here a savepoint: the test's own
    # transaction is open), so that what a webhook writes on token_rotated commits with it.
    # (Webhooks read their per-process map of subscribed endpoints at most every 10 s.)
    work = [
        q["sql"]
        for q in queries.captured_queries
        if not q["sql"].startswith(("SAVEPOINT", "RELEASE")) and '"webhooks_endpoint"' not in q["sql"]
    ]
    assert len(work) == 1, work
    assert Device.objects.get().token == "rotated"
    assert TokenRotation.objects.get().old_token == EVENT["device_token"]


@pytest.mark.postgres
def test_a_token_refresh_no_receiver_writes_for_opens_no_transaction_of_its_own(
    postgres_only, known_device, api
):
    body = {"old_token": EVENT["device_token"], "new_token": "rotated", "app_user_id": EVENT["app_user_id"]}

    with CaptureQueriesContext(connection) as queries:
        assert api("/devices/refresh-token", body).status_code == 200

    # No webhook endpoint of the tenant wants device.token_rotated: the swap is its own
    # statement (in autocommit outside tests), without BEGIN, COMMIT or a savepoint.
    sent = [q["sql"] for q in queries.captured_queries if '"webhooks_endpoint"' not in q["sql"]]
    assert len(sent) == 1, sent
    assert "herald_refresh_token" in sent[0]
    assert Device.objects.get().token == "rotated"
