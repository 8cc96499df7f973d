"""Variants: an even, deterministic split by user, and A/B tests whose winner goes to the rest."""

from collections import Counter
from datetime import timedelta

import pytest
import time_machine
from django.db.models import Count
from django.utils import timezone
from rest_framework.test import APIClient

from devices.models import AppUser, Device
from messaging import variants
from messaging.content import bucket_of, in_test_group, variant_for
from messaging.models import AbTest, Delivery, Message
from messaging.services import fan_out, recover_stalled
from messaging.variants import VariantTally, choose_winner, decide_due_winners, decide_winner
from tests.task_queue import run_queue

A = {"title": "Sale A", "body": "Body A"}
B = {"title": "Sale B", "body": "Body B"}
C = {"title": "Sale C", "body": "Body C"}


def localized(variant, tr_title):
    return {**variant, "localizations": {"tr": {"title": tr_title, "body": "gövde"}}}


def send(server, **body):
    response = server.post("/api/v1/messages", body, format="json")
    assert response.status_code == 202, response.content
    return Message.objects.get(pk=response.json()["id"])


@pytest.fixture
def no_sending(settings):
    """Tasks are recorded, not run: fan-out and deciding are called by the test itself."""
    settings.TASKS = {"default": {"BACKEND": "django.tasks.backends.dummy.DummyBackend"}}


def many_users(tenant, n, *, devices_each=1, language=""):
    users = AppUser.objects.bulk_create(
        [AppUser(tenant=tenant, app_user_id=f"u{i}", language=language) for i in range(n)]
    )
    Device.objects.bulk_create(
        [
            Device(
                tenant=tenant,
                user=u,
                token=f"tok-{u.pk}-{k}",
                token_hash=f"{u.pk}-{k}",
                platform="android",
                push_permission=True,
            )
            for u in users
            for k in range(devices_each)
        ]
    )
    return users


# --- Assignment ----------------------------------------------------------------------------


def test_variant_assignment_is_even_over_many_users_and_the_same_every_time():
    counts = Counter(variant_for(42, user_id, 3) for user_id in range(30_000))

    assert set(counts) == {0, 1, 2}
    assert all(abs(n - 10_000) < 300 for n in counts.values()), counts  # within 3 %
    assert [variant_for(42, u, 3) for u in range(100)] == [variant_for(42, u, 3) for u in range(100)]
    # Another message deals the users differently: nobody is always variant A.
    assert [variant_for(43, u, 3) for u in range(100)] != [variant_for(42, u, 3) for u in range(100)]


def test_a_split_message_gives_a_users_devices_the_same_variant_and_records_it(server, tenant, no_sending):
    many_users(tenant, 300, devices_each=2)
    message = send(server, variants=[A, B, C])
    fan_out(message_id=message.pk)

    rows = list(message.deliveries.values_list("device__user_id", "variant", "language"))
    assert len(rows) == 600
    by_user = {}
    for user_id, variant, language in rows:
        by_user.setdefault(user_id, set()).add(variant)
        assert variant == variant_for(message.pk, user_id, 3)
        assert language == "en"
    assert all(len(v) == 1 for v in by_user.values())
    per_variant = Counter(v for user_variants in by_user.values() for v in user_variants)
    assert all(70 <= per_variant[i] <= 130 for i in range(3)), per_variant


def test_a_split_message_sends_each_device_its_variant_in_its_language(sandbox, server, make_device, inbox):
    for i in range(12):
        make_device(f"tok-{i}", user=f"u{i}", language="tr" if i % 2 else "en")

    message = send(server, variants=[localized(A, "İndirim A"), localized(B, "İndirim B")])

    for delivery in message.deliveries.select_related("device"):
        push = inbox()[delivery.device.token][0]["data"]
        expected = {(0, "en"): "Sale A", (0, "tr"): "İndirim A", (1, "en"): "Sale B", (1, "tr"): "İndirim B"}
        assert push["title"] == expected[(delivery.variant, delivery.language)]
        assert delivery.language == ("tr" if int(delivery.device.token[4:]) % 2 else "en")
    assert {d.variant for d in message.deliveries.all()} == {0, 1}


# --- Winner rules --------------------------------------------------------------------------


def test_the_best_open_rate_wins_not_the_most_opens():
    tallies = [
        VariantTally(0, sent=100, opened=20),
        VariantTally(1, sent=40, opened=10),
        VariantTally(2, sent=100, opened=5),
    ]

    assert choose_winner(tallies, min_opens=10, fallback=0) == (1, AbTest.Reason.BEST_RATE)


