"""The scheduled-campaign engine: planning waves, claiming them once, choosing each wave's
users when it is due, pausing, and herald_beat driving it.

`services.dispatch` (the one path every campaign send takes, tested with the campaign
services) is replaced here by a recorder that writes the same per-user ledger rows, so these
tests see exactly which users each wave handed over. tests/campaigns/test_schedule_sends.py
goes end to end through the real dispatch and the FCM sandbox."""

import threading
import types
from datetime import date, time, timedelta

import pytest
from django.core.management import call_command
from django.db import connection, connections

from audiences.models import Segment
from audiences.rules import parse
from campaigns import scheduler, services
from campaigns.models import Campaign, CampaignRecipient, CampaignRun
from tests.campaigns.scheduling import beat_at, make_campaign, make_user, reached, utc, waves_of

TUE = utc(2027, 1, 5)  # a Tuesday in winter: Europe/Berlin +01, America/New_York −05
BEFORE = TUE - timedelta(hours=1)  # a beat before the first wave of Tuesday's Tokyo 09:00


class Recorder:
    """Stands in for campaigns.services.dispatch: records each call and writes the ledger row
    of every user not reached yet for the occurrence, as dispatch does (ON CONFLICT)."""

    def __init__(self):
        self.calls = []

    def __call__(self, *, campaign, user_ids, occurrence, now, run=None):
        ids = sorted(user_ids)
        before = CampaignRecipient.objects.filter(campaign=campaign, occurrence=occurrence).count()
        CampaignRecipient.objects.bulk_create(
            [
                CampaignRecipient(
                    campaign=campaign,
                    user_id=i,
                    occurrence=occurrence,
                    state="sent",
                    version=campaign.version,
                )
                for i in ids
            ],
            ignore_conflicts=True,
        )
        sent = CampaignRecipient.objects.filter(campaign=campaign, occurrence=occurrence).count() - before
        self.calls.append(
            {"users": ids, "occurrence": occurrence, "run": run.pk if run else None, "now": now}
        )
        return types.SimpleNamespace(sent=sent, skipped={"already": len(ids) - sent}, message=None)


@pytest.fixture
def dispatched(monkeypatch, immediate_tasks):
    recorder = Recorder()
    monkeypatch.setattr(services, "dispatch", recorder)
    return recorder


@pytest.fixture
def immediate_tasks(settings):
    settings.TASKS = {"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"}}


@pytest.fixture
def tenant(db):
    from tenants.models import Tenant

    return Tenant.objects.create(name="Acme", tenant_id="acme", time_zone="Europe/Istanbul")


def names(ids) -> list[str]:
    from devices.models import AppUser

    return sorted(AppUser.objects.filter(pk__in=ids).values_list("app_user_id", flat=True))


# --- Planning -------------------------------------------------------------------------------


def test_planning_a_local_campaign_makes_one_wave_per_instant_the_users_zones_reach_the_time(tenant):
    for i, zone in enumerate(["Asia/Tokyo", "Europe/Berlin", "Europe/Paris", "", "America/New_York"]):
        make_user(tenant, f"u{i}", zone)
    campaign = make_campaign(tenant, activated_at=TUE)

    scheduler.plan_campaign(campaign, now=TUE)

    assert waves_of(campaign)[:4] == [
        ("2027-01-05", utc(2027, 1, 5, 0), ("Asia/Tokyo",), "planned"),
        ("2027-01-05", utc(2027, 1, 5, 6), ("Europe/Istanbul",), "planned"),  # the tenant's, for u3
        ("2027-01-05", utc(2027, 1, 5, 8), ("Europe/Berlin", "Europe/Paris"), "planned"),
        ("2027-01-05", utc(2027, 1, 5, 14), ("America/New_York",), "planned"),
    ]
    # The next day's waves are planned once its first is within a day.
    assert {w[0] for w in waves_of(campaign)} == {"2027-01-05", "2027-01-06"}
    campaign.refresh_from_db()
    assert campaign.next_run_at == utc(2027, 1, 5, 0)


