"""Schedule arithmetic: which local dates a campaign occurs on, when a wall-clock time happens
in a zone (daylight-saving gaps and folds included), and how zones group into waves."""

import itertools
from datetime import UTC, date, datetime, time, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from campaigns.schedule import (
    Schedule,
    Wave,
    describe,
    local_instant,
    occurrence_dates,
    occurrences_after,
    waves,
)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def schedule(kind, at="09:00", **fields) -> Schedule:
    return Schedule(kind=kind, send_time=time.fromisoformat(at), **fields)


def first(schedule, start, n):
    return list(itertools.islice(occurrence_dates(schedule, start), n))


# --- Occurrence dates -----------------------------------------------------------------------


def test_a_once_schedule_occurs_on_its_date_and_never_again():
    once = schedule("once", send_date=date(2026, 12, 24))
    assert first(once, date(2026, 12, 1), 5) == [date(2026, 12, 24)]
    assert first(once, date(2026, 12, 25), 5) == []


def test_a_daily_schedule_occurs_every_day():
    assert first(schedule("daily"), date(2026, 12, 30), 3) == [
        date(2026, 12, 30),
        date(2026, 12, 31),
        date(2027, 1, 1),
    ]


def test_a_weekly_schedule_occurs_on_its_chosen_weekdays_only():
    weekly = schedule("weekly", weekdays=(0, 3))  # Monday, Thursday
    days = first(weekly, date(2026, 11, 30), 4)
    assert days == [date(2026, 11, 30), date(2026, 12, 3), date(2026, 12, 7), date(2026, 12, 10)]
    assert {d.weekday() for d in days} == {0, 3}


def test_a_weekly_schedule_without_weekdays_never_occurs():
    assert first(schedule("weekly", weekdays=()), date(2026, 1, 1), 3) == []


def test_a_monthly_schedule_occurs_on_its_chosen_dates():
    monthly = schedule("monthly", month_days=(1, 15))
    assert first(monthly, date(2026, 12, 2), 3) == [date(2026, 12, 15), date(2027, 1, 1), date(2027, 1, 15)]


def test_monthly_on_the_31st_falls_on_the_last_day_of_shorter_months():
    monthly = schedule("monthly", month_days=(31,))
    assert first(monthly, date(2027, 1, 1), 4) == [
        date(2027, 1, 31),
        date(2027, 2, 28),
        date(2027, 3, 31),
        date(2027, 4, 30),
    ]
    assert first(monthly, date(2028, 2, 1), 1) == [date(2028, 2, 29)]  # a leap year


def test_monthly_dates_that_land_on_the_same_last_day_make_one_occurrence():
    monthly = schedule("monthly", month_days=(29, 30, 31))
    assert first(monthly, date(2027, 2, 1), 4) == [
        date(2027, 2, 28),  # once, not three times
        date(2027, 3, 29),
        date(2027, 3, 30),
        date(2027, 3, 31),
    ]


def test_an_annual_schedule_occurs_on_its_month_and_day_every_year_whatever_the_year_stored():
    annual = schedule("annually", send_date=date(2020, 12, 24))
    assert first(annual, date(2026, 12, 25), 2) == [date(2027, 12, 24), date(2028, 12, 24)]


def test_annually_on_29_february_falls_on_28_february_in_other_years():
    annual = schedule("annually", send_date=date(2024, 2, 29))
    assert first(annual, date(2026, 1, 1), 3) == [date(2026, 2, 28), date(2027, 2, 28), date(2028, 2, 29)]


def test_a_schedule_without_a_time_never_occurs():
    assert first(Schedule(kind="daily", send_time=None), date(2026, 1, 1), 1) == []


def test_schedule_of_reads_a_campaigns_fields():
    campaign = SimpleNamespace(
        schedule_kind="weekly",
        send_time=time(9),
        send_date=None,
        weekdays=[3, 0, 3],
        month_days=[],
        zone_mode="local",
        zone="",
    )
    assert Schedule.of(campaign) == Schedule(
        kind="weekly", send_time=time(9), weekdays=(0, 3), zone_mode="local"
    )


# --- Wall-clock time to instant -------------------------------------------------------------


def test_an_ordinary_wall_clock_time_converts_with_the_zones_offset_that_day():
    assert local_instant(date(2027, 1, 15), time(9), "Europe/Berlin") == utc(2027, 1, 15, 8)
    assert local_instant(date(2027, 7, 15), time(9), "Europe/Berlin") == utc(2027, 7, 15, 7)
    assert local_instant(date(2027, 7, 15), time(9), "America/New_York") == utc(2027, 7, 15, 13)


