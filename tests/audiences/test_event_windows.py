"""How long an event window may be: within the event retention, any length up to a century
when events are kept forever (RETENTION_EVENTS_DAYS=0), and never a date Herald cannot compute,
even in a stored document that skips the retention check."""

import pytest

from audiences.models import Segment
from devices.models import AppUser
from tests.audiences.test_segments_api import buy


def bought_within(days) -> dict:
    return {"include": [[{"type": "event", "event": "purchase", "op": "did", "within_days": days}]]}


def test_with_events_kept_forever_a_window_of_years_is_saved_and_counts_old_events(
    server, make_device, settings
):
    settings.RETENTION_EVENTS_DAYS = 0  # "keep them forever"
    make_device("a1", user="ann")
    make_device("b1", user="bob")
    buy(AppUser.objects.get(app_user_id="ann"), 70, days_ago=3 * 365)

    response = server.post(
        "/api/v1/segments", {"name": "old buyers", "rules": bought_within(5 * 365)}, format="json"
    )

    assert response.status_code == 201, response.json()
    assert server.get(f"/api/v1/segments/{response.json()['id']}/count").json() == {"users": 1, "devices": 1}


@pytest.mark.parametrize("retention", [0, 180])
def test_a_window_longer_than_a_century_is_a_400_and_nothing_is_stored(server, settings, retention):
    settings.RETENTION_EVENTS_DAYS = retention

    response = server.post("/api/v1/segments", {"name": "s", "rules": bought_within(10**15)}, format="json")

    assert response.status_code == 400
    assert response.json()["field"] == "rules.include[0][0].within_days"
    assert not Segment.objects.exists()


def test_a_window_within_the_retention_is_saved_and_one_day_past_it_is_not(server, settings):
    settings.RETENTION_EVENTS_DAYS = 30

    fits = server.post("/api/v1/segments", {"name": "a", "rules": bought_within(30)}, format="json")
    too_long = server.post("/api/v1/segments", {"name": "b", "rules": bought_within(31)}, format="json")

    assert fits.status_code == 201
    assert too_long.status_code == 400
    assert "longer than the 30 days events are kept" in too_long.json()["detail"]


def test_a_stored_window_no_date_can_hold_is_reported_unusable_not_a_500(server, tenant):
    segment = Segment.objects.create(tenant=tenant, name="edited")
    Segment.objects.filter(pk=segment.pk).update(rules=bought_within(10**15))

    response = server.get(f"/api/v1/segments/{segment.pk}/count")

    assert response.status_code == 409
    assert response.json()["error"] == "unusable_rules"
    assert response.json()["field"] == "rules.include[0][0].within_days"
