"""The health score: its bands, its parts, and the edges where data runs short."""

import pytest

from campaigns.health import MIN_DELIVERED, MIN_SENT, TOO_LITTLE, HealthInputs, band_of, score


def inputs(**changes) -> HealthInputs:
    base = dict(
        sent=1000,
        delivered=990,
        failed=10,
        opened=60,
        skipped=0,
        active_recipients=900,
        tenant_median_open_rate=0.05,
    )
    return HealthInputs(**{**base, **changes})


def test_a_campaign_that_delivers_opens_and_reaches_active_users_is_excellent():
    health = score(inputs())

    assert health.score == 100 and health.band == "Excellent"
    assert [p["name"] for p in health.parts] == ["delivery", "opens", "active", "skips"]
    assert all(p["ok"] for p in health.parts)


def test_a_campaign_below_the_minimum_sent_says_too_little_data_instead_of_a_number():
    health = score(inputs(sent=MIN_SENT - 1))

    assert health.score is None and health.band == TOO_LITTLE
    assert "Too little data" in health.summary and str(MIN_SENT) in health.summary


def test_a_campaign_with_users_but_too_few_deliveries_has_too_little_data():
    assert score(inputs(delivered=MIN_DELIVERED - 1, failed=900)).score is None


def test_exactly_the_minimum_gets_a_score():
    assert (
        score(inputs(sent=MIN_SENT, delivered=MIN_DELIVERED, failed=0, opened=3, active_recipients=40)).score
        is not None
    )


def test_an_open_rate_below_the_tenants_median_is_named_with_both_figures():
    health = score(inputs(opened=21, delivered=1000, failed=0, tenant_median_open_rate=0.048))

    opens = next(p for p in health.parts if p["name"] == "opens")
    assert opens["text"] == "Open rate 2.1 % is below the tenant's median 4.8 %"
    assert not opens["ok"] and health.summary == opens["text"]


def test_without_a_tenant_median_a_five_percent_benchmark_stands_in():
    health = score(inputs(tenant_median_open_rate=None))

    assert "5.0 % benchmark" in next(p for p in health.parts if p["name"] == "opens")["text"]


def test_no_opens_at_all_and_every_push_failing_is_critical():
    health = score(
        inputs(delivered=MIN_DELIVERED, failed=10_000, opened=0, active_recipients=0, skipped=5000)
    )

    assert health.score == 0 and health.band == "Critical"


def test_a_tenant_whose_median_is_zero_does_not_divide_by_zero():
    health = score(inputs(opened=0, tenant_median_open_rate=0.0))

    assert 0 <= health.score <= 100


def test_many_skips_cost_the_skip_points_only():
    health = score(inputs(skipped=1000))

    skips = next(p for p in health.parts if p["name"] == "skips")
    assert skips["points"] == 0 and health.score == 90 and health.band == "Excellent"


def test_low_delivery_names_failed_pushes():
    health = score(inputs(delivered=850, failed=150))

    delivery = next(p for p in health.parts if p["name"] == "delivery")
    assert "85.0 %" in delivery["text"] and "150 failed" in delivery["text"] and not delivery["ok"]


@pytest.mark.parametrize(
    ("points", "band"),
    [
        (100, "Excellent"),
        (80, "Excellent"),
        (79, "Good"),
        (60, "Good"),
        (59, "Needs work"),
        (40, "Needs work"),
        (39, "Critical"),
        (0, "Critical"),
    ],
)
def test_bands_start_at_80_60_and_40(points, band):
    assert band_of(points) == band
