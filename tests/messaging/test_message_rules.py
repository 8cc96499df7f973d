"""One set of message rules: the composer's form has the API's serializer judge what staff wrote."""

from datetime import timedelta

import pytest
from django.utils import timezone

from messaging import services
from messaging.models import Message
from tests.staff import make_device

pytest_plugins = ["tests.staff_fixtures"]
pytestmark = pytest.mark.usefixtures("immediate_tasks")

COMPOSE = "/admin/messaging/message/compose/"


def composed(tenant, **fields) -> dict:
    return {
        "tenant": tenant.pk,
        "title": "Sale",
        "body": "Today",
        "data_only": "1",
        "priority": "5",
        "audience": "all",
        "when": "now",
        "schedule_tz": "UTC",
        "ttl_value": "4",
        "ttl_unit": "604800",
        **fields,
    }


# Each case: what the API is sent, what the composer is sent, and the API field at fault.
CASES = [
    pytest.param(
        {"data": {"title": "x"}},
        {"data_key": "title", "data_value": "x"},
        "data",
        id="a data key a data-only push fills in",
    ),
    pytest.param(
        {"data": {"google.x": "y"}},
        {"data_key": "google.x", "data_value": "y"},
        "data",
        id="a reserved data key",
    ),
    pytest.param(
        {"audience": {"kind": "filter"}},
        {"audience": "filter"},
        "audience",
        id="a filter audience without criteria",
    ),
    pytest.param(
        {"audience": {"kind": "filter", "countries": ["XX"]}},
        {"audience": "filter", "countries": "XX"},
        "audience",
        id="an unknown country",
    ),
    pytest.param(
        {"ttl_seconds": 29 * 86400},
        {"ttl_value": "29", "ttl_unit": "86400"},
        "ttl_seconds",
        id="a TTL over four weeks",
    ),
    pytest.param(
        {"options": {"analytics_label": "no spaces"}},
        {"analytics_label": "no spaces"},
        "options",
        id="a malformed analytics label",
    ),
]


@pytest.mark.parametrize(("api_fields", "form_fields", "field"), CASES)
def test_the_api_and_the_composer_refuse_the_same_message(
    server, editor, tenant, api_fields, form_fields, field
):
    make_device(tenant, "tok-a", user="ayse")

    api = server.post("/api/v1/messages", {"title": "Sale", "body": "Today", **api_fields}, format="json")
    page = editor.post(COMPOSE, composed(tenant, _action="confirm", **form_fields))

    assert api.status_code == 400 and api.json()["field"] == field
    assert page.status_code == 200 and page.context["form"].errors
    assert not Message.objects.exists()


def test_a_notification_message_may_carry_a_data_key_named_title(server):
    response = server.post(
        "/api/v1/messages",
        {"title": "Sale", "body": "Today", "data_only": False, "data": {"title": "kept"}},
        format="json",
    )

    assert response.status_code == 202, response.content


def test_the_composer_schedules_no_further_ahead_than_the_api(editor, tenant):
    later = (timezone.now() + timedelta(days=400)).strftime("%Y-%m-%dT%H:%M")

    page = editor.post(COMPOSE, composed(tenant, _action="confirm", when="later", schedule_at=later))

    assert b"at most 366 days ahead" in page.content
    assert not Message.objects.exists()


def test_nobody_to_send_to_now_is_refused_and_a_scheduled_push_may_wait_for_its_audience(tenant):
    now = services.MessageInput(title="t", body="b")
    later = services.MessageInput(title="t", body="b", schedule_at=timezone.now() + timedelta(hours=1))

    with pytest.raises(services.NoTargetableDevice):
        services.recipients(tenant=tenant, spec=now)
    assert services.recipients(tenant=tenant, spec=later) == 0
    with pytest.raises(services.NoTargetableDevice):
        services.recipients(tenant=tenant, spec=later, even_if_scheduled=True)
    make_device(tenant, "tok-a", user="ayse")
    assert services.recipients(tenant=tenant, spec=now) == 1
