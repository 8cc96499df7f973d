"""The composer's segment and rules audiences: stored as the API stores them, sent to exactly
the devices the rules match, kept through a draft, and never another tenant's segment."""

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audiences.models import Segment
from devices.models import AppUser, Device, Event
from messaging.models import Audience, Message
from tests.staff import signed_in, staff_user

pytest_plugins = ["tests.staff_fixtures"]
COMPOSE = "/admin/messaging/message/compose/"
AUDIENCE = "/admin/messaging/message/compose/audience/"
TURKISH_ANDROID = {
    "version": 1,
    "exclude": [],
    "include": [
        [
            {"type": "property", "property": "language", "op": "in", "value": ["tr"]},
            {"type": "property", "property": "platform", "op": "in", "value": ["android"]},
        ]
    ],
}
BIG_BUYERS = {
    "include": [
        [
            {
                "type": "event",
                "event": "purchase",
                "op": "did",
                "params": [{"param": "amount", "op": "≥", "value": 50}],
            }
        ]
    ],
    "exclude": [[{"type": "property", "property": "country", "op": "in", "value": ["DE"]}]],
}


def form(tenant, **fields):
    return {
        "tenant": tenant.pk,
        "title": "Merhaba",
        "body": "İndirim",
        "data_only": "1",
        "priority": "5",
        "audience": "all",
        "when": "now",
        "schedule_tz": "UTC",
        "ttl_value": "4",
        "ttl_unit": "604800",
        "rules": "",
        **fields,
    }


def bought(device, amount):
    Event.objects.create(
        tenant=device.tenant,
        user=device.user,
        name="purchase",
        params={"amount": amount},
        occurred_at=timezone.now(),
        session_id="s",
        fingerprint=f"f-{device.token}",
    )


@pytest.fixture
def turks(tenant, make_device):
    make_device("tr-android", user="ayse", language="tr")
    make_device("tr-ios", user="ayse", platform="ios", language="tr")
    make_device("en-android", user="john", language="en")
    make_device("tr-ios-only", user="mehmet", platform="ios", language="tr")
    return Segment.objects.create(tenant=tenant, name="Turkish on Android", rules=TURKISH_ANDROID)


def test_a_segment_message_composed_in_the_admin_reaches_exactly_the_segments_devices(
    sandbox, editor, tenant, turks, inbox
):
    response = editor.post(COMPOSE, form(tenant, audience="segment", segment=turks.pk, _action="confirm"))

    message = Message.objects.get()
    assert response.status_code == 302, response.content.decode()[:2000]
    assert (message.audience, message.audience_params) == (Audience.SEGMENT, {"segment_id": turks.pk})
    # ayse matches (one device on Android) and both her devices receive it; mehmet and john do not.
    assert set(inbox()) == {"tr-android", "tr-ios"}
    assert Message.objects.get().targeted_count == 2


def test_a_rules_message_composed_in_the_admin_reaches_exactly_the_matching_devices(
    sandbox, editor, tenant, make_device, inbox
):
    bought(make_device("big", user="big"), 80)
    bought(make_device("small", user="small"), 20)
    bought(make_device("big-de", user="big-de", country="DE"), 90)
    make_device("none", user="none")

    response = editor.post(
        COMPOSE, form(tenant, audience="rules", rules=json.dumps(BIG_BUYERS), _action="confirm")
    )

    message = Message.objects.get()
    assert response.status_code == 302, response.content.decode()[:2000]
    assert message.audience == Audience.RULES
    assert message.audience_params["rules"]["include"][0][0]["params"][0] == {
        "param": "amount",
        "op": ">=",
        "value": 50,
    }
    assert message.audience_params["rules"]["exclude"][0][0]["value"] == ["DE"]
    assert set(inbox()) == {"big"}


def test_the_live_size_of_a_segment_and_of_rules_counts_users_and_pushable_devices(
    editor, tenant, turks, make_device
):
    make_device("tr-android-muted", user="deniz", language="tr", permission=False)

    segment = editor.post(AUDIENCE, form(tenant, audience="segment", segment=turks.pk)).json()
    rules = editor.post(AUDIENCE, form(tenant, audience="rules", rules=json.dumps(TURKISH_ANDROID))).json()

    expected = {"ok": True, "size": 2, "users": 2, "text": "≈ 2 users · 2 devices that allow pushes"}
    assert segment == rules == expected


