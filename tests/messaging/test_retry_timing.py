"""When a failed send is tried again: Retry-After when FCM gives one, a minute's floor for a
bare QUOTA_EXCEEDED, exponential backoff otherwise, and jitter on every retry."""

from datetime import timedelta

import pytest
from django.utils import timezone

from messaging import fcm, services
from messaging.services import MessageInput, create_message
from tests.messaging.faults import Answer, FaultyFcm, first


class ScriptedJitter:
    """Stands in for services.jitter: answers a fixed share of every range it is asked for."""

    def __init__(self, share: float):
        self.share, self.asked = share, []

    def uniform(self, low, high):
        self.asked.append((low, high))
        return low + (high - low) * self.share


@pytest.fixture
def jitter(monkeypatch):
    def use(share):
        scripted = ScriptedJitter(share)
        monkeypatch.setattr(services, "jitter", scripted)
        return scripted

    return use


def delay(code, *, attempts=1, retry_after=None):
    return services.retry_delay(attempts=attempts, error=fcm.FcmError(code, retry_after=retry_after))


def test_quota_exceeded_with_retry_after_waits_what_fcm_said_not_a_minute(jitter):
    jitter(0.0)
    assert delay(fcm.QUOTA_EXCEEDED, retry_after=2) == 2
    jitter(1.0)
    assert delay(fcm.QUOTA_EXCEEDED, retry_after=2) == 3  # jitter adds at most half again


def test_quota_exceeded_without_retry_after_waits_a_minute_then_doubles(jitter):
    jitter(0.0)
    assert [delay(fcm.QUOTA_EXCEEDED, attempts=n) for n in (1, 2, 3)] == [60, 120, 240]


def test_every_retry_is_jittered(jitter):
    scripted = jitter(0.5)
    delays = [delay(fcm.UNAVAILABLE, attempts=n) for n in (1, 2, 3)]
    delays += [delay(fcm.QUOTA_EXCEEDED, attempts=1), delay(fcm.UNAVAILABLE, retry_after=30)]
    assert len(scripted.asked) == len(delays), "each retry drew its own jitter"
    assert all(high > low for low, high in scripted.asked)
    assert delays == [10.5, 20.5, 40.5, 75.0, 37.5]


def test_backoff_without_retry_after_is_at_least_a_second_and_at_most_an_hour(jitter):
    jitter(0.0)
    assert delay(fcm.INTERNAL, attempts=1) == 1
    jitter(1.0)
    assert delay(fcm.INTERNAL, attempts=20) == 3600


def test_a_429_with_retry_after_2_is_retried_within_seconds_each_device_at_its_own_time(
    sandbox, tenant, make_device, settings
):
    for i in range(6):
        make_device(f"tok-{i}", user=f"u{i}")
    with FaultyFcm(sandbox.url, plan=first(6, Answer(429, retry_after=2))) as proxy:
        settings.FCM_API_URL = proxy.url
        fcm.forget_clients()
        before = timezone.now()
        message, _ = create_message(tenant=tenant, spec=MessageInput(title="Hi", body="There"))
        after = timezone.now()

    due = sorted(message.deliveries.filter(status="retrying").values_list("next_attempt_at", flat=True))
    assert len(due) == 6
    assert due[0] >= before + timedelta(seconds=2)
    assert due[-1] <= after + timedelta(seconds=3)
    assert len(set(due)) == 6, "jittered: not all at the same moment"
    fcm.forget_clients()
