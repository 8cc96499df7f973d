"""Two senders claiming the same deliveries at once, on PostgreSQL: one gets each delivery.

The second claimer's UPDATE waits for the first one's row locks; once the first commits,
PostgreSQL re-checks the waiting UPDATE's conditions on the new row versions, so the claim's
conditions must be on the delivery rows themselves (not in a subquery that keeps the stale
copy) for the second claimer to find the rows taken."""

import threading

import pytest
from django.db import connection, transaction

from messaging import services
from messaging.models import Delivery, Message
from messaging.services import fan_out

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def waiting_for_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype = 'transactionid'"
            " AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0] > 0


def test_a_claim_that_waited_for_another_claimers_commit_gets_none_of_its_deliveries(
    postgres_only, server, make_device, settings
):
    settings.TASKS = {"default": {"BACKEND": "django.tasks.backends.dummy.DummyBackend"}}
    for i in range(5):
        make_device(f"tok-{i}", user=f"u{i}")
    response = server.post("/api/v1/messages", {"title": "Hi", "body": "There"}, format="json")
    message = Message.objects.get(pk=response.json()["id"])
    fan_out(message_id=message.pk)
    assert message.deliveries.count() == 5
    claimed = {}
    first_claimed = threading.Event()
    commit_first = threading.Event()

    def first():
        try:
            with transaction.atomic():  # holds the rows' locks until it commits
                claimed["first"] = services._claim(message, None, None)
                first_claimed.set()
                assert commit_first.wait(timeout=20)
        finally:
            connection.close()

    def second():
        try:
            assert first_claimed.wait(timeout=20)
            claimed["second"] = services._claim(message, None, None)
        finally:
            connection.close()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for _ in range(2000):  # until the second claimer's UPDATE waits on the first's locks
        if waiting_for_a_lock() or not threads[1].is_alive():
            break
        threading.Event().wait(0.01)
    commit_first.set()
    for thread in threads:
        thread.join(timeout=30)

    assert len(claimed["first"]) == 5
    assert claimed["second"] == []
    assert len({d.claim for d in Delivery.objects.filter(message=message)}) == 1