def test_the_composer_lists_the_tenants_segments_by_name(editor, tenant, turks):
    page = editor.get(COMPOSE).content.decode()

    assert f'data-tenant="{tenant.pk}"' in page
    assert f'<option value="{turks.pk}" data-tenant="{tenant.pk}">Turkish on Android</option>' in page
    assert 'src="/static/audiences/rule_builder.js"' in page


def compose_statements(client) -> list[str]:
    with CaptureQueriesContext(connection) as ctx:
        page = client.get(COMPOSE)
    assert page.status_code == 200
    return [q["sql"] for q in ctx.captured_queries]


def test_the_composer_counts_no_segment_as_it_renders_however_many_there_are(editor, tenant, turks):
    one = compose_statements(editor)
    for i in range(5):
        Segment.objects.create(tenant=tenant, name=f"Turkish {i}", rules=TURKISH_ANDROID)

    six = compose_statements(editor)

    people = (AppUser._meta.db_table, Device._meta.db_table)
    assert not [sql for sql in one + six if any(table in sql for table in people)], "nobody counted"
    assert len(six) == len(one)
    assert editor.get(COMPOSE).content.decode().count(f'data-tenant="{tenant.pk}">Turkish') == 6


def test_a_draft_keeps_its_segment_and_its_rules_when_edited(editor, tenant, turks):
    editor.post(COMPOSE, form(tenant, audience="segment", segment=turks.pk, _action="draft"))
    draft = Message.objects.get()
    page = editor.get(COMPOSE + f"?draft={draft.pk}")
    assert (draft.audience, draft.audience_params) == (Audience.SEGMENT, {"segment_id": turks.pk})
    assert page.context["form"]["audience"].value() == Audience.SEGMENT
    assert page.context["form"]["segment"].value() == turks.pk
    assert f'<option value="{turks.pk}" selected data-tenant="{tenant.pk}">' in page.content.decode()

    editor.post(
        COMPOSE, form(tenant, audience="rules", rules=json.dumps(BIG_BUYERS), draft=draft.pk, _action="draft")
    )
    draft.refresh_from_db()
    assert draft.audience == Audience.RULES and draft.status == Message.Status.DRAFT
    page = editor.get(COMPOSE + f"?draft={draft.pk}")
    rules = json.loads(page.context["form"]["rules"].value())
    assert rules["include"][0][0]["params"][0]["op"] == ">="
    assert page.context["form"]["audience"].value() == Audience.RULES


def test_another_tenants_segment_is_refused(editor, tenant, other_tenant, make_device):
    make_device("globex-phone", user="g", owner=other_tenant)
    foreign = Segment.objects.create(tenant=other_tenant, name="Globex all")

    response = editor.post(COMPOSE, form(tenant, audience="segment", segment=foreign.pk, _action="confirm"))
    size = editor.post(AUDIENCE, form(tenant, audience="segment", segment=foreign.pk)).json()

    assert response.status_code == 200 and b"Select a valid choice" in response.content
    assert size["ok"] is False and size["size"] is None
    assert not Message.objects.exists()


def test_a_segment_of_another_tenant_the_user_also_sends_for_is_refused(tenant, other_tenant, make_device):
    user = staff_user("multi", tenant=tenant, role="editor")
    user.memberships.create(tenant=other_tenant, role="editor")
    foreign = Segment.objects.create(tenant=other_tenant, name="Globex all")

    response = signed_in(user).post(
        COMPOSE, form(tenant, audience="segment", segment=foreign.pk, _action="confirm")
    )

    assert "This segment belongs to another tenant." in response.content.decode()
    assert not Message.objects.exists()


def test_bad_rules_are_refused_beside_the_rules_naming_the_path(editor, tenant):
    bad = {
        "include": [
            [{"type": "event", "event": "x", "op": "did", "params": [{"param": "a", "op": "~", "value": 1}]}]
        ]
    }

    answer = editor.post(
        COMPOSE, form(tenant, audience="rules", rules=json.dumps(bad), _action="send", _format="json")
    ).json()
    unreadable = editor.post(
        COMPOSE, form(tenant, audience="rules", rules="{", _action="send", _format="json")
    ).json()

    assert answer["errors"]["rules"][0].startswith('include[0][0].params[0].op: unknown operator "~"')
    assert unreadable["errors"]["rules"] == ["The rules could not be read; reload the page."]
    assert not Message.objects.exists()


def test_a_segment_audience_needs_a_segment(editor, tenant):
    answer = editor.post(COMPOSE, form(tenant, audience="segment", _action="send", _format="json")).json()

    assert answer["errors"]["segment"] == ["Required for this audience."]
