"""A zero-delay trigger's send leaves with the task that matched it and queues no send task
of its own; a crash before it went out leaves it to herald_beat's recovery."""

from datetime import timedelta

import pytest
from django.tasks import default_task_backend
from django.utils import timezone

from campaigns import tasks
from fcm_sandbox.models import SandboxMessage
from messaging import services as messaging
from messaging.models import Delivery
from tests.campaigns.conftest import event, make_campaign, make_user


@pytest.fixture
def queued(settings, sandbox_server):
    """The tasks queued, by name: recorded, not run (the test runs what it means to)."""
    settings.TASKS = {"default": {"BACKEND": "django.tasks.backends.dummy.DummyBackend"}}

    def names():
        return [result.task.name for result in default_task_backend.results]

    return names


def match_after_an_event(tenant, app_key, user):
    event(tenant, app_key, user=user, at=timezone.now())
    default_task_backend.clear()
    tasks.match_events_task.call(tenant.pk)


def test_a_zero_delay_trigger_is_sent_by_the_match_task_with_no_send_task_queued(
    tenant, app_key, sandbox_server, queued
):
    make_campaign(tenant, now=timezone.now())
    make_user(tenant, "ayse")

    match_after_an_event(tenant, app_key, "ayse")

    assert SandboxMessage.objects.count() == 1
    assert set(Delivery.objects.values_list("status", flat=True)) == {"sent"}
    assert queued() == []


def test_a_send_that_dies_after_its_fan_out_is_queued_again_by_the_recovery(
    tenant, app_key, sandbox_server, queued, monkeypatch
):
    make_campaign(tenant, now=timezone.now())
    make_user(tenant, "ayse")

    def dies(**kwargs):
        raise RuntimeError("the worker's send failed")

    monkeypatch.setattr(messaging, "send_deliveries", dies)
    match_after_an_event(tenant, app_key, "ayse")
    assert list(Delivery.objects.values_list("status", flat=True)) == ["pending"]
    assert queued() == []

    messaging.recover_stalled(grace=timedelta(0))

    assert queued() == ["send_message_deliveries"]
