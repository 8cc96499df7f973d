"""Messages aimed at a segment whose stored rules an older Herald or an operator wrote: keys
left out take their defaults; rules that cannot be used stop the message, never reach everyone."""

from audiences.models import Segment
from messaging import services
from messaging.models import Audience, Delivery, Message
from messaging.services import MessageInput, create_message

TURKISH = [[{"type": "property", "property": "language", "op": "in", "value": ["tr"]}]]
BROKEN = {"include": [[{"type": "property", "property": "language", "op": "~", "value": ["tr"]}]]}


def segment_message(tenant, rules) -> tuple[Segment, Message]:
    segment = Segment.objects.create(tenant=tenant, name="Turkish")
    Segment.objects.filter(pk=segment.pk).update(rules=rules)  # as stored, past the save's checks
    spec = MessageInput(
        title="Hi", body="x", audience=Audience.SEGMENT, audience_params={"segment_id": segment.pk}
    )
    return segment, create_message(tenant=tenant, spec=spec)[0]


def test_a_segment_message_whose_stored_rules_lack_exclude_reaches_the_segments_devices(tenant, make_device):
    make_device("ayse-android", user="ayse", language="tr")
    make_device("john-android", user="john", language="en")
    _, message = segment_message(tenant, {"version": 1, "include": TURKISH})

    services.fan_out(message_id=message.pk)

    assert list(message.deliveries.values_list("device__token", flat=True)) == ["ayse-android"]


def test_a_segment_message_whose_stored_rules_cannot_be_used_is_cancelled_saying_why_and_reaches_nobody(
    tenant, make_device
):
    make_device("ayse-android", user="ayse", language="tr")
    make_device("john-android", user="john", language="en")
    segment, message = segment_message(tenant, {"include": TURKISH})
    Segment.objects.filter(pk=segment.pk).update(rules=BROKEN)  # edited after the message was sent

    services.fan_out(message_id=message.pk)

    message.refresh_from_db()
    assert message.status == Message.Status.CANCELLED
    assert message.error == (
        "The segment's saved rules cannot be used "
        '(include[0][0].op: unknown operator "~" for language; use in or not_in); the message was stopped.'
    )
    assert not Delivery.objects.exists()


def test_a_rules_message_whose_stored_rules_cannot_be_used_is_cancelled_and_reaches_nobody(
    tenant, make_device
):
    make_device("ayse-android", user="ayse", language="tr")
    spec = MessageInput(
        title="Hi", body="x", audience=Audience.RULES, audience_params={"rules": {"include": TURKISH}}
    )
    message, _ = create_message(tenant=tenant, spec=spec)
    Message.objects.filter(pk=message.pk).update(audience_params={"rules": "everyone"})

    services.fan_out(message_id=message.pk)

    message.refresh_from_db()
    assert message.status == Message.Status.CANCELLED
    assert message.error.startswith(
        "The message's saved rules cannot be used (the rules must be a JSON object)"
    )
    assert not Delivery.objects.exists()


def test_the_api_refuses_a_message_for_a_segment_whose_stored_rules_cannot_be_used(
    server, tenant, make_device
):
    make_device("ayse-android", user="ayse", language="tr")
    segment = Segment.objects.create(tenant=tenant, name="Turkish")
    Segment.objects.filter(pk=segment.pk).update(rules=BROKEN)

    response = server.post(
        "/api/v1/messages",
        {"title": "Hi", "body": "x", "audience": {"kind": "segment", "segment_id": segment.pk}},
        format="json",
    )

    assert response.status_code == 409, response.content
    assert response.json()["error"] == "unusable_rules"
    assert response.json()["field"] == "audience.segment_id"
    assert not Message.objects.exists()