def test_equal_open_rates_go_to_the_lowest_variant():
    tallies = [
        VariantTally(0, sent=100, opened=5),
        VariantTally(1, sent=30, opened=10),
        VariantTally(2, sent=60, opened=20),
    ]  # 1/3 and 1/3, exactly

    assert choose_winner(tallies, min_opens=10, fallback=0) == (1, AbTest.Reason.TIE)


def test_too_few_opens_in_the_whole_test_give_the_fallback_variant():
    tallies = [VariantTally(0, sent=100, opened=1), VariantTally(1, sent=100, opened=8)]

    assert choose_winner(tallies, min_opens=10, fallback=0) == (0, AbTest.Reason.TOO_FEW_OPENS)
    assert choose_winner(tallies, min_opens=10, fallback=1) == (1, AbTest.Reason.TOO_FEW_OPENS)
    assert choose_winner(tallies, min_opens=9, fallback=0) == (1, AbTest.Reason.BEST_RATE)


def test_a_variant_nobody_was_sent_cannot_win():
    tallies = [
        VariantTally(0, sent=0, opened=0),
        VariantTally(1, sent=10, opened=0),
        VariantTally(2, sent=10, opened=1),
    ]

    assert choose_winner(tallies, min_opens=1, fallback=0) == (2, AbTest.Reason.BEST_RATE)


# --- A/B tests end to end ---------------------------------------------------------------------


def ab_message(server, *, test_percent=20, wait_seconds=3600, min_opens=5, fallback_variant=0):
    return send(
        server,
        variants=[A, B, C],
        variant_mode="ab_test",
        ab_test={
            "test_percent": test_percent,
            "wait_seconds": wait_seconds,
            "min_opens": min_opens,
            "fallback_variant": fallback_variant,
        },
    )


def mark_sent(message):
    message.deliveries.update(status=Delivery.Status.SENT, sent_at=timezone.now())
    Message.objects.filter(pk=message.pk).update(sent_count=message.deliveries.count())


def open_some(message, variant, n):
    ids = list(message.deliveries.filter(variant=variant).values_list("pk", flat=True)[:n])
    Delivery.objects.filter(pk__in=ids).update(opened_at=timezone.now())


def test_an_ab_test_sends_the_test_group_evenly_then_the_winner_to_the_rest(server, tenant, no_sending):
    users = many_users(tenant, 1000)
    message = ab_message(server, test_percent=30)

    fan_out(message_id=message.pk)

    tested = {u.pk for u in users if in_test_group(message.pk, u.pk, 30)}
    rows = list(message.deliveries.values_list("device__user_id", "variant"))
    assert {user_id for user_id, _ in rows} == tested
    assert 250 <= len(tested) <= 350
    per_variant = Counter(v for _, v in rows)
    assert all(abs(per_variant[i] - len(tested) / 3) < 40 for i in range(3)), per_variant
    message.refresh_from_db()
    ab = AbTest.objects.get(message=message)
    assert ab.test_sent_at is not None and ab.decide_at == ab.test_sent_at + timedelta(hours=1)
    assert (message.status, message.fanned_out_at, ab.winner) == ("sending", None, None)

    mark_sent(message)
    open_some(message, 0, 10)
    open_some(message, 1, 30)
    open_some(message, 2, 20)

    assert decide_due_winners() == 0  # the wait is not over
    with time_machine.travel(ab.decide_at + timedelta(seconds=1)):
        assert decide_due_winners() == 1
        fan_out(message_id=message.pk)

    ab.refresh_from_db()
    assert (ab.winner, ab.reason) == (1, AbTest.Reason.BEST_RATE)
    assert [t["opened"] for t in ab.tally] == [10, 30, 20]
    rest = message.deliveries.exclude(device__user_id__in=tested)
    assert rest.count() == 1000 - len(tested)
    assert set(rest.values_list("variant", flat=True)) == {1}
    assert message.deliveries.count() == 1000
    message.refresh_from_db()
    assert message.targeted_count == 1000 and message.fanned_out_at is not None


def newcomer(make_device, message, *, tested: bool, name: str):
    """A device of a new user whom the split puts in the test's share (or out of it)."""
    for i in range(64):  # half the users fall on each side: never 64 misses in practice
        device = make_device(f"{name}-{i}", user=f"{name}-{i}", language="en")
        if in_test_group(message.pk, device.user_id, 50) == tested:
            return device
        device.user.delete()
    raise AssertionError("no user fell on that side of the split")