def test_a_time_skipped_by_spring_forward_in_berlin_is_sent_at_the_next_valid_minute():
    # 28 Mar 2027: Berlin's clocks jump from 02:00 CET to 03:00 CEST; 02:30 does not exist.
    at = local_instant(date(2027, 3, 28), time(2, 30), "Europe/Berlin")
    assert at == utc(2027, 3, 28, 1)  # 03:00 CEST
    assert local_instant(date(2027, 3, 28), time(2, 0), "Europe/Berlin") == at
    assert local_instant(date(2027, 3, 28), time(3, 0), "Europe/Berlin") == at


def test_a_time_skipped_by_spring_forward_in_new_york_is_sent_at_the_next_valid_minute():
    # 14 Mar 2027: New York's clocks jump from 02:00 EST to 03:00 EDT.
    assert local_instant(date(2027, 3, 14), time(2, 30), "America/New_York") == utc(2027, 3, 14, 7)
    assert local_instant(date(2027, 3, 14), time(1, 59), "America/New_York") == utc(2027, 3, 14, 6, 59)


def test_a_time_repeated_by_fall_back_is_sent_once_at_its_first_occurrence():
    # 31 Oct 2027: Berlin shows 02:00–03:00 twice (CEST, then CET); 7 Nov 2027 New York 01:00–02:00.
    assert local_instant(date(2027, 10, 31), time(2, 30), "Europe/Berlin") == utc(2027, 10, 31, 0, 30)
    assert local_instant(date(2027, 11, 7), time(1, 30), "America/New_York") == utc(2027, 11, 7, 5, 30)


def test_a_whole_skipped_day_is_sent_at_the_first_minute_of_the_next():
    # Samoa skipped 30 Dec 2011 when it moved across the date line.
    assert local_instant(date(2011, 12, 30), time(9), "Pacific/Apia") == utc(2011, 12, 30, 10)


def test_an_unknown_zone_is_refused():
    with pytest.raises(ValueError):
        local_instant(date(2027, 1, 1), time(9), "Mars/Olympus_Mons")


def test_occurrences_after_give_dates_and_instants_strictly_after_the_clock():
    daily = schedule("daily", at="18:30")
    found = list(itertools.islice(occurrences_after(daily, utc(2026, 11, 30, 15, 30), "Europe/Istanbul"), 2))
    # 18:30 in Istanbul (+03) is 15:30 UTC: today's is not strictly after, so tomorrow first.
    assert found == [
        (date(2026, 12, 1), utc(2026, 12, 1, 15, 30)),
        (date(2026, 12, 2), utc(2026, 12, 2, 15, 30)),
    ]


def test_occurrences_after_a_gap_day_are_sent_once_at_the_gaps_end():
    daily = schedule("daily", at="02:30")
    found = list(itertools.islice(occurrences_after(daily, utc(2027, 3, 27, 2), "Europe/Berlin"), 2))
    assert found == [(date(2027, 3, 28), utc(2027, 3, 28, 1)), (date(2027, 3, 29), utc(2027, 3, 29, 0, 30))]


def test_occurrences_after_a_fold_day_come_once():
    daily = schedule("daily", at="02:30")
    found = list(itertools.islice(occurrences_after(daily, utc(2027, 10, 30, 12), "Europe/Berlin"), 2))
    assert found == [
        (date(2027, 10, 31), utc(2027, 10, 31, 0, 30)),
        (date(2027, 11, 1), utc(2027, 11, 1, 1, 30)),
    ]


# --- Waves ---------------------------------------------------------------------------------


def test_a_global_schedule_has_one_wave_in_its_zone_for_everyone():
    daily = schedule("daily", at="09:00", zone="America/New_York")
    assert waves(daily, date(2027, 1, 5), ["Asia/Tokyo"], "Europe/Istanbul") == [
        Wave(utc(2027, 1, 5, 14), ("*",))
    ]


def test_a_global_schedule_without_a_zone_uses_the_default_zone():
    daily = schedule("daily", at="09:00")
    assert waves(daily, date(2027, 1, 5), [], "Europe/Istanbul") == [Wave(utc(2027, 1, 5, 6), ("*",))]


def test_local_waves_group_zones_that_reach_the_time_at_the_same_instant():
    daily = schedule("daily", zone_mode="local")
    planned = waves(
        daily, date(2027, 1, 5), ["Europe/Berlin", "Europe/Paris", "Asia/Tokyo", ""], "Europe/Istanbul"
    )
    assert planned == [
        Wave(utc(2027, 1, 5, 0), ("Asia/Tokyo",)),
        Wave(utc(2027, 1, 5, 6), ("Europe/Istanbul",)),  # the default zone, for users without one
        Wave(utc(2027, 1, 5, 8), ("Europe/Berlin", "Europe/Paris")),
    ]