def test_planning_twice_adds_nothing(tenant):
    make_user(tenant, "u1", "Asia/Tokyo")
    campaign = make_campaign(tenant, activated_at=TUE)
    added = scheduler.plan_campaign(campaign, now=TUE)
    assert added > 0
    scheduler.plan_campaign(campaign, now=TUE + timedelta(minutes=1))
    assert CampaignRun.objects.filter(campaign=campaign).count() == added


def test_planning_leaves_out_waves_due_before_the_campaign_was_activated(tenant):
    make_user(tenant, "u1", "Asia/Tokyo")  # 09:00 Tokyo = 00:00 UTC
    make_user(tenant, "u2", "America/New_York")  # 09:00 New York = 14:00 UTC
    activated = utc(2027, 1, 5, 10)
    campaign = make_campaign(tenant, activated_at=activated)

    scheduler.plan_campaign(campaign, now=activated)

    first_day = [w for w in waves_of(campaign) if w[0] == "2027-01-05"]
    assert [w[2] for w in first_day] == [("America/New_York",)]  # Tokyo's and Istanbul's 09:00 had passed


def test_a_global_campaign_plans_one_wave_at_the_time_in_its_zone(tenant):
    make_user(tenant, "u1", "Asia/Tokyo")
    campaign = make_campaign(tenant, zone_mode="global", zone="America/New_York", activated_at=TUE)
    scheduler.plan_campaign(campaign, now=TUE)
    assert waves_of(campaign)[0] == ("2027-01-05", utc(2027, 1, 5, 14), ("*",), "planned")


def test_a_global_campaign_without_a_zone_uses_the_tenants(tenant):
    campaign = make_campaign(tenant, zone_mode="global", zone="", activated_at=TUE)
    scheduler.plan_campaign(campaign, now=TUE)
    assert waves_of(campaign)[0][1] == utc(2027, 1, 5, 6)  # 09:00 Istanbul


def test_a_once_campaign_plans_its_one_occurrence_and_then_has_no_next_run(tenant, dispatched):
    campaign = make_campaign(
        tenant,
        schedule_kind="once",
        send_date=date(2027, 1, 6),
        zone_mode="global",
        zone="UTC",
        activated_at=TUE,
    )
    make_user(tenant, "u1")
    scheduler.plan_campaign(campaign, now=TUE)
    assert waves_of(campaign) == []  # more than a day away
    scheduler.plan_campaign(campaign, now=TUE + timedelta(hours=12))
    assert waves_of(campaign) == [("2027-01-06", utc(2027, 1, 6, 9), ("*",), "planned")]

    beat_at(utc(2027, 1, 6, 9))

    campaign.refresh_from_db()
    assert waves_of(campaign)[0][3] == "done"
    assert campaign.next_run_at is None


def test_the_next_run_is_the_next_occurrence_when_it_is_more_than_a_day_away(tenant):
    campaign = make_campaign(
        tenant, schedule_kind="monthly", month_days=[31], zone_mode="global", zone="UTC", activated_at=TUE
    )
    scheduler.plan_campaign(campaign, now=utc(2027, 2, 1))
    campaign.refresh_from_db()
    assert campaign.next_run_at == utc(2027, 2, 28, 9)  # February has no 31st: its last day
    assert not CampaignRun.objects.filter(campaign=campaign).exists()


def test_the_beat_plans_a_newly_activated_campaign_then_again_only_every_few_minutes(tenant, dispatched):
    campaign = make_campaign(tenant, activated_at=TUE)
    beat_at(TUE)
    assert CampaignRun.objects.filter(campaign=campaign).exists()

    make_user(tenant, "tokyo", "Asia/Tokyo")  # a zone with no wave yet (its 09:00 is tomorrow's 00:00 UTC)
    beat_at(TUE + timedelta(minutes=1))
    assert not CampaignRun.objects.filter(campaign=campaign, zones=["Asia/Tokyo"]).exists()
    beat_at(TUE + scheduler.REPLAN_EVERY + timedelta(minutes=1))
    assert CampaignRun.objects.filter(
        campaign=campaign, zones=["Asia/Tokyo"], occurrence=date(2027, 1, 6)
    ).exists()


