"""Segments whose stored rules an older Herald or an operator wrote: keys left out take their
defaults, and a document that cannot be used is said to be so (never a 500, never everyone)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from audiences.models import Segment
from campaigns.models import AudienceKind, Campaign
from campaigns.services import audience_users
from devices.models import AppUser, Event
from messaging.models import Message
from tests.messaging.test_admin_compose_segments import form
from tests.staff import make_device

pytest_plugins = ["tests.staff_fixtures"]

PREVIEW = "/admin/audiences/segment/preview/"
AUDIENCE = "/admin/messaging/message/compose/audience/"
TURKISH = [[{"type": "property", "property": "language", "op": "in", "value": ["tr"]}]]
# What an operator's edit might leave: an operator no Herald ever stored.
BROKEN = {"include": [[{"type": "property", "property": "language", "op": "~", "value": ["tr"]}]]}
BROKEN_TEXT = 'include[0][0].op: unknown operator "~" for language; use in or not_in'


def stored(tenant, rules, name="Turkish") -> Segment:
    """A segment whose rules are written as they are, past the checks a save makes."""
    segment = Segment.objects.create(tenant=tenant, name=name)
    Segment.objects.filter(pk=segment.pk).update(rules=rules)
    return segment


def composed(tenant, segment, **fields) -> dict:
    """The composer's form, aimed at `segment`."""
    return form(tenant, audience="segment", segment=segment.pk, **fields)


def estimate(client, tenant, segment):
    return client.post(AUDIENCE, composed(tenant, segment))


@pytest.fixture
def people(tenant):
    make_device(tenant, "ayse-android", user="ayse", language="tr")
    make_device(tenant, "ayse-ios", user="ayse", language="tr", platform="ios")
    make_device(tenant, "john-android", user="john", language="en")


@pytest.mark.parametrize(
    "rules",
    [
        {"version": 1, "include": TURKISH},
        {"include": TURKISH},
        {
            "include": TURKISH,
            "exclude": [[{"type": "property", "property": "language", "op": "in", "value": ["en"]}]],
        },
    ],
    ids=["no exclude", "no version or exclude", "no version"],
)
def test_a_segment_saved_without_some_keys_is_counted_in_the_segment_list(tenant, viewer, people, rules):
    segment = stored(tenant, rules)

    response = viewer.get(f"{PREVIEW}?segment={segment.pk}")

    assert response.status_code == 200
    assert response.json() == {"ok": True, "users": 1, "devices": 2}


def test_the_composers_estimate_counts_a_segment_saved_without_exclude(tenant, editor, people):
    segment = stored(tenant, {"version": 1, "include": TURKISH})

    response = estimate(editor, tenant, segment)

    assert response.status_code == 200
    assert response.json() == {
        "ok": True,
        "size": 2,
        "users": 1,
        "text": "≈ 1 user · 2 devices that allow pushes",
    }


def test_a_segment_whose_stored_rules_cannot_be_used_is_a_400_in_the_segment_list_not_a_count(
    tenant, viewer, people
):
    segment = stored(tenant, BROKEN)

    response = viewer.get(f"{PREVIEW}?segment={segment.pk}")

    assert response.status_code == 400
    assert response.json() == {
        "ok": False,
        "path": "include[0][0].op",
        "error": 'unknown operator "~" for language; use in or not_in',
        "text": f"The segment's saved rules cannot be used ({BROKEN_TEXT}); "
        "correct them in the segment editor.",
    }


@pytest.mark.parametrize(
    "rules", [BROKEN, "everyone", [], {"include": TURKISH, "exclude": "none"}, {"includes": TURKISH}]
)
def test_the_composers_estimate_answers_400_for_a_segment_whose_stored_rules_cannot_be_used(
    tenant, editor, people, rules
):
    segment = stored(tenant, rules)

    response = estimate(editor, tenant, segment)

    assert response.status_code == 400
    answer = response.json()
    assert answer["ok"] is False and answer["size"] is None
    assert answer["text"].startswith("This segment's saved rules cannot be used (")