def test_local_waves_leave_out_names_that_are_not_zones():
    daily = schedule("daily", zone_mode="local")
    planned = waves(daily, date(2027, 1, 5), ["Nowhere/Special", "Asia/Tokyo"], "UTC")
    assert [w.zones for w in planned] == [("Asia/Tokyo",), ("UTC",)]


def test_local_waves_span_about_26_hours_from_kiritimati_to_pago_pago():
    daily = schedule("daily", zone_mode="local")
    planned = waves(daily, date(2027, 1, 5), ["Pacific/Kiritimati", "Pacific/Pago_Pago", "UTC"], "UTC")
    assert planned == [
        Wave(utc(2027, 1, 4, 19), ("Pacific/Kiritimati",)),  # +14: the day before in UTC
        Wave(utc(2027, 1, 5, 9), ("UTC",)),
        Wave(utc(2027, 1, 5, 20), ("Pacific/Pago_Pago",)),  # -11
    ]
    assert planned[-1].due_at - planned[0].due_at == utc(2027, 1, 6, 1) - utc(2027, 1, 5)  # 25 h


def test_local_waves_across_spring_forward_in_berlin_and_new_york():
    zones = ["Europe/Berlin", "America/New_York", "Europe/London"]
    at_0230 = schedule("daily", at="02:30", zone_mode="local")
    # The Sunday before Berlin's change, New York is already on EDT (changed 14 Mar).
    assert waves(at_0230, date(2027, 3, 21), zones, "UTC") == [
        Wave(utc(2027, 3, 21, 1, 30), ("Europe/Berlin",)),
        Wave(utc(2027, 3, 21, 2, 30), ("Europe/London", "UTC")),
        Wave(utc(2027, 3, 21, 6, 30), ("America/New_York",)),
    ]
    # Berlin's gap day: 02:30 does not exist, its wave moves to 03:00 CEST (01:00 UTC);
    # London's own gap (01:00 → 02:00) does not touch 02:30, now BST.
    assert waves(at_0230, date(2027, 3, 28), zones, "UTC") == [
        Wave(utc(2027, 3, 28, 1), ("Europe/Berlin",)),
        Wave(utc(2027, 3, 28, 1, 30), ("Europe/London",)),
        Wave(utc(2027, 3, 28, 2, 30), ("UTC",)),
        Wave(utc(2027, 3, 28, 6, 30), ("America/New_York",)),
    ]
    # New York's gap day.
    assert waves(at_0230, date(2027, 3, 14), zones, "UTC")[-1] == Wave(
        utc(2027, 3, 14, 7), ("America/New_York",)
    )


def test_local_waves_across_fall_back_send_each_zone_once():
    at_0130 = schedule("daily", at="01:30", zone_mode="local")
    planned = waves(at_0130, date(2027, 11, 7), ["America/New_York", "America/Chicago"], "UTC")
    # 01:30 happens twice in New York that night (EDT, then EST): the first one, 05:30 UTC.
    assert planned == [
        Wave(utc(2027, 11, 7, 1, 30), ("UTC",)),
        Wave(utc(2027, 11, 7, 5, 30), ("America/New_York",)),
        Wave(utc(2027, 11, 7, 6, 30), ("America/Chicago",)),
    ]
    # Berlin's fold.
    at_0230 = schedule("daily", at="02:30", zone_mode="local")
    assert waves(at_0230, date(2027, 10, 31), ["Europe/Berlin"], "UTC")[0] == Wave(
        utc(2027, 10, 31, 0, 30), ("Europe/Berlin",)
    )


def test_two_zones_that_share_an_offset_part_of_the_year_split_into_two_waves_on_a_dst_day():
    weekly = schedule("weekly", at="09:00", weekdays=(6,), zone_mode="local")
    zones = ["Europe/Berlin", "Africa/Lagos"]  # Lagos is +01 all year
    assert len(waves(weekly, date(2027, 1, 3), zones, "Africa/Lagos")) == 1
    assert len(waves(weekly, date(2027, 3, 28), zones, "Africa/Lagos")) == 2


def test_a_fractional_offset_zone_gets_its_own_wave():
    daily = schedule("daily", zone_mode="local")
    planned = waves(daily, date(2027, 1, 5), ["Asia/Kolkata", "Asia/Kathmandu"], "UTC")
    assert [w.due_at for w in planned] == [utc(2027, 1, 5, 3, 15), utc(2027, 1, 5, 3, 30), utc(2027, 1, 5, 9)]


# --- Summaries ------------------------------------------------------------------------------


def campaign(**fields):
    base = dict(
        kind="scheduled",
        schedule_kind="daily",
        send_time=time(9),
        send_date=None,
        weekdays=[],
        month_days=[],
        zone_mode="global",
        zone="",
        tenant=SimpleNamespace(time_zone="Europe/Istanbul"),
    )
    return SimpleNamespace(**(base | fields))