def test_draft_and_triggered_campaigns_are_not_planned(tenant, dispatched):
    make_campaign(tenant, name="draft", status="draft")
    make_campaign(tenant, name="triggered", kind="triggered", trigger_event="purchase", activated_at=TUE)
    beat_at(TUE)
    assert not CampaignRun.objects.exists()


# --- Claiming and sending -------------------------------------------------------------------


def test_a_due_wave_is_claimed_once(tenant):
    campaign = make_campaign(tenant, zone_mode="global", zone="UTC", activated_at=TUE)
    scheduler.plan_campaign(campaign, now=TUE)
    due = utc(2027, 1, 5, 9)
    assert scheduler.claim_due_runs(now=due - timedelta(seconds=1)) == []
    claimed = scheduler.claim_due_runs(now=due)
    assert len(claimed) == 1
    assert scheduler.claim_due_runs(now=due) == []
    assert scheduler.claim_due_runs(now=due + scheduler.RUN_LEASE - timedelta(seconds=1)) == []


def test_a_wave_whose_worker_died_is_claimed_again_when_its_lease_runs_out_and_sent_once(tenant, dispatched):
    make_user(tenant, "u1")
    campaign = make_campaign(tenant, zone_mode="global", zone="UTC", activated_at=TUE)
    scheduler.plan_campaign(campaign, now=TUE)
    due = utc(2027, 1, 5, 9)
    [(run_id, dead_lease)] = scheduler.claim_due_runs(now=due)  # its worker never runs it

    later = due + scheduler.RUN_LEASE + timedelta(seconds=1)
    [(again, lease)] = scheduler.claim_due_runs(now=later)
    assert again == run_id
    assert scheduler.run_wave(run_id=run_id, lease=lease, now=later).state == "done"
    # The first claimer, back from the dead, finds its claim gone.
    assert scheduler.run_wave(run_id=run_id, lease=dead_lease, now=later) is None
    assert len(dispatched.calls) == 1


def test_a_worker_that_dies_mid_wave_leaves_it_to_be_finished_without_sending_anyone_twice(
    tenant, dispatched
):
    for i in range(3):
        make_user(tenant, f"u{i}")
    campaign = make_campaign(tenant, zone_mode="global", zone="UTC", activated_at=TUE)
    scheduler.plan_campaign(campaign, now=TUE)
    due = utc(2027, 1, 5, 9)
    [(run_id, lease)] = scheduler.claim_due_runs(now=due)
    run = CampaignRun.objects.get(pk=run_id)
    # It reached one user, then died before recording the wave done.
    dispatched(
        campaign=campaign,
        user_ids=[campaign.tenant.app_users.get(app_user_id="u0").pk],
        occurrence="2027-01-05",
        now=due,
        run=run,
    )

    later = due + scheduler.RUN_LEASE + timedelta(seconds=1)
    [(_, lease)] = scheduler.claim_due_runs(now=later)
    run = scheduler.run_wave(run_id=run_id, lease=lease, now=later)

    assert run.recipients == 2 and run.skipped == 1
    assert sorted(reached(campaign).values()) == ["sent"] * 3


def test_the_wave_hands_dispatch_the_occurrences_local_date_and_its_zones_users(tenant, dispatched):
    users = {
        zone: make_user(tenant, zone or "none", zone)
        for zone in ["Asia/Tokyo", "Europe/Istanbul", "", "Mars/Base"]
    }
    campaign = make_campaign(tenant, activated_at=TUE)
    beat_at(BEFORE)
    beat_at(utc(2027, 1, 5, 0))  # Tokyo's 09:00
    beat_at(
        utc(2027, 1, 5, 6)
    )  # Istanbul's: the tenant's zone, so also users without a zone or with a bad one

    assert [(c["occurrence"], names(c["users"])) for c in dispatched.calls] == [
        ("2027-01-05", ["Asia/Tokyo"]),
        ("2027-01-05", ["Europe/Istanbul", "Mars/Base", "none"]),
    ]
    assert users  # all four made
    tokyo = CampaignRun.objects.get(campaign=campaign, due_at=utc(2027, 1, 5, 0))
    assert (tokyo.state, tokyo.recipients, tokyo.version) == ("done", 1, 1)