def test_everyone_in_the_audience_when_the_rest_goes_out_gets_exactly_one_push(
    sandbox_server, database_tasks, server, make_device, inbox
):
    for i in range(12):
        make_device(f"tok-{i}", user=f"u{i}", language="en")
    message = send(
        server,
        variants=[A, B, C],
        variant_mode="ab_test",
        ab_test={"test_percent": 50, "wait_seconds": 60, "min_opens": 5, "fallback_variant": 1},
    )
    run_queue()  # the test group's fan-out and sends
    ab = AbTest.objects.get(message=message)
    tested = dict(message.deliveries.values_list("device__token", "variant"))
    assert ab.test_sent_at is not None and 0 < len(tested) < 12
    # After the test went out: new users on both sides of the split, and a second device of
    # a user the test reached.
    late_in_share = newcomer(make_device, message, tested=True, name="late-in")
    late_out = newcomer(make_device, message, tested=False, name="late-out")
    reached = message.deliveries.select_related("device__user").first().device.user
    second = make_device("second-device", user=reached.app_user_id, language="en")

    with time_machine.travel(ab.decide_at + timedelta(seconds=1)):
        run_queue()  # the decider (too few opens: B), then the rest's fan-out and sends

    ab.refresh_from_db()
    assert ab.winner == 1
    received = inbox()
    everyone = {f"tok-{i}" for i in range(12)} | {late_in_share.token, late_out.token, second.token}
    assert set(received) == everyone and all(len(pushes) == 1 for pushes in received.values())
    titles = {token: pushes[0]["data"]["title"] for token, pushes in received.items()}
    assert all(titles[token] == [A, B, C][variant]["title"] for token, variant in tested.items())
    assert titles[late_in_share.token] == titles[late_out.token] == "Sale B"  # the winner, whatever the hash
    assert titles[second.token] == titles[reached.devices.exclude(pk=second.pk).get().token]
    # The figures count each push under the variant it carried.
    delivered = Counter(message.deliveries.values_list("variant", flat=True))
    figures = server.get(f"/api/v1/messages/{message.pk}").json()["per_variant"]
    assert {v["variant"]: v["sent"] for v in figures} == {i: delivered[i] for i in range(3)}
    assert sum(delivered.values()) == len(everyone)
    assert message.deliveries.get(device=late_in_share).variant == 1


def test_too_few_opens_send_the_fallback_variant_to_the_rest(server, tenant, no_sending):
    many_users(tenant, 200)
    message = ab_message(server, min_opens=50, fallback_variant=2)
    fan_out(message_id=message.pk)
    mark_sent(message)
    open_some(message, 0, 5)

    with time_machine.travel(timezone.now() + timedelta(hours=2)):
        decide_due_winners()
        fan_out(message_id=message.pk)

    ab = AbTest.objects.get(message=message)
    assert (ab.winner, ab.reason) == (2, AbTest.Reason.TOO_FEW_OPENS)
    untested = [
        d
        for d in message.deliveries.select_related("device")
        if not in_test_group(message.pk, d.device.user_id, 20)
    ]
    assert untested and {d.variant for d in untested} == {2}


def test_the_winner_is_claimed_once_however_many_deciders_run(server, tenant, no_sending):
    many_users(tenant, 100)
    message = ab_message(server, wait_seconds=60)
    fan_out(message_id=message.pk)

    with time_machine.travel(timezone.now() + timedelta(minutes=5)):
        assert decide_due_winners() == 1
        assert decide_due_winners() == 0  # a second herald_beat
        with pytest.raises(variants.NotDecidable):
            decide_winner(message_id=message.pk, variant=2)  # a late click
        fan_out(message_id=message.pk)
        fan_out(message_id=message.pk)  # a recovered, repeated fan-out

    assert message.deliveries.count() == 100
    assert dict(message.deliveries.values_list("device_id").annotate(n=Count("pk")).filter(n__gt=1)) == {}


def test_a_decider_that_loses_the_race_for_the_claim_changes_nothing(server, tenant, no_sending, monkeypatch):
    many_users(tenant, 50)
    message = ab_message(server)
    fan_out(message_id=message.pk)
    real_tally = variants.tally_variants

    def another_beat_wins_meanwhile(m):
        # Between this decider's read and its UPDATE, another one claims the winner.
        AbTest.objects.filter(message=message).update(winner=2, reason=AbTest.Reason.MANUAL)
        return real_tally(m)

    monkeypatch.setattr(variants, "tally_variants", another_beat_wins_meanwhile)
    with pytest.raises(variants.NotDecidable):
        decide_winner(message_id=message.pk, variant=1)

    assert AbTest.objects.values_list("winner", "reason").get(message=message) == (2, "manual")