@pytest.mark.parametrize(
    ("fields", "summary"),
    [
        (
            dict(schedule_kind="weekly", weekdays=[3, 0], zone_mode="local"),
            "Every Monday and Thursday at 09:00 in each user's time zone",
        ),
        (dict(send_time=time(18, 30), zone="Europe/Istanbul"), "Daily at 18:30 Europe/Istanbul"),
        (dict(send_time=time(18, 30)), "Daily at 18:30 Europe/Istanbul"),  # the tenant's zone
        (
            dict(
                schedule_kind="once", send_date=date(2026, 12, 24), send_time=time(10), zone="Europe/Berlin"
            ),
            "Once on 24 Dec 2026 at 10:00 Europe/Berlin",
        ),
        (
            dict(schedule_kind="weekly", weekdays=[0, 1, 2, 3, 4], zone_mode="local"),
            "Every weekday (Monday to Friday) at 09:00 in each user's time zone",
        ),
        (dict(schedule_kind="weekly", weekdays=list(range(7)), zone="UTC"), "Daily at 09:00 UTC"),
        (
            dict(schedule_kind="monthly", month_days=[15, 1], zone="UTC"),
            "Monthly on the 1st and 15th at 09:00 UTC",
        ),
        (
            dict(schedule_kind="monthly", month_days=[2, 22, 31], zone="UTC"),
            "Monthly on the 2nd, 22nd and 31st at 09:00 UTC (on the last day in months too short for a date)",
        ),
        (
            dict(schedule_kind="annually", send_date=date(2024, 2, 29), zone="UTC"),
            "Every year on 29 Feb at 09:00 UTC (28 Feb in years without a 29th)",
        ),
        (
            dict(schedule_kind="annually", send_date=date(2024, 7, 4), zone="UTC"),
            "Every year on 4 Jul at 09:00 UTC",
        ),
        (dict(send_time=None), "Not scheduled yet"),
        (dict(schedule_kind=""), "Not scheduled yet"),
    ],
)
def test_describe_summarises_a_schedule_in_plain_language(fields, summary):
    assert describe(campaign(**fields)) == summary


def test_describe_summarises_a_trigger():
    triggered = SimpleNamespace(
        kind="triggered",
        trigger_event="cart_abandoned",
        trigger_params=[],
        delay_seconds=120,
        cancel_event="purchase",
    )
    assert (
        describe(triggered)
        == "When “cart_abandoned” is recorded, 2 minutes later, unless “purchase” happens first"
    )
    triggered.delay_seconds, triggered.cancel_event = 0, ""
    assert describe(triggered) == "When “cart_abandoned” is recorded, at once"


def test_schedule_of_reads_a_campaign_not_yet_reloaded_with_iso_strings():
    campaign = SimpleNamespace(
        schedule_kind="once", send_time="10:30", send_date="2026-12-24", zone_mode="global"
    )
    assert Schedule.of(campaign) == Schedule(
        kind="once", send_time=time(10, 30), send_date=date(2026, 12, 24)
    )


def transition_days(zone: ZoneInfo, year: int) -> list[date]:
    days, day, previous = [], date(year, 1, 1), None
    while day.year == year:
        offset = datetime.combine(day, time(12), tzinfo=zone).utcoffset()
        if previous is not None and offset != previous:
            days += [day - timedelta(days=1), day]
        previous, day = offset, day + timedelta(days=1)
    return days


@pytest.mark.parametrize(
    "name",
    [
        "Europe/Berlin",
        "America/New_York",
        "Australia/Lord_Howe",  # a half-hour daylight-saving shift
        "Pacific/Chatham",  # +12:45 / +13:45
        "America/Santiago",  # changes at midnight
        "Europe/Dublin",  # "negative" daylight saving in the tz database
        "Africa/Casablanca",  # leaves and re-enters daylight saving around Ramadan
    ],
)
def test_every_minute_around_a_zones_transitions_is_sent_once_at_that_time_or_the_next_valid_minute(name):
    zone = ZoneInfo(name)
    days = transition_days(zone, 2027)
    assert days  # the zone does change its offset that year
    for day in days:
        for hour, minute in itertools.product(range(24), (0, 15, 30, 59)):
            wanted = datetime.combine(day, time(hour, minute))
            at = local_instant(day, time(hour, minute), zone)
            wall = at.astimezone(zone).replace(tzinfo=None)
            if wall == wanted:  # it exists: at its first occurrence if it happens twice
                assert at <= wanted.replace(tzinfo=zone, fold=1).astimezone(UTC)
            else:  # it does not: the first minute after the gap
                assert wall > wanted and at.second == 0
                assert (at - timedelta(minutes=1)).astimezone(zone).replace(tzinfo=None) < wanted
