"""Two identical /developer/push requests at once, on PostgreSQL: one push goes out."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from rest_framework.test import APIClient

from messaging.models import Message

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("immediate_tasks"),
]


def test_identical_pushes_racing_each_other_send_once(postgres_only, server_key, make_device):
    make_device("phone", user="ayse")
    racers = 8
    barrier = threading.Barrier(racers)

    def one(_):
        client = APIClient()
        client.credentials(HTTP_X_SERVER_KEY=server_key)
        try:
            barrier.wait(timeout=10)
            response = client.post(
                "/developer/push",
                {"app_user_id": "ayse", "title": "Hi", "body": "There", "dedupe_key": "order-42"},
                format="json",
            )
            return response.status_code, response.json().get("deduplicated", False)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=racers) as pool:
        answers = list(pool.map(one, range(racers)))

    assert Message.objects.count() == 1
    assert sorted(answers) == [(201, False)] + [(201, True)] * (racers - 1)