def test_the_audience_is_evaluated_when_each_wave_is_due(tenant, dispatched):
    segment = Segment.objects.create(
        tenant=tenant,
        name="Turkish speakers",
        rules=parse(
            {"include": [[{"type": "property", "property": "language", "op": "in", "value": ["tr"]}]]}
        ),
    )
    make_user(tenant, "early", "Asia/Tokyo", language="tr")
    campaign = make_campaign(tenant, audience="segment", segment=segment, activated_at=TUE)
    beat_at(BEFORE)
    # After the campaign was made and planned: a new user in the segment, one who left it.
    make_user(tenant, "late", "Europe/Istanbul", language="tr")
    make_user(tenant, "other", "Europe/Istanbul", language="en")
    beat_at(utc(2027, 1, 5, 0))
    beat_at(utc(2027, 1, 5, 6))

    assert reached(campaign) == {"early": "sent", "late": "sent"}


def test_rules_audiences_are_evaluated_at_wave_time_too(tenant, dispatched):
    campaign = make_campaign(
        tenant,
        audience="rules",
        rules=parse(
            {"include": [[{"type": "property", "property": "country", "op": "in", "value": ["DE"]}]]}
        ),
        zone_mode="global",
        zone="UTC",
        activated_at=TUE,
    )
    beat_at(TUE)
    make_user(tenant, "de", country="DE")
    make_user(tenant, "fr", country="FR")
    beat_at(utc(2027, 1, 5, 9))
    assert reached(campaign) == {"de": "sent"}


def test_a_user_who_changes_zone_between_waves_gets_the_occurrence_once(tenant, dispatched):
    traveller = make_user(tenant, "traveller", "Asia/Tokyo")
    make_user(tenant, "stays", "America/New_York")
    campaign = make_campaign(tenant, activated_at=TUE)
    beat_at(BEFORE)
    beat_at(utc(2027, 1, 5, 0))  # Tokyo's wave reaches the traveller
    traveller.timezone = "America/New_York"
    traveller.save()
    beat_at(utc(2027, 1, 5, 14))  # New York's wave: the traveller again, already reached

    assert reached(campaign, "2027-01-05") == {"traveller": "sent", "stays": "sent"}
    assert CampaignRecipient.objects.filter(campaign=campaign, occurrence="2027-01-05").count() == 2
    new_york = CampaignRun.objects.get(campaign=campaign, due_at=utc(2027, 1, 5, 14))
    assert (new_york.recipients, new_york.skipped) == (1, 1)


def test_a_user_who_moves_to_a_zone_without_a_wave_gets_one_when_the_campaign_is_planned_again(
    tenant, dispatched
):
    make_user(tenant, "u1", "Europe/Istanbul")
    campaign = make_campaign(tenant, activated_at=TUE)
    beat_at(TUE)
    make_user(tenant, "kathmandu", "Asia/Kathmandu")  # +05:45: an instant no wave has
    beat_at(TUE + scheduler.REPLAN_EVERY)
    beat_at(utc(2027, 1, 5, 3, 15))
    assert reached(campaign) == {"kathmandu": "sent"}


def test_a_user_who_moves_into_a_zone_that_shares_a_waves_instant_is_in_that_wave(tenant, dispatched):
    make_user(tenant, "berlin", "Europe/Berlin")
    campaign = make_campaign(tenant, activated_at=TUE)
    beat_at(TUE)
    make_user(tenant, "rome", "Europe/Rome")  # same offset as Berlin, not replanned yet
    beat_at(utc(2027, 1, 5, 8))
    assert reached(campaign) == {"berlin": "sent", "rome": "sent"}
    assert CampaignRun.objects.get(campaign=campaign, due_at=utc(2027, 1, 5, 8)).zones == [
        "Europe/Berlin",
        "Europe/Rome",
    ]


