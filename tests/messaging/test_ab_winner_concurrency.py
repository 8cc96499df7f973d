"""A/B winners decided by several deciders at once, on PostgreSQL with real transactions:
herald_beats and a staff click racing for the claim choose one winner, and the rest of the
audience gets it once, through the FCM sandbox."""

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import connection
from django.dispatch import Signal
from django.utils import timezone

from messaging import services, variants
from messaging.content import in_test_group
from messaging.models import AbTest, Delivery, Message

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

USERS = 60
A = {"title": "Sale A", "body": "Body A"}
B = {"title": "Sale B", "body": "Body B"}
C = {"title": "Sale C", "body": "Body C"}


def ab_message_sent_to_its_test_group(server, make_device):
    """An A/B message whose test group (a third) has had its pushes, with variant B opened
    most, and whose wait is over."""
    for i in range(USERS):
        make_device(f"tok-{i}", user=f"u{i}")
    response = server.post(
        "/api/v1/messages",
        {
            "variants": [A, B, C],
            "variant_mode": "ab_test",
            "ab_test": {"test_percent": 34, "wait_seconds": 60, "min_opens": 1},
        },
        format="json",
    )
    assert response.status_code == 202, response.content
    message = Message.objects.get(pk=response.json()["id"])
    tested = message.deliveries.filter(status=Delivery.Status.SENT)
    assert 0 < tested.count() == message.deliveries.count() < USERS
    opened = list(tested.filter(variant=1).values_list("pk", flat=True)[:3])
    Delivery.objects.filter(pk__in=opened).update(opened_at=timezone.now())
    AbTest.objects.filter(message=message).update(decide_at=timezone.now() - timedelta(seconds=1))
    return message


def race(racers, *, meet_in=None, monkeypatch=None):
    """Run each racer in its own thread (own connection, own transactions), all released at
    once; with `meet_in` ("module.function"), they also wait for each other there, so every
    one has read the state before any of them writes. Returns each racer's result or error."""
    everyone_ready = threading.Barrier(len(racers))
    if meet_in is not None:
        module, name = meet_in
        real = getattr(module, name)
        read_together = threading.Barrier(len(racers))

        def meeting(*args, **kwargs):
            result = real(*args, **kwargs)
            read_together.wait(timeout=20)
            return result

        monkeypatch.setattr(module, name, meeting)

    def run(racer):
        try:
            everyone_ready.wait(timeout=20)
            return racer()
        except Exception as exc:  # the losers' NotDecidable is an answer, not a failure
            return exc
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=len(racers)) as pool:
        return list(pool.map(run, racers))


def assert_each_device_got_one_push_of_its_variant(message, inbox, *, winner):
    received = inbox()
    deliveries = list(message.deliveries.select_related("device"))
    assert len(deliveries) == USERS
    assert Counter(d.device_id for d in deliveries).most_common(1)[0][1] == 1
    assert {d.status for d in deliveries} == {Delivery.Status.SENT}
    assert sorted(received) == sorted(d.device.token for d in deliveries)
    for delivery in deliveries:
        [push] = received[delivery.device.token]  # exactly one push per device
        assert push["data"]["title"] == ("Sale A", "Sale B", "Sale C")[delivery.variant]
        if not in_test_group(message.pk, delivery.device.user_id, 34):
            assert delivery.variant == winner


def test_beats_and_a_click_racing_for_the_winner_choose_it_once_and_send_the_rest_once(
    postgres_only, sandbox, server, make_device, inbox, monkeypatch
):
    message = ab_message_sent_to_its_test_group(server, make_device)

    def beat():
        return variants.decide_due_winners()

    def click():
        return variants.decide_winner(message_id=message.pk, variant=2)

    # Three herald_beats and a staff click all read the undecided test before any claims it.
    answers = race([beat, beat, beat, click], meet_in=(variants, "tally_variants"), monkeypatch=monkeypatch)

    beats, clicked = answers[:3], answers[3]
    assert all(not isinstance(a, Exception) or isinstance(a, variants.NotDecidable) for a in answers), answers
    click_won = isinstance(clicked, AbTest)
    assert sum(a for a in beats if isinstance(a, int)) + click_won == 1
    ab = AbTest.objects.get(message=message)
    if click_won:
        assert (ab.winner, ab.reason) == (2, AbTest.Reason.MANUAL)
    else:
        assert isinstance(clicked, variants.NotDecidable)
        assert (ab.winner, ab.reason) == (1, AbTest.Reason.BEST_RATE)
    message.refresh_from_db()
    assert message.status == Message.Status.COMPLETED
    assert (message.targeted_count, message.sent_count) == (USERS, USERS)
    assert_each_device_got_one_push_of_its_variant(message, inbox, winner=ab.winner)


def test_two_fan_outs_of_the_rest_at_once_create_and_send_each_delivery_once(
    postgres_only, sandbox, server, make_device, inbox, monkeypatch
):
    message = ab_message_sent_to_its_test_group(server, make_device)
    # The decision queues nothing here: the test runs the rest's fan-out itself, twice at once,
    # as a decider's task and a duplicate of it (a worker's retry, a recovering beat) would.
    monkeypatch.setattr(variants, "fan_out_due", Signal())
    variants.decide_winner(message_id=message.pk)
    monkeypatch.undo()

    def rest():
        return services.fan_out(message_id=message.pk)

    # Both have read the devices before either inserts a delivery.
    answers = race([rest, rest], meet_in=(services, "_insert_deliveries"), monkeypatch=monkeypatch)

    assert answers == [[], []]  # neither raised; neither kept a chunk to send itself
    ab = AbTest.objects.get(message=message)
    assert (ab.winner, ab.reason) == (1, AbTest.Reason.BEST_RATE)
    message.refresh_from_db()
    assert message.status == Message.Status.COMPLETED
    assert (message.targeted_count, message.sent_count) == (USERS, USERS)
    assert_each_device_got_one_push_of_its_variant(message, inbox, winner=1)