def test_staff_pick_the_winner_by_hand_through_the_api(server, tenant, no_sending):
    many_users(tenant, 100)
    message = ab_message(server)
    fan_out(message_id=message.pk)

    response = server.post(f"/api/v1/messages/{message.pk}/winner", {"variant": 2}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["ab_test"]["winner"] == 2 and response.json()["ab_test"]["reason"] == "manual"
    fan_out(message_id=message.pk)
    untested = [
        d
        for d in message.deliveries.select_related("device")
        if not in_test_group(message.pk, d.device.user_id, 20)
    ]
    assert untested and {d.variant for d in untested} == {2}
    again = server.post(f"/api/v1/messages/{message.pk}/winner", {"variant": 1}, format="json")
    assert again.status_code == 409
    assert AbTest.objects.get(message=message).winner == 2


def test_picking_a_winner_checks_the_variant_the_message_and_the_tenant(server, tenant, no_sending):
    from tenants.models import ApiKey, Tenant

    many_users(tenant, 10)
    message = ab_message(server)
    split = send(server, variants=[A, B])
    other = Tenant.objects.create(name="Other", tenant_id="other")
    foreign = APIClient()
    foreign.credentials(HTTP_X_SERVER_KEY=ApiKey.generate(tenant=other, name="k", kind=ApiKey.Kind.SERVER)[1])

    assert (
        server.post(f"/api/v1/messages/{message.pk}/winner", {"variant": 3}, format="json").json()["field"]
        == "variant"
    )
    assert (
        server.post(f"/api/v1/messages/{message.pk}/winner", {"variant": "1"}, format="json").status_code
        == 400
    )
    assert (
        server.post(f"/api/v1/messages/{split.pk}/winner", {"variant": 1}, format="json").status_code == 409
    )
    assert (
        foreign.post(f"/api/v1/messages/{message.pk}/winner", {"variant": 1}, format="json").status_code
        == 404
    )
    assert AbTest.objects.get(message=message).winner is None


def test_herald_beat_does_not_refan_a_message_waiting_for_its_winner(server, tenant, no_sending):
    many_users(tenant, 20)
    message = ab_message(server)
    fan_out(message_id=message.pk)

    with time_machine.travel(timezone.now() + timedelta(minutes=30)):
        assert "fan_outs" not in recover_stalled()


def test_per_variant_figures_in_the_api_carry_their_sample_size(server, tenant, no_sending):
    many_users(tenant, 300)
    message = send(server, variants=[localized(A, "İndirim A"), localized(B, "İndirim B")])
    fan_out(message_id=message.pk)
    mark_sent(message)
    open_some(message, 1, 15)

    body = server.get(f"/api/v1/messages/{message.pk}").json()

    [a, b] = body["per_variant"]
    assert a["variant"] == 0 and b["variant"] == 1
    assert a["sent"] + b["sent"] == 300
    assert b["opened"] == 15 and b["open_rate"] == pytest.approx(15 / b["sent"])
    assert a["open_rate"] == 0.0
    assert [v["title"] for v in body["variants"]] == ["Sale A", "Sale B"]
    assert body["variants"][1]["localizations"]["tr"]["title"] == "İndirim B"
    assert body["title"] == "Sale A"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"variants": [A]}, "variants"),
        ({"variants": [A, B, C, A, B, C]}, "variants"),
        ({"variants": [A, {"title": "B"}]}, "variants"),
        ({"variants": [A, B], "title": "Sale"}, "title"),
        (
            {"variants": [localized(A, "x"), {**B, "localizations": {"de": {"title": "x", "body": "y"}}}]},
            "variants",
        ),
        ({"variants": [A, {**B, "localizations": {"en": {"title": "x", "body": "y"}}}]}, "variants"),
        ({"title": "Sale", "body": "x", "variant_mode": "ab_test"}, "variant_mode"),
        ({"variants": [A, B], "variant_mode": "ab_test", "ab_test": {"test_percent": 0}}, "ab_test"),
        ({"variants": [A, B], "variant_mode": "ab_test", "ab_test": {"wait_seconds": 5}}, "ab_test"),
        ({"variants": [A, B], "variant_mode": "ab_test", "ab_test": {"fallback_variant": 2}}, "ab_test"),
        ({"variants": [A, B], "ab_test": {"test_percent": 10}}, "ab_test"),
        ({"variants": [A, B], "variant_mode": "round_robin"}, "variant_mode"),
        ({"variants": [A, B], "audience": {"kind": "topic", "topic": "news"}}, "variants"),
        ({"body": "x"}, "title"),
    ],
)
def test_bad_variants_are_refused_with_the_field_and_nothing_stored(server, body, field):
    response = server.post("/api/v1/messages", body, format="json")

    assert response.status_code == 400, response.content
    assert response.json()["field"] == field
    assert not Message.objects.exists()


def test_buckets_spread_users_over_the_whole_range():
    buckets = [bucket_of(7, u) for u in range(10_000)]
    assert min(buckets) < 50 and max(buckets) > 9_950
