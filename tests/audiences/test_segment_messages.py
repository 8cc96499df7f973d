"""Messages aimed at a segment or at ad-hoc rules: membership is taken when the fan-out runs."""

from datetime import timedelta

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audiences.models import Segment
from devices.models import AppUser, Event
from messaging.content import in_test_group
from messaging.models import AbTest, Message, SnapshotDevice
from messaging.services import fan_out
from tenants.models import Tenant
from tests.task_queue import run_queue

TURKISH_ANDROID = {
    "include": [
        [
            {"type": "property", "property": "language", "op": "in", "value": ["tr"]},
            {"type": "property", "property": "platform", "op": "in", "value": ["android"]},
        ]
    ]
}
LATER = (timezone.now() + timedelta(days=2)).isoformat()


def segment(server, rules=TURKISH_ANDROID, name="tr-android") -> int:
    response = server.post("/api/v1/segments", {"name": name, "rules": rules}, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def purchase(user, *, fingerprint: str) -> None:
    Event.objects.create(
        tenant=user.tenant,
        user=user,
        name="purchase",
        params={"amount": 80},
        occurred_at=timezone.now(),
        session_id="s",
        fingerprint=fingerprint,
    )


def test_a_segment_message_reaches_exactly_the_segments_devices(sandbox, server, make_device, inbox):
    make_device("tr-android", user="ayse", language="tr")
    make_device("tr-ios", user="ayse", platform="ios", language="tr")
    make_device("en-android", user="john", language="en")
    make_device("tr-ios-only", user="mehmet", platform="ios", language="tr")
    segment_id = segment(server)

    response = server.post(
        "/api/v1/messages",
        {"title": "Merhaba", "body": "İndirim", "audience": {"kind": "segment", "segment_id": segment_id}},
        format="json",
    )

    assert response.status_code == 202, response.content
    assert response.json()["audience"] == {"kind": "segment", "segment_id": segment_id}
    message = Message.objects.get()
    # A user matches when any device is on Android; all that user's targetable devices receive it.
    assert set(inbox()) == {"tr-android", "tr-ios"}
    assert message.targeted_count == 2


def test_ad_hoc_rules_target_without_a_saved_segment(sandbox, server, make_device, inbox):
    buyer = make_device("buyer", user="buyer").user
    make_device("browser", user="browser")
    purchase(buyer, fingerprint="f1")
    rules = {
        "include": [
            [
                {
                    "type": "event",
                    "event": "purchase",
                    "op": "did",
                    "params": [{"param": "amount", "op": "≥", "value": 50}],
                }
            ]
        ]
    }

    response = server.post(
        "/api/v1/messages",
        {"title": "Thanks", "body": "!", "audience": {"kind": "rules", "rules": rules}},
        format="json",
    )

    assert response.status_code == 202, response.content
    assert response.json()["audience"]["rules"]["include"][0][0]["params"][0]["op"] == ">="
    assert set(inbox()) == {"buyer"}


def test_membership_is_evaluated_when_the_fan_out_runs(server, tenant, make_device):
    make_device("early", user="early", language="tr")
    segment_id = segment(server)
    created = server.post(
        "/api/v1/messages",
        {
            "title": "t",
            "body": "b",
            "schedule_at": LATER,
            "audience": {"kind": "segment", "segment_id": segment_id},
        },
        format="json",
    ).json()
    make_device("late", user="late", language="tr")  # joins after scheduling, before sending
    Message.objects.filter(pk=created["id"]).update(status="sending", started_at=timezone.now())

    fan_out(message_id=created["id"])

    message = Message.objects.get(pk=created["id"])
    assert set(message.deliveries.values_list("device__token", flat=True)) == {"early", "late"}


def test_a_message_needs_a_segment_of_its_own_tenant(server, tenant):
    other = Tenant.objects.create(name="Other", tenant_id="other")
    foreign = Segment.objects.create(tenant=other, name="theirs")

    for audience in (
        {"kind": "segment", "segment_id": foreign.pk},
        {"kind": "segment"},
        {"kind": "segment", "segment_id": 999999},
    ):
        response = server.post(
            "/api/v1/messages", {"title": "t", "body": "b", "audience": audience}, format="json"
        )
        assert response.status_code == 400, response.content
        assert response.json()["field"] in ("audience", "audience.segment_id")
        assert "segment_id" in response.json()["detail"] or "segment" in response.json()["detail"]
    assert not Message.objects.exists()


def test_bad_ad_hoc_rules_name_their_path_under_audience(server):
    rules = {
        "include": [
            [{"type": "event", "event": "x", "op": "did", "params": [{"param": "a", "op": "~", "value": 1}]}]
        ]
    }

    response = server.post(
        "/api/v1/messages",
        {"title": "t", "body": "b", "audience": {"kind": "rules", "rules": rules}},
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["field"] == "audience.rules.include[0][0].params[0].op"
    assert not Message.objects.exists()


def test_deleting_a_segment_a_scheduled_message_uses_is_a_409(server, tenant):
    segment_id = segment(server)
    created = server.post(
        "/api/v1/messages",
        {
            "title": "t",
            "body": "b",
            "schedule_at": LATER,
            "audience": {"kind": "segment", "segment_id": segment_id},
        },
        format="json",
    ).json()

    response = server.delete(f"/api/v1/segments/{segment_id}")

    assert response.status_code == 409
    assert response.json()["error"] == "segment_in_use"
    assert f"message {created['id']}" in response.json()["detail"]
    assert Segment.objects.filter(pk=segment_id).exists()

    server.post(f"/api/v1/messages/{created['id']}/cancel")
    assert server.delete(f"/api/v1/segments/{segment_id}").status_code == 204


def test_a_message_whose_segment_vanished_reaches_nobody(server, tenant, make_device):
    make_device("d", user="u", language="tr")
    segment_id = segment(server)
    message = Message.objects.create(
        tenant=tenant,
        title="t",
        body="b",
        audience="segment",
        audience_params={"segment_id": segment_id},
        status="sending",
        started_at=timezone.now(),
    )
    Segment.objects.filter(pk=segment_id).delete()  # behind the service's back

    fan_out(message_id=message.pk)

    assert not message.deliveries.exists()
    assert AppUser.objects.count() == 1


def test_a_rules_fan_out_evaluates_the_rules_once_however_many_chunks_and_tasks(
    sandbox_server, database_tasks, server, tenant, make_device, settings
):
    settings.FANOUT_CHUNK_SIZE = 2
    settings.FANOUT_TASK_CHUNKS = 2  # four chunks: two tasks
    for i in range(7):
        purchase(make_device(f"buyer-{i}", user=f"buyer-{i}").user, fingerprint=f"f{i}")
    make_device("browser", user="browser")
    rules = {"include": [[{"type": "event", "event": "purchase", "op": "did"}]]}
    created = server.post(
        "/api/v1/messages",
        {"title": "t", "body": "b", "schedule_at": LATER, "audience": {"kind": "rules", "rules": rules}},
        format="json",
    ).json()
    Message.objects.filter(pk=created["id"]).update(status="sending", started_at=timezone.now())

    with CaptureQueriesContext(connection) as ctx:
        fan_out(message_id=created["id"])  # its first task, which queues the rest
        ran = run_queue()

    message = Message.objects.get(pk=created["id"])
    assert sum(name == "fan_out_message" for name, _ in ran) == 1
    assert message.deliveries.count() == message.targeted_count == 7
    assert sum(Event._meta.db_table in q["sql"] for q in ctx.captured_queries) == 1


def test_a_fan_out_in_many_tasks_reaches_the_members_of_the_moment_it_began(
    sandbox_server, database_tasks, server, tenant, make_device, settings
):
    settings.FANOUT_CHUNK_SIZE = 1
    settings.FANOUT_TASK_CHUNKS = 1  # a task per device: the audience is read in four tasks
    members = [make_device(f"tr-{i}", user=f"tr-{i}", language="tr") for i in range(4)]
    make_device("en", user="en", language="en")
    created = server.post(
        "/api/v1/messages",
        {"title": "t", "body": "b", "audience": {"kind": "segment", "segment_id": segment(server)}},
        format="json",
    ).json()

    with CaptureQueriesContext(connection) as ctx:
        run_queue(max_tasks=1)  # the fan-out's first task
        # Between two of its tasks a member stops matching and a newcomer starts to.
        AppUser.objects.filter(pk=members[-1].user_id).update(language="en")
        make_device("tr-late", user="tr-late", language="tr")
        ran = run_queue()

    message = Message.objects.get(pk=created["id"])
    assert sum(name == "fan_out_message" for name, _ in ran) == 4
    assert message.status == "completed"
    assert set(message.deliveries.values_list("device__token", flat=True)) == {d.token for d in members}
    assert message.sent_count == 4
    assert sum(Segment._meta.db_table in q["sql"] for q in ctx.captured_queries) == 1, "read as it began"
    assert not SnapshotDevice.objects.filter(message=message).exists(), "the snapshot goes with the fan-out"


def test_an_ab_tests_rest_is_drawn_from_the_members_the_test_was_drawn_from_and_newcomers(
    server, tenant, make_device
):
    for i in range(10):
        make_device(f"tr-{i}", user=f"tr-{i}", language="tr")
    created = server.post(
        "/api/v1/messages",
        {
            "variants": [{"title": "A", "body": "a"}, {"title": "B", "body": "b"}],
            "variant_mode": "ab_test",
            "ab_test": {"test_percent": 50, "wait_seconds": 3600},
            "schedule_at": LATER,
            "audience": {"kind": "segment", "segment_id": segment(server)},
        },
        format="json",
    )
    assert created.status_code == 202, created.content
    message = Message.objects.get(pk=created.json()["id"])
    Message.objects.filter(pk=message.pk).update(status="sending", started_at=timezone.now())

    fan_out(message_id=message.pk)  # the test group
    tested = set(message.deliveries.values_list("device__token", flat=True))
    # Newcomers on both sides of the split: the test's share has gone out, yet they get the rest.
    late = {}
    for i in range(64):
        device = make_device(f"tr-late-{i}", user=f"tr-late-{i}", language="tr")
        side = in_test_group(message.pk, device.user_id, 50)
        if side in late:
            device.user.delete()  # one newcomer on each side
            continue
        late[side] = device.token
        if len(late) == 2:
            break
    AbTest.objects.filter(message=message).update(winner=1)
    fan_out(message_id=message.pk)  # the rest

    expected = {f"tr-{i}" for i in range(10)} | set(late.values())
    assert 0 < len(tested) < 10 and len(late) == 2
    assert set(message.deliveries.values_list("device__token", flat=True)) == expected
    assert message.deliveries.count() == len(expected)
    assert set(message.deliveries.exclude(device__token__in=tested).values_list("variant", flat=True)) == {1}
    assert not SnapshotDevice.objects.filter(message=message).exists()