# --- Pausing, archiving, editing ------------------------------------------------------------


def test_waves_due_while_paused_are_skipped_and_not_sent_after_resuming(tenant, dispatched):
    make_user(tenant, "tokyo", "Asia/Tokyo")
    make_user(tenant, "new_york", "America/New_York")
    campaign = make_campaign(tenant, activated_at=TUE)
    beat_at(BEFORE)
    Campaign.objects.filter(pk=campaign.pk).update(status="paused")
    beat_at(utc(2027, 1, 5, 0))  # Tokyo's wave, while paused
    Campaign.objects.filter(pk=campaign.pk).update(status="active")
    beat_at(utc(2027, 1, 5, 1))
    beat_at(utc(2027, 1, 5, 14))  # New York's, after resuming

    assert reached(campaign) == {"new_york": "sent"}
    tokyo = CampaignRun.objects.get(campaign=campaign, due_at=utc(2027, 1, 5, 0))
    assert (tokyo.state, tokyo.skip_reason) == ("skipped", "paused")


def test_a_paused_campaign_has_no_next_run_and_gets_it_back_on_resume(tenant, dispatched):
    campaign = make_campaign(tenant, zone_mode="global", zone="UTC", activated_at=TUE, status="paused")
    scheduler.plan_campaign(campaign, now=TUE)
    campaign.refresh_from_db()
    assert campaign.next_run_at is None
    Campaign.objects.filter(pk=campaign.pk).update(status="active", planned_at=None)
    beat_at(TUE + timedelta(minutes=1))
    campaign.refresh_from_db()
    assert campaign.next_run_at == utc(2027, 1, 5, 9)


def test_a_campaign_paused_after_its_wave_was_claimed_does_not_send_it(tenant, dispatched):
    make_user(tenant, "u1")
    campaign = make_campaign(tenant, zone_mode="global", zone="UTC", activated_at=TUE)
    scheduler.plan_campaign(campaign, now=TUE)
    [(run_id, lease)] = scheduler.claim_due_runs(now=utc(2027, 1, 5, 9))
    Campaign.objects.filter(pk=campaign.pk).update(status="paused")
    run = scheduler.run_wave(run_id=run_id, lease=lease, now=utc(2027, 1, 5, 9))
    assert (run.state, run.skip_reason) == ("skipped", "paused")
    assert dispatched.calls == []


def test_an_archived_campaigns_due_waves_are_skipped_and_it_is_planned_no_more(tenant, dispatched):
    campaign = make_campaign(tenant, zone_mode="global", zone="UTC", activated_at=TUE)
    beat_at(TUE)
    Campaign.objects.filter(pk=campaign.pk).update(status="archived")
    beat_at(utc(2027, 1, 6, 12))
    assert waves_of(campaign) == [("2027-01-05", utc(2027, 1, 5, 9), ("*",), "skipped")]
    assert CampaignRun.objects.get(campaign=campaign).skip_reason == "archived"


def test_a_wave_planned_before_the_schedule_was_edited_is_skipped_as_rescheduled(tenant, dispatched):
    make_user(tenant, "u1")
    campaign = make_campaign(tenant, zone_mode="global", zone="UTC", activated_at=TUE)
    scheduler.plan_campaign(campaign, now=TUE)
    Campaign.objects.filter(pk=campaign.pk).update(send_time=time(10))  # edited behind the scheduler's back
    beat_at(utc(2027, 1, 5, 9))
    old = CampaignRun.objects.get(campaign=campaign, due_at=utc(2027, 1, 5, 9))
    assert (old.state, old.skip_reason) == ("skipped", "rescheduled")
    assert dispatched.calls == []


def test_reschedule_replaces_the_waves_not_due_yet(tenant, dispatched):
    campaign = make_campaign(tenant, zone_mode="global", zone="UTC", activated_at=TUE)
    scheduler.plan_campaign(campaign, now=TUE)
    campaign.send_time = time(10)
    campaign.save()
    scheduler.reschedule(campaign, now=TUE)
    assert [w[1] for w in waves_of(campaign)] == [utc(2027, 1, 5, 10)]