def test_the_composer_sends_nothing_to_a_segment_whose_stored_rules_cannot_be_used(tenant, editor, people):
    segment = stored(tenant, BROKEN)

    response = editor.post("/admin/messaging/message/compose/", composed(tenant, segment, _action="confirm"))

    assert response.status_code == 200
    assert "This segment&#x27;s saved rules cannot be used" in response.content.decode()
    assert not Message.objects.exists()


def test_a_draft_aimed_at_a_segment_whose_stored_rules_cannot_be_used_says_why_and_is_not_sent(
    tenant, editor, people
):
    segment = stored(tenant, {"include": TURKISH})
    draft = Message.objects.create(
        tenant=tenant,
        title="Merhaba",
        body="İndirim",
        status=Message.Status.DRAFT,
        audience="segment",
        audience_params={"segment_id": segment.pk},
    )
    page = editor.get(f"/admin/messaging/message/{draft.pk}/change/")
    assert page.status_code == 200 and page.context["audience_now"] == 2
    Segment.objects.filter(pk=segment.pk).update(rules=BROKEN)

    page = editor.get(f"/admin/messaging/message/{draft.pk}/change/")
    sent = editor.post(f"/admin/messaging/message/{draft.pk}/send/", follow=True)

    error = f"The segment's saved rules cannot be used ({BROKEN_TEXT}); it would reach nobody."
    assert page.status_code == 200 and page.context["audience_error"] == error
    assert sent.status_code == 200 and error in [str(m) for m in sent.context["messages"]]
    draft.refresh_from_db()
    assert draft.status == Message.Status.DRAFT


def test_the_api_count_of_a_segment_whose_stored_rules_cannot_be_used_is_a_409(tenant, server, people):
    segment = stored(tenant, BROKEN)
    fine = stored(tenant, {"include": TURKISH}, name="Old Turkish")

    response = server.get(f"/api/v1/segments/{segment.pk}/count")

    assert response.status_code == 409
    assert response.json()["error"] == "unusable_rules"
    assert response.json()["field"] == "rules.include[0][0].op"
    assert server.get(f"/api/v1/segments/{fine.pk}/count").json() == {"users": 1, "devices": 2}


def test_a_saved_event_window_longer_than_the_retention_now_is_still_counted(
    tenant, viewer, people, settings
):
    bought = {"include": [[{"type": "event", "event": "purchase", "op": "did", "within_days": 150}]]}
    Event.objects.create(
        tenant=tenant,
        user=AppUser.objects.get(app_user_id="john"),
        name="purchase",
        params={},
        occurred_at=timezone.now() - timedelta(days=20),
        session_id="s",
        fingerprint="f-john",
    )
    segment = stored(tenant, bought)
    settings.RETENTION_EVENTS_DAYS = 30  # shortened since the segment was saved

    response = viewer.get(f"{PREVIEW}?segment={segment.pk}")

    assert response.json() == {"ok": True, "users": 1, "devices": 1}


def test_a_campaign_aimed_at_a_segment_whose_stored_rules_cannot_be_used_reaches_nobody(tenant, people):
    segment = stored(tenant, BROKEN)
    own_rules = Campaign(tenant=tenant, audience=AudienceKind.RULES, rules=BROKEN)
    missing = stored(tenant, {"include": TURKISH}, name="Old Turkish")

    assert not audience_users(
        Campaign(tenant=tenant, audience=AudienceKind.SEGMENT, segment=segment), now=timezone.now()
    ).exists()
    assert not audience_users(own_rules, now=timezone.now()).exists()
    in_old = audience_users(
        Campaign(tenant=tenant, audience=AudienceKind.SEGMENT, segment=missing), now=timezone.now()
    )
    assert list(in_old.values_list("app_user_id", flat=True)) == ["ayse"]
