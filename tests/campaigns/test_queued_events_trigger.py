"""A triggered campaign fed by queued ingestion (EVENTS_INGEST=queue, devices/ingest.py)."""

from datetime import timedelta

import pytest
import time_machine
from django.core.management import call_command
from django.tasks import default_task_backend

from api import throttling
from campaigns import tasks, triggers
from campaigns.models import CampaignRecipient
from devices import ingest
from tests.campaigns.conftest import START, event, make_campaign, make_user

pytestmark = pytest.mark.redis


@pytest.fixture
def queue_mode(settings):
    settings.EVENTS_INGEST = "queue"
    client = throttling.redis_client()
    client.delete(ingest.STREAM, ingest.DEAD_LETTERS, ingest.PENDING)
    yield
    client.delete(ingest.STREAM, ingest.DEAD_LETTERS, ingest.PENDING)


def test_a_queued_event_triggers_its_campaign_once_the_writer_stores_it(
    tenant, app_key, no_sending, queue_mode
):
    campaign = make_campaign(tenant)
    make_user(tenant, "ayse")
    with time_machine.travel(START, tick=False):
        event(tenant, app_key, user="ayse")
    assert not [r for r in default_task_backend.results if r.task.func is tasks.match_events_task.func]

    with time_machine.travel(START + timedelta(seconds=2), tick=False):
        call_command("herald_ingest", "--drain")
    assert [r.args for r in default_task_backend.results if r.task.func is tasks.match_events_task.func] == [
        [tenant.pk]
    ]
    triggers.match_events(tenant_id=tenant.pk, now=START + timedelta(seconds=10))
    triggers.fire_due(now=START + timedelta(seconds=10))

    assert list(CampaignRecipient.objects.filter(campaign=campaign).values_list("state", flat=True)) == [
        "sent"
    ]