# --- herald_beat ----------------------------------------------------------------------------


def test_herald_beat_plans_and_sends_due_waves(tenant, dispatched):
    import time_machine

    make_user(tenant, "u1")
    campaign = make_campaign(tenant, zone_mode="global", zone="UTC", activated_at=TUE)
    with time_machine.travel(TUE, tick=False):
        call_command("herald_beat", "--once")
    assert CampaignRun.objects.filter(campaign=campaign).exists()
    with time_machine.travel(utc(2027, 1, 5, 9), tick=False):
        call_command("herald_beat", "--once")
    assert reached(campaign) == {"u1": "sent"}


def test_a_failing_campaign_pass_does_not_stop_herald_beat(tenant, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(scheduler, "plan_due_campaigns", broken)
    call_command("herald_beat", "--once")  # logs, returns


def test_a_wave_that_cannot_be_queued_is_given_back_for_the_next_beat(tenant, monkeypatch):
    from campaigns import tasks

    campaign = make_campaign(tenant, zone_mode="global", zone="UTC", activated_at=TUE)
    scheduler.plan_campaign(campaign, now=TUE)

    def queue_down(*args):
        raise ConnectionError("queue down")

    monkeypatch.setattr(tasks, "run_campaign_wave", types.SimpleNamespace(enqueue=queue_down))
    counts = tasks.scheduled_campaigns_pass(now=utc(2027, 1, 5, 9))
    assert counts["queued"] == 0
    assert CampaignRun.objects.get(campaign=campaign, due_at=utc(2027, 1, 5, 9)).state == "planned"


# --- Two beats on PostgreSQL ----------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_beats_running_at_once_send_each_user_once_per_occurrence(dispatched):
    from tenants.models import Tenant

    tenant = Tenant.objects.create(name="Acme", tenant_id="acme", time_zone="Europe/Istanbul")
    zones = ["Asia/Tokyo", "Europe/Berlin", "America/New_York", "", "Pacific/Kiritimati", "Pacific/Pago_Pago"]
    for i in range(60):
        make_user(tenant, f"u{i}", zones[i % len(zones)])
    campaign = make_campaign(tenant, activated_at=utc(2027, 1, 4, 12))

    def two_beats_at(when):
        barrier = threading.Barrier(2)
        errors = []

        def beat():
            try:
                barrier.wait()
                scheduler.plan_due_campaigns(now=when)
                for run_id, lease in scheduler.claim_due_runs(now=when):
                    scheduler.run_wave(run_id=run_id, lease=lease, now=when)
            except Exception as error:  # pragma: no cover - reported below
                errors.append(error)
            finally:
                connections.close_all()

        threads = [threading.Thread(target=beat) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []

    two_beats_at(utc(2027, 1, 4, 18))
    planned = CampaignRun.objects.filter(campaign=campaign).count()
    assert planned == len(
        set(CampaignRun.objects.filter(campaign=campaign).values_list("occurrence", "due_at"))
    )
    for hour in range(19, 24 + 24 + 3):  # every hour from Kiritimati's 09:00 to after Pago Pago's
        two_beats_at(utc(2027, 1, 4) + timedelta(hours=hour))

    rows = CampaignRecipient.objects.filter(campaign=campaign, occurrence="2027-01-05")
    assert rows.count() == 60
    runs = CampaignRun.objects.filter(campaign=campaign, occurrence=date(2027, 1, 5))
    assert set(runs.values_list("state", flat=True)) == {"done"}
    assert sum(runs.values_list("recipients", flat=True)) == 60
    # Each wave was dispatched by one of the two beats only.
    dispatched_runs = [c["run"] for c in dispatched.calls if c["occurrence"] == "2027-01-05"]
    assert len(dispatched_runs) == len(set(dispatched_runs)) == runs.count()
    assert connection.vendor == "postgresql"


# --- Through the campaign services' lifecycle -----------------------------------------------


def make_through_services(tenant, **fields):
    values = {
        "name": "Digest",
        "kind": "scheduled",
        "content": {"language": "en", "variants": [{"title": "Hi", "body": "There"}]},
        "schedule_kind": "daily",
        "send_time": time(9),
        "zone_mode": "global",
        "zone": "UTC",
    } | fields
    return services.create_campaign(tenant=tenant, fields=values)


def test_activating_a_scheduled_campaign_plans_it_at_once_and_shows_its_next_run(
    tenant, django_capture_on_commit_callbacks
):
    campaign = make_through_services(tenant)
    with django_capture_on_commit_callbacks(execute=True):
        services.activate(campaign, now=TUE)
    campaign.refresh_from_db()
    assert campaign.next_run_at == utc(2027, 1, 5, 9)
    assert waves_of(campaign) == [("2027-01-05", utc(2027, 1, 5, 9), ("*",), "planned")]


def test_resuming_skips_the_waves_that_fell_due_while_paused_even_if_no_beat_ran(
    tenant, dispatched, django_capture_on_commit_callbacks
):
    make_user(tenant, "u1")
    campaign = make_through_services(tenant)
    with django_capture_on_commit_callbacks(execute=True):
        services.activate(campaign, now=TUE)
    with django_capture_on_commit_callbacks(execute=True):
        services.pause(campaign, now=utc(2027, 1, 5, 8))
    with django_capture_on_commit_callbacks(execute=True):
        services.resume(campaign, now=utc(2027, 1, 5, 10))  # 09:00 passed meanwhile, no beat
    beat_at(utc(2027, 1, 5, 10, 0, 5))

    run = CampaignRun.objects.get(campaign=campaign, due_at=utc(2027, 1, 5, 9))
    assert (run.state, run.skip_reason) == ("skipped", "paused")
    assert dispatched.calls == []
    campaign.refresh_from_db()
    assert campaign.next_run_at == utc(2027, 1, 6, 9)


def test_a_paused_campaign_shows_no_next_run(tenant, django_capture_on_commit_callbacks):
    campaign = make_through_services(tenant)
    with django_capture_on_commit_callbacks(execute=True):
        services.activate(campaign, now=TUE)
    with django_capture_on_commit_callbacks(execute=True):
        services.pause(campaign, now=TUE + timedelta(minutes=1))
    campaign.refresh_from_db()
    assert campaign.next_run_at is None


def test_editing_the_send_time_replans_the_waves_not_due_yet(
    tenant, dispatched, django_capture_on_commit_callbacks
):
    import time_machine

    make_user(tenant, "u1")
    campaign = make_through_services(tenant)
    with django_capture_on_commit_callbacks(execute=True):
        services.activate(campaign, now=TUE)
    with (
        time_machine.travel(utc(2027, 1, 5, 1), tick=False),
        django_capture_on_commit_callbacks(execute=True),
    ):
        services.update_campaign(campaign=campaign, fields={"send_time": time(18, 30)})

    assert waves_of(campaign) == [("2027-01-05", utc(2027, 1, 5, 18, 30), ("*",), "planned")]
    beat_at(utc(2027, 1, 5, 18, 30))
    assert [c["occurrence"] for c in dispatched.calls] == ["2027-01-05"]
    assert CampaignRun.objects.get(campaign=campaign, due_at=utc(2027, 1, 5, 18, 30)).version == 2


def test_a_wave_planned_before_the_campaign_stopped_being_scheduled_is_not_sent(tenant, dispatched):
    make_user(tenant, "u1")
    campaign = make_campaign(tenant, zone_mode="global", zone="UTC", activated_at=TUE)
    scheduler.plan_campaign(campaign, now=TUE)
    Campaign.objects.filter(pk=campaign.pk).update(kind="triggered", trigger_event="purchase")
    beat_at(utc(2027, 1, 5, 9))
    run = CampaignRun.objects.get(campaign=campaign)
    assert (run.state, run.skip_reason) == ("skipped", "rescheduled")
    assert dispatched.calls == []
